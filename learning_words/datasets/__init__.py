"""TFDS builders (ArrayRecord, no TensorFlow) and the helpers that build and open them."""
