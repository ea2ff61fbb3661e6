"""Data: audio featurisation, the record formats and their TFDS builders (ArrayRecord, no
TensorFlow), the attribute vocabulary, and the input pipeline to global batches."""
