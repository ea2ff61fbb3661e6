"""Localisation, word pointing and edit effects: their math against plain loops and hand-built
matchmaps and label maps."""
import numpy as np
import pytest

from learning_words.data import vocabulary
from learning_words.evaluation import attributes, edit_effect, localisation
from learning_words.learner import localise
from learning_words.models import segmenter

ATTRS = vocabulary.ATTRIBUTES


def test_cells_are_on_when_any_pixel_is():
  rng = np.random.default_rng(0)
  pixels = rng.random((3, 16, 16)) > 0.97
  cells = segmenter.to_cells(pixels, 4)
  for b in range(3):
    for i in range(4):
      for j in range(4):
        assert cells[b, i, j] == pixels[b, 4 * i:4 * i + 4, 4 * j:4 * j + 4].any()
  with pytest.raises(ValueError, match="do not tile"):
    segmenter.to_cells(pixels, 5)


def test_foreground_needs_half_the_heads():
  maps = {a: np.zeros((1, 2, 2), np.int32) for a in ATTRS}
  maps["shape"][0, 0, 0] = 1                         # one head of four: background
  maps["shape"][0, 0, 1] = maps["color"][0, 0, 1] = 2  # two of four: object
  for a in ATTRS:
    maps[a][0, 1, 1] = 1                             # all four: object
  assert segmenter.foreground(maps)[0].tolist() == [[False, True], [False, True]]


def test_word_cells_by_label():
  maps = {a: np.zeros((1, 8, 8), np.int32) for a in ATTRS}
  maps["color"][0, 0, 5] = 1 + vocabulary.VOCAB["color"].index("red")
  maps["size"][0, 6, 1] = 1 + vocabulary.VOCAB["size"].index("small")
  cells = localisation.word_cells(maps, 4)  # 2x2 px cells
  red, small = attributes.WORDS.index("red"), attributes.WORDS.index("small")
  expected = np.zeros((len(attributes.WORDS), 4, 4), bool)
  expected[red, 0, 2] = expected[small, 3, 0] = True
  assert np.array_equal(cells[0], expected)


def test_peak_statistics_by_hand():
  cells = np.zeros((4, 4, 4), bool)
  cells[:, 1:3, 1:3] = True           # a 2x2 object in the middle of each image: share 0.25
  cells[3, 0, 0] = True               # and one corner object in the last image
  y, x = np.array([1, 0, 3, 0]), np.array([2, 3, 3, 0])
  s = localise.peak_statistics(y, x, cells)
  assert s["items"]["on_object"] == [1, 0, 0, 1]
  assert s["on_object"] == 0.5 and s["chance_on_object"] == pytest.approx(17 / 64)
  assert s["on_border"] == 0.75 and s["chance_on_border"] == 12 / 16
  assert s["common_cells"][0][2] == 1 and len(s["common_cells"]) == 4
  no_cells = localise.peak_statistics(y, x, grid=(4, 4))  # validation without a segmenter
  assert no_cells["on_border"] == 0.75 and "on_object" not in no_cells


def test_caption_and_word_peaks_against_loops():
  rng = np.random.default_rng(1)
  b, h, w, t, d = 5, 4, 4, 6, 3
  img = rng.random((b, h, w, d)).astype(np.float32)
  aud = rng.normal(size=(b, t, d)).astype(np.float32)
  frames = np.array([1, 2, 6, 3, 4])
  aud[np.arange(t)[None, :] >= frames[:, None]] = 50.0  # padding that must not count
  for cosine in (False, True):
    y, x = (np.asarray(v) for v in localise.caption_peaks(img, aud, frames, cosine=cosine))
    for i in range(b):
      best, where = -np.inf, None
      for yy in range(h):
        for xx in range(w):
          for tt in range(frames[i]):
            u, v = img[i, yy, xx], aud[i, tt]
            s = u @ v / (np.linalg.norm(u) * np.linalg.norm(v)) if cosine else u @ v
            if s > best:
              best, where = s, (yy, xx)
      assert (y[i], x[i]) == where
    y, x = (np.asarray(v) for v in localisation.word_peaks(img, aud, frames, cosine=cosine))
    assert y.shape == (b, b)
    for i in range(b):
      for k in range(b):
        mm = np.einsum("hwd,td->hwt", img[i], aud[k, :frames[k]])
        if cosine:
          mm = mm / np.linalg.norm(img[i], axis=-1)[..., None] / np.linalg.norm(
              aud[k, :frames[k]], axis=-1)
        yy, xx = np.unravel_index(np.argmax(mm.max(axis=-1)), (h, w))
        assert (y[i, k], x[i, k]) == (yy, xx)


def test_pointing_hits_read_the_word_cells_at_the_peaks():
  cells = np.zeros((3, 2, 2), bool)
  cells[0, 0, 1] = cells[2, 1, 1] = True
  y, x = np.array([0, 0, 1]), np.array([1, 1, 0])
  assert localisation.pointing_hits(cells, [0, 2], y, x).tolist() == [True, False]


def test_specificity_against_a_loop():
  rng = np.random.default_rng(2)
  s_pos, s_neg = rng.random((5, 5)), rng.random((5, 5))
  own, other = edit_effect.specificity(s_pos, s_neg)
  for i in range(5):
    assert own[i] == pytest.approx(s_pos[i, i] - s_neg[i, i])
    assert other[i] == pytest.approx(np.mean([s_pos[i, j] - s_neg[i, j]
                                              for j in range(5) if j != i]))


def _obj(x, color="red", shape="cube", size="large", material="rubber"):
  return {"x": x, "y": 0.5, "color": color, "shape": shape, "size": size, "material": material,
          "pixels": 20}


def test_classify_change_on_hand_built_scenes():
  before = {"objects": [_obj(0.2), _obj(0.7, color="blue")]}
  same = {"objects": [_obj(0.21), _obj(0.7, color="blue")]}
  one = {"objects": [_obj(0.2, color="green"), _obj(0.7, color="blue")]}
  two = {"objects": [_obj(0.2, color="green", shape="sphere"), _obj(0.7, color="blue")]}
  gone = {"objects": [_obj(0.7, color="blue")]}
  moved = {"objects": [_obj(0.2), _obj(0.3, color="blue")]}
  kinds = [edit_effect.classify_change(before, a, 0.15) for a in (same, one, two, gone, moved)]
  assert kinds == ["nothing", "one_attribute", "several", "object_gone_or_added", "moved"]
