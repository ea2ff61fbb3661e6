"""Image grids and PNG figures: grids with column labels and heat-map overlays (numpy + pillow);
line plots and interval plots (matplotlib, drawn off-screen with Agg)."""
import io

import numpy as np
from etils import epy
from PIL import Image, ImageDraw, ImageFont
with epy.lazy_imports():  # imported at first use: start-up time
  from matplotlib import figure as mpl_figure
  from matplotlib.backends import backend_agg

from learning_words.common import files

# Line colours (matplotlib's tab10).
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
LABEL_HEIGHT = 16  # px of the band label_columns adds
LINE_STYLES = ("-", ":", "-.")  # past the palette's colours (dashed is for chance lines)


def series_style(k: int) -> tuple[tuple, str]:
  """(matplotlib colour, line style) of the k-th series: the palette's colours, then again with
  the next line style, so that up to 30 series never share both."""
  colour = tuple(np.array(PALETTE[k % len(PALETTE)]) / 255)
  return colour, LINE_STYLES[(k // len(PALETTE)) % len(LINE_STYLES)]


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


def save_png(path, image: np.ndarray):
  """Writes a PNG (local or on a bucket), creating its folder."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  files.write_bytes(path, buf.getvalue())


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


def _render(fig) -> np.ndarray:
  """A matplotlib Figure drawn off-screen (Agg) -> uint8 [height, width, 3]."""
  canvas = backend_agg.FigureCanvasAgg(fig)
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _figure(width: int, height: int, title: str):
  fig = mpl_figure.Figure(figsize=(width / 100, height / 100), dpi=100)
  ax = fig.add_subplot()
  ax.set_title(title, fontsize=10)
  ax.tick_params(labelsize=8)
  ax.grid(alpha=0.3)
  return fig, ax


def line_plot(series: dict, title: str, width: int = 640, height: int = 320,
              xlabel: str = "step", chance: float | dict | None = None,
              ylabel: str = "") -> np.ndarray:
  """{name: (x [n], y [n])} drawn as lines on one pair of axes, legend at the right, and a dashed
  line at `chance` (gray), or per series {name: level} in the series' colour -> uint8
  [height, width, 3]. Non-finite points are left out; a series of one point is a dot."""
  fig, ax = _figure(width, height, title)
  drawn = 0
  levels = chance if isinstance(chance, dict) else {}
  for k, (name, (x, y)) in enumerate(series.items()):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    colour, style = series_style(k)
    if keep.any():
      order = np.argsort(x[keep], kind="stable")
      ax.plot(x[keep][order], y[keep][order], marker="o" if keep.sum() <= 20 else None,
              markersize=3, color=colour, linestyle=style, label=str(name))
      drawn += 1
    if levels.get(name) is not None:
      ax.axhline(levels[name], color=colour, linestyle="--", linewidth=1,
                 label=f"{name}: chance {levels[name]:.3g}")
  if chance is not None and not isinstance(chance, dict):
    ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label=f"chance {chance:.3g}")
  if not drawn:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
  ax.set_xlabel(xlabel, fontsize=9)
  if ylabel:
    ax.set_ylabel(ylabel, fontsize=9)
  if drawn or chance is not None:
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
  fig.subplots_adjust(left=0.1, right=0.66, top=0.9, bottom=0.16)  # room for 28-char names
  return _render(fig)


def interval_plot(rows: dict, title: str, width: int = 640, height: int = 320,
                  reference: float = 0.0, xlabel: str = "") -> np.ndarray:
  """{label: (value, low, high)} as points with horizontal interval bars, one row each, and a
  dashed vertical line at `reference` (0: no difference) -> uint8 [height, width, 3]."""
  fig, ax = _figure(width, height, title)
  labels = list(rows)
  for i, label in enumerate(labels):
    v, lo, hi = (float(x) for x in rows[label])
    ax.plot([lo, hi], [i, i], color=np.array(PALETTE[0]) / 255, linewidth=2)
    ax.plot([v], [i], "o", color=np.array(PALETTE[3]) / 255, markersize=5)
  ax.axvline(reference, color="gray", linestyle="--", linewidth=1)
  ax.set_yticks(range(len(labels)), [str(l)[:30] for l in labels], fontsize=8)
  ax.set_ylim(-0.5, len(labels) - 0.5)
  ax.set_xlabel(xlabel, fontsize=9)
  fig.subplots_adjust(left=0.3, right=0.97, top=0.9, bottom=0.16)
  return _render(fig)


def cell_maps(maps: dict, title: str, width: int = 640, height: int = 300) -> np.ndarray:
  """{name: values [h, w] in [0, 1]} drawn side by side as grids with their values written in
  the cells -> uint8 [height, width, 3]."""
  fig = mpl_figure.Figure(figsize=(width / 100, height / 100), dpi=100)
  fig.suptitle(title, fontsize=10)
  for k, (name, values) in enumerate(maps.items()):
    values = np.asarray(values, np.float64)
    ax = fig.add_subplot(1, len(maps), k + 1)
    ax.imshow(values, cmap="magma", vmin=0.0, vmax=max(1e-9, float(values.max())))
    ax.set_title(str(name), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    for (i, j), v in np.ndenumerate(values):
      ax.text(j, i, f"{v:.2f}".lstrip("0") if v < 1 else "1", ha="center", va="center",
              fontsize=6, color="white" if v < 0.6 * values.max() else "black")
  fig.subplots_adjust(left=0.02, right=0.98, top=0.82, bottom=0.04, wspace=0.1)
  return _render(fig)
