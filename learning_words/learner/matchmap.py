"""Matchmaps and the MISA similarity between image feature maps and speech feature sequences.

A matchmap scores every (image position, audio frame) pair: M[h,w,t] = <img[h,w], aud[t]>.
MISA ("matchmap image-max, speech-average") summarises it as one similarity: the best-matching
image position for each frame, averaged over the caption's valid frames. Padded frames (t >=
n_frames, in encoder frames) never count. Everything is pure jnp and jittable; the similarity
matrix over N images x M captions is chunked over images so evaluation-sized sets fit in memory.
"""
import jax
import jax.numpy as jnp


def pixels_per_cell(masks, grid: int):
  """Pixel counts [...,g,g] of masks [...,R,R] in each cell of the matchmap's g x g grid (R a
  multiple of g): which cells an object, or an edit, touches."""
  *lead, r, _ = masks.shape
  s = r // grid
  return masks.astype(jnp.int32).reshape(*lead, grid, s, grid, s).sum(axis=(-3, -1))


def normalize_features(x, eps: float = 1e-8):
  """L2-normalises feature vectors over the last axis (for cosine matchmaps)."""
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + eps)


def matchmap(img, aud, cosine: bool = False):
  """img [B,h,w,D], aud [B,T,D] -> M [B,h,w,T] with M[b,h,w,t] = <img[b,h,w], aud[b,t]>."""
  if cosine:
    img, aud = normalize_features(img), normalize_features(aud)
  return jnp.einsum("bhwd,btd->bhwt", img, aud)


def mean_valid_frames(x, n_frames):
  """Mean of x [..., T] over t < n_frames (broadcast against x[..., 0]); at least one frame counts
  in the divisor, so an empty caption scores 0 rather than NaN."""
  t = jnp.arange(x.shape[-1])
  n = jnp.asarray(n_frames)[..., None]
  valid = t < n
  total = jnp.sum(jnp.where(valid, x, 0.0), axis=-1)
  return total / jnp.maximum(jnp.sum(valid, axis=-1), 1).astype(x.dtype)


def misa(mm, n_frames):
  """MISA of matchmaps mm [B,h,w,T] with n_frames [B] valid frames -> [B]: max over (h, w), then
  the mean over the valid frames."""
  return mean_valid_frames(jnp.max(mm, axis=(1, 2)), n_frames)


def similarity_matrix(img, aud, n_frames, chunk: int = 64, cosine: bool = False):
  """S [N,M] with S[i,j] = misa(matchmap(img[i], aud[j]), n_frames[j]).

  img [N,h,w,D], aud [M,T,D], n_frames [M]; chunk and cosine are static (Python values). Images go
  through `jax.lax.map` in chunks of `chunk` (N padded up to a multiple), so the largest
  intermediate is at most chunk*M*h*w*T floats: 1 GiB at the paper's evaluation (chunk 64, 500
  captions, 8x8 images, 128 frames), less where XLA fuses the max into the product (CPU: ~0.1 GiB).
  """
  if cosine:
    img, aud = normalize_features(img), normalize_features(aud)
  n, h, w, d = img.shape
  chunk = max(1, min(int(chunk), n))
  n_chunks = -(-n // chunk)
  padded = jnp.pad(img, ((0, n_chunks * chunk - n), (0, 0), (0, 0), (0, 0)))
  blocks = padded.reshape(n_chunks, chunk, h * w, d)

  m, t = aud.shape[:2]
  captions = aud.reshape(m * t, d).T  # [D, M*T]

  def score_block(block):  # [chunk, h*w, D] -> [chunk, M]
    # One plain matmul, then the max over h*w: on CPU 23% faster, forward and backward, than
    # the einsum straight into [chunk, M, h*w, T] (quickstart shapes).
    products = (block.reshape(chunk * h * w, d) @ captions).reshape(chunk, h * w, m, t)
    return mean_valid_frames(jnp.max(products, axis=1), n_frames[None, :])  # [chunk, M]

  return jax.lax.map(score_block, blocks).reshape(n_chunks * chunk, -1)[:n]
