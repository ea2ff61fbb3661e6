"""learning_words: "Learning Words by Drawing Images" (CVPR 2019) in JAX / Flax NNX.

  run = learning_words.load_run("workdir", "regular")   # a trained run, at its best checkpoint
  run.score(image, "caption.wav")                        # MISA of an image and a recording
"""
from learning_words.evaluation.trained_run import TrainedRun, load_run

__all__ = ["TrainedRun", "load_run"]
