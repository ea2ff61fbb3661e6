"""torch_peer.py: built from our parameters, the PyTorch step computes our loss on the same batch
(ours is the oracle here: two independent implementations of one computation), for the
reference's learner (triplet, dot matchmaps, padding unmasked) and the quickstart's (softmax,
cosine, masked padding), with the image convs' reflected and wrapped borders and fewer convs, signed speech frames;
and a step of the peer trains every image conv."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from configs import tiny
from learning_words import torch_peer
from learning_words.learner import losses, matchmap, train
from learning_words.models import encoders, generator as gen_lib


@pytest.mark.parametrize("learner", ["reference", "quickstart", "reflect", "circular"])
def test_peer_loss_matches_ours(learner):
  c = tiny.get_config()
  if learner != "reference":
    c.loss.base, c.model.cosine, c.model.mask_padding, c.model.audio_kernel = (
        "softmax", True, True, 5)
  if learner in ("reflect", "circular"):  # torch's F.pad modes check the image convs' padding
    c.model.image_padding, c.model.image_depths = learner, (2, 2, 2, 1, 0)
  if learner == "circular":  # and signed speech frames (no last ReLU)
    c.model.audio_out_relu = False
  state = train.TrainState(c, steps_per_epoch=10)
  g = gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(1))
  rng = np.random.default_rng(0)
  b, t = c.data.batch_size, c.data.train_frames
  z = rng.normal(size=(b, g.sizes[0])).astype(np.float32)
  spec = rng.normal(size=(b, t, 40)).astype(np.float32)
  n_frames = rng.integers(t // 3, t + 1, size=b).astype(np.int32)
  key = jax.random.key(3)

  positives, _ = encoders.draw_positives(g, jnp.asarray(z), c.negatives.layer)
  img, aud, frames = encoders.embed(state.models, positives, jnp.asarray(spec),
                                    jnp.asarray(n_frames))
  sim = matchmap.similarity_matrix(img, aud, frames, chunk=b, cosine=c.model.cosine)
  ours, _ = losses.compute_loss("regular", sim, key, None, c.loss.margin, c.loss.base,
                                c.loss.temperature)

  peer = torch_peer.Peer(c, state.models, g)
  impostors = tuple(torch.from_numpy(np.array(i)) for i in losses.draw_impostors(key, b))
  args = (torch.from_numpy(z), torch.from_numpy(spec), torch.from_numpy(n_frames).long())
  theirs = peer.loss(*args, impostors=impostors)
  np.testing.assert_allclose(float(theirs.detach()), float(ours), rtol=1e-4)
  before = [w.detach().clone() for w, _ in peer.image]
  assert np.isfinite(peer.step(*args))
  assert all(not torch.equal(a, w) for a, (w, _) in zip(before, peer.image))  # every conv trains
