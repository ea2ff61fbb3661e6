"""learning_words: "Learning Words by Drawing Images" (CVPR 2019) in JAX / Flax NNX."""
