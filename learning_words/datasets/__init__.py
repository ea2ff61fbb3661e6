"""TFDS builders (ArrayRecord, no TensorFlow) and the helpers that build and open them."""
from tensorflow_datasets.core import shuffle as _tfds_shuffle

# TFDS buffers a split's serialized records in memory and, past 1 GB, spills them to temporary
# files through TensorFlow's gfile, which this project does not install. Keep splits in memory up
# to 16 GB instead (the quickstart's 5,000 spoken captions are ~1.3 GB).
_tfds_shuffle.MAX_MEM_BUFFER_SIZE = max(_tfds_shuffle.MAX_MEM_BUFFER_SIZE, 16 << 30)
