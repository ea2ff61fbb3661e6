"""Do the generator and the official data agree? In the official Audio CLEVRGAN data the image of
id i is G(z_i), z_i row i of the reference's fixed z matrix (models.generator.standard_z): every
stage that redraws positives or draws negatives relies on it. Redrawing the first ids and comparing
them with the stored JPEGs tells a right generator (JPEG noise only) from wrong weights or a wrong
z convention (images no closer to their own id's file than to another id's)."""
import numpy as np
from PIL import Image

from learning_words.common import errors, figures
from learning_words.models import encoders, generator as gen_lib


def psnr(a, b) -> np.ndarray:
  """Peak signal-to-noise ratio (dB) per image of uint8 images a, b [N,R,R,3]."""
  err = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=(1, 2, 3))
  return 10.0 * np.log10(255.0 ** 2 / np.maximum(err, 1e-10))


def redraw(g: gen_lib.Generator, z, size: int) -> np.ndarray:
  """G(z) as uint8 images at `size` px (resized as the official reader resizes the files)."""
  images = figures.to_uint8(encoders.generate(g, np.asarray(z, np.float32)))
  if images.shape[1] == size:
    return images
  return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC))
                   for im in images])


def check(g: gen_lib.Generator, images, z_index, min_gain: float, seed: int = 1) -> dict:
  """{'psnr', 'psnr_shuffled', 'gain', 'mae', 'n'}: G(z_i) against the stored image of id i
  (images [N,R,R,3] uint8 of ids z_index [N]) and against another id's image (the next one). A
  right generator is far closer to its own image; CLEVR scenes share their background, so the
  PSNR alone says little, but the gain over the mismatched pairs does. Raises InputError when the
  gain is under min_gain dB."""
  z_index = np.asarray(z_index, int)
  if len(z_index) < 2:
    raise errors.InputError("the generator / data agreement check needs at least 2 ids: "
                            "raise --config.gan.agreement_ids")
  z = gen_lib.standard_z(int(z_index.max()) + 1, g.sizes[0], seed)[z_index]
  drawn = redraw(g, z, images.shape[1])
  own, other = psnr(drawn, images), psnr(drawn, np.roll(images, 1, axis=0))
  out = {"n": int(len(own)), "psnr": float(own.mean()), "psnr_shuffled": float(other.mean()),
         "gain": float(own.mean() - other.mean()),
         "mae": float(np.mean(np.abs(drawn.astype(np.float64) - images)) / 255.0),
         "min_gain": float(min_gain)}
  if out["gain"] < min_gain:
    raise errors.InputError(
        f"the generator and the data disagree: G(z_i) against images/<i>.jpg for the first "
        f"{out['n']} ids gives a mean PSNR of {out['psnr']:.1f} dB, {out['gain']:+.1f} dB over "
        f"G(z_i) against another id's image (--config.gan.agreement_min_gain={min_gain:g}). "
        "Check --config.gan.official_weights (the data's generator.pth) and that id i is row i of "
        "RandomState(1).standard_normal")
  return out
