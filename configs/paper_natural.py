"""The reference's settings on Audio CLEVRGAN with recorded ('natural') captions.

  python -m learning_words.main --config=configs/paper_natural.py --workdir=gs://BUCKET/lw \
      --mode=pipeline --config.data.official_dir=/path/to/audio_clevrgan
"""
from configs import paper_synth


def get_config():
  c = paper_synth.get_config()
  c.data.official_variant = "natural"
  return c
