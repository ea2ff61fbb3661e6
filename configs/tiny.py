"""Tiny preset for unit tests: seconds per stage on one CPU core.

  python -m learning_words.main --config=configs/tiny.py --workdir=/tmp/lw_tiny --mode=pipeline

Wall time on a 2-core AMD EPYC CPU: a minute or two for the whole pipeline, mostly compilation. Expected
numbers: none that mean anything (16 px, a few dozen pairs). No generator is shipped at 16 px: the
pipeline renders, then stops and says how to train one; with --config.gan.retrain=True it trains
a tiny GAN and runs every stage (what the tests do).
"""
from learning_words import defaults


def get_config():
  c = defaults.get_config()
  c.world.resolution = 16
  c.world.max_objects = 3
  c.world.num_train = 64
  c.world.num_val = 16
  c.world.invert_encoder_steps, c.world.invert_encoder_batch = 4, 8  # the encoder path, cheaply
  c.speech.workers = 1
  c.data.image_size = 16
  c.data.train_frames = 128
  c.data.eval_frames = 256
  c.data.batch_size = 8
  c.data.num_train, c.data.num_val, c.data.num_test = 24, 8, 8
  c.model.image_widths = (4, 4, 8, 8, 8)
  c.model.image_pools = 1
  c.model.audio_kind = "small"
  c.model.audio_widths = (8, 8, 8)
  c.model.embed_dim = 8
  c.negatives.units = 4
  c.negatives.units_step = 2
  c.train.epochs = 2
  c.train.val_pairs = 8
  c.train.log_every = c.train.image_every = c.train.checkpoint_every = 2
  c.world.report_images = 16
  c.world.report_edits = 8
  c.gan.sizes = (16, 16, 16, 8)          # 16 px
  c.gan.d_sizes = (16, 16, 8)
  c.gan.batch_size = 8
  c.gan.steps = 4
  c.gan.r1_every = 2
  c.gan.log_every = c.gan.sample_every = c.gan.checkpoint_every = 2
  c.segmenter.widths = (8, 8, 16)
  c.segmenter.batch_size = 8
  c.segmenter.steps = 4
  c.segmenter.log_every = c.segmenter.checkpoint_every = 2
  c.evals.batch_size = 4
  c.evals.retrieval.n_pairs = 8
  c.evals.edited_recall.captions = 8
  c.evals.semantic.captions = 8
  c.evals.semantic.max_tries = 8
  c.evals.semantic.per_round = 4
  c.evals.attributes.images = 8
  c.evals.attributes.pool = 8
  c.evals.attributes.voices = ("en-us",)
  c.evals.localisation.n_pairs = 8
  c.evals.edit_effect.captions = 8
  return c
