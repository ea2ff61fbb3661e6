"""Tiny preset for unit tests: seconds per stage on one CPU core.

  python -m learning_words.main --config=configs/tiny.py --workdir=/tmp/lw_tiny --mode=pipeline
"""
from configs import common


def get_config():
  c = common.get_config()
  c.world.resolution = 16
  c.world.max_objects = 3
  c.world.num_train = 64
  c.world.num_val = 16
  c.speech.workers = 1
  c.data.image_size = 16
  c.data.train_frames = 128
  c.data.eval_frames = 256
  c.data.batch_size = 8
  c.gan.sizes = (16, 16, 16, 8)          # 16 px
  c.gan.d_sizes = (16, 16, 8)
  c.gan.batch_size = 8
  c.gan.steps = 4
  c.gan.r1_every = 2
  c.gan.log_every = c.gan.sample_every = c.gan.checkpoint_every = 2
  return c
