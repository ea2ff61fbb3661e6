"""Image grids and PNG figures (pure numpy + pillow)."""
import os

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
  """[-1, 1] float images -> uint8."""
  x = (np.asarray(images, np.float32) + 1.0) * 127.5
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, cols: int, pad: int = 1, scale: int = 1) -> np.ndarray:
  """uint8 [N, h, w, 3] -> one uint8 grid image, rows of `cols`, white padding, upscaled."""
  n, h, w, c = images.shape
  rows = -(-n // cols)
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, k = divmod(i, cols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
  if scale > 1:
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  return grid


def save_png(path: str, image: np.ndarray):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(image).save(path)
