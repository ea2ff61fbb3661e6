"""CPU default: the whole method on the embedded synthetic Audio-CLEVR world, on a laptop.

  bash launch/quickstart.sh
  python -m learning_words.main --config=configs/quickstart.py --workdir=workdir --mode=pipeline

Deviates from the reference for CPU budget: 32 px scenes (the reference's GAN draws 128 px), and
shorter training crops (captions of the synthetic world last ~2-5 s, i.e. < 512 frames).
"""
from configs import common


def get_config():
  c = common.get_config()
  c.world.resolution = 32
  c.world.num_train = 20_000
  c.world.num_val = 1_000
  c.data.image_size = 32
  c.data.train_frames = 512
  c.data.eval_frames = 1024
  c.data.batch_size = 32
  return c
