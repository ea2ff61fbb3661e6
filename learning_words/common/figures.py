"""Image grids and PNG figures (pure numpy + pillow): grids with column labels, heat-map overlays,
line plots (Pillow draws the few axes the report needs; no plotting library)."""
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Line colours (matplotlib's tab10).
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
LABEL_HEIGHT = 16  # px of the band label_columns adds


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
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
  if scale > 1:
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  return grid


def save_png(path: str, image: np.ndarray):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(image).save(path)


def label_columns(grid: np.ndarray, labels, stride: int, offset: int = 0) -> np.ndarray:
  """uint8 grid [H, W, 3] -> [LABEL_HEIGHT + H, W, 3] with a white band above it naming the
  columns; column k spans x in [offset + k * stride, offset + (k + 1) * stride)."""
  band = Image.new("RGB", (grid.shape[1], LABEL_HEIGHT), "white")
  draw = ImageDraw.Draw(band)
  font = ImageFont.load_default()
  for k, label in enumerate(labels):
    width = draw.textlength(str(label), font=font)
    draw.text((offset + k * stride + (stride - width) / 2, 2), str(label), fill="black", font=font)
  return np.concatenate([np.asarray(band), grid], axis=0)


def overlay_heat(images: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
  """uint8 images [N, R, R, 3] and heat [N, h, w] in [0, 1] -> uint8 [N, R, R, 3]: the heat,
  upsampled (nearest) and coloured black-red-yellow-white ("hot"), blended over the images."""
  n, r = images.shape[:2]
  h, w = heat.shape[1:]
  up = np.clip(heat, 0.0, 1.0)[:, (np.arange(r) * h) // r][:, :, (np.arange(r) * w) // r]
  colour = np.clip(3.0 * up[..., None] - np.arange(3), 0.0, 1.0) * 255.0  # [N, R, R, 3]
  out = (1.0 - alpha) * images.astype(np.float32) + alpha * colour
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def line_plot(series: dict, title: str, width: int = 640, height: int = 320,
              xlabel: str = "step") -> np.ndarray:
  """{name: (x [n], y [n])} drawn as lines on one pair of axes, legend at the right ->
  uint8 [height, width, 3]. Non-finite points are left out; a series of one point is a dot."""
  img = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  left, right, top, bottom = 64, width - 170, 24, height - 36
  clean = {}
  for name, (x, y) in series.items():
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.any():
      order = np.argsort(x[keep], kind="stable")
      clean[name] = (x[keep][order], y[keep][order])
  draw.text(((left + right - draw.textlength(title, font=font)) / 2, 6), title, fill="black",
            font=font)
  draw.rectangle((left, top, right, bottom), outline="black")
  if not clean:
    draw.text((left + 8, top + 8), "no data", fill="black", font=font)
    return np.asarray(img)
  xs = np.concatenate([x for x, _ in clean.values()])
  ys = np.concatenate([y for _, y in clean.values()])
  x0, x1 = float(xs.min()), float(xs.max())
  y0, y1 = float(ys.min()), float(ys.max())
  if x1 == x0:
    x0, x1 = x0 - 0.5, x1 + 0.5
  margin = 0.05 * (y1 - y0) if y1 > y0 else max(abs(y0) * 0.05, 0.5)
  y0, y1 = y0 - margin, y1 + margin
  to_px = lambda x, y: (left + (x - x0) / (x1 - x0) * (right - left),
                        bottom - (y - y0) / (y1 - y0) * (bottom - top))
  for v in np.linspace(x0, x1, 5):
    px = to_px(v, y0)[0]
    draw.line((px, bottom, px, bottom + 4), fill="black")
    text = f"{v:.4g}"
    draw.text((px - draw.textlength(text, font=font) / 2, bottom + 6), text, fill="black",
              font=font)
  for v in np.linspace(y0, y1, 5):
    py = to_px(x0, v)[1]
    draw.line((left - 4, py, left, py), fill="black")
    text = f"{v:.4g}"
    draw.text((left - 6 - draw.textlength(text, font=font), py - 6), text, fill="black", font=font)
  draw.text(((left + right - draw.textlength(xlabel, font=font)) / 2, bottom + 20), xlabel,
            fill="black", font=font)
  for k, (name, (x, y)) in enumerate(clean.items()):
    colour = PALETTE[k % len(PALETTE)]
    points = [to_px(a, b) for a, b in zip(x, y)]
    if len(points) > 1:
      draw.line(points, fill=colour, width=2)
    for px, py in points if len(points) <= 20 else points[-1:]:
      draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
    ly = top + 4 + 16 * k
    draw.rectangle((right + 10, ly + 3, right + 20, ly + 11), fill=colour)
    draw.text((right + 26, ly), str(name)[:24], fill="black", font=font)
  return np.asarray(img)
