"""Line and interval plots: the size asked for, each series in its palette colour, the chance or
reference line drawn, and rows placed by their values."""
import numpy as np

from learning_words.common import figures


def _has(img, rgb, tol=30):
  return np.any(np.all(np.abs(img.astype(int) - np.array(rgb)) <= tol, axis=-1))


def test_line_plot_draws_each_series_and_the_chance_line():
  x = np.arange(10)
  img = figures.line_plot({"a": (x, 0.01 * x), "b": (x, np.where(x == 3, np.nan, 0.02 * x))}, "val",
                          chance=0.05)
  assert img.shape == (320, 640, 3) and img.dtype == np.uint8
  assert _has(img, figures.PALETTE[0]) and _has(img, figures.PALETTE[1])
  assert _has(img, (128, 128, 128))  # the dashed chance line
  empty = figures.line_plot({"a": ([1.0], [np.nan])}, "nothing", width=200, height=100)
  assert empty.shape == (100, 200, 3) and not _has(empty, figures.PALETTE[0], tol=5)


def test_many_series_never_share_both_colour_and_line_style():
  styles = [figures.series_style(k) for k in range(30)]
  assert len(set(styles)) == 30
  assert {style for _, style in styles} == {"-", ":", "-."}  # never the chance lines' dashes
  assert styles[0] == (tuple(np.array(figures.PALETTE[0]) / 255), "-")
  assert styles[10] == (styles[0][0], ":")  # the palette's first colour again, dotted


def test_interval_plot_places_each_row_by_its_value():
  img = figures.interval_plot({"left": (-0.4, -0.5, -0.3), "right": (0.4, 0.3, 0.5)}, "diff")
  assert img.shape == (320, 640, 3)
  red = np.all(np.abs(img.astype(int) - np.array(figures.PALETTE[3])) <= 30, axis=-1)
  rows, cols = np.nonzero(red)
  top = cols[rows < rows.mean()].mean()  # matplotlib puts row 0 at the bottom: "right" is on top
  bottom = cols[rows > rows.mean()].mean()
  assert top > bottom  # the positive difference lies to the right
