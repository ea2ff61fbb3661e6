"""The reference's settings on the official Audio CLEVRGAN, for accelerators. The argument picks
the captions: `synth` (TTS, the default) or `natural` (recorded).

  python -m learning_words.main --config=configs/paper.py:natural --workdir=gs://BUCKET/lw \
      --mode=pipeline --config.data.official_dir=/path/to/audio_clevrgan \
      --config.gan.official_weights=/path/to/generator.pth

128 px images, 1024 training / 2048 evaluation frames, batch 32, as the reference trains.

Needs an accelerator: at batch 8 one `regular` step took 6.9 s on a 2-core AMD EPYC on 2026-12-06
(`python -m learning_words.benchmark --config=configs/paper.py --steps=3`; `negatives_edited`
14.8 s with random weights) and 6.7 ms on one H200 (10.7 ms; docs/performance.md), and the
reference trains for
100+ epochs. `bash launch/device_check.sh OUT` measures a GPU or TPU. Expected numbers: none
measured yet with this preset on the official files; the paper's are its own (docs/results.md).
"""
from learning_words import defaults

VARIANTS = ("synth", "natural")


def get_config(variant: str = "synth"):
  if variant not in VARIANTS:
    raise ValueError(f"--config=configs/paper.py:VARIANT: VARIANT must be one of {VARIANTS}, "
                     f"got {variant!r}")
  c = defaults.get_config()
  c.world.resolution = 128
  c.data.source = "official"
  c.data.official_variant = variant
  c.data.image_size = 128
  c.data.train_frames = 1024
  c.data.eval_frames = 2048
  c.data.batch_size = 32
  c.data.worker_count = 8
  # The reference's 128 px Progressive GAN. With --config.gan.official_weights (required by the
  # pipeline on the official data) the widths are read from that file and replace these.
  c.gan.sizes = (512, 512, 512, 512, 256, 128, 64)
  c.gan.d_sizes = (512, 512, 512, 256, 128, 64)
  c.gan.intervention_layer = "layer4"    # the reference's default: 8x8 of the 128 px generator
  # The attribute segmenter (shipped as assets/segmenter_r128) trains on 64 px crops of 128 px
  # renders, so a step costs a quarter of a whole render's: about 26 min on a 2-core CPU.
  c.segmenter.crop = 64
  c.segmenter.batch_size = 16
  return c
