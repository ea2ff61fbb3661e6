"""Network classes (Flax NNX): generator, discriminator, encoders, segmenter."""
