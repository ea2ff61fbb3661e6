"""World report math against hand computations and plain loops."""
import numpy as np

from configs import quickstart
from learning_words.world import build_data, world_report


def test_tv_distance_by_hand():
  assert world_report.tv_distance(np.array([0.5, 0.5, 0]), np.array([0.25, 0.25, 0.5])) == 0.5
  assert world_report.tv_distance(np.array([1.0, 0]), np.array([1.0, 0])) == 0


def test_attribute_histograms_by_hand():
  obj = lambda s, c: {"shape": s, "color": c, "size": "small", "material": "metal"}
  hist = world_report.attribute_histograms([{"objects": [obj("cube", "red"), obj("sphere", "red")]},
                                            {"objects": [obj("cube", "blue")]}, {"objects": []}])
  np.testing.assert_allclose(hist["shape"], [2 / 3, 1 / 3, 0])  # cube, sphere, cylinder
  assert hist["color"][1] == 2 / 3 and hist["color"][2] == 1 / 3  # red, blue
  np.testing.assert_allclose(hist["size"], [1, 0])
  np.testing.assert_allclose(hist["material"], [0, 1])


def test_mask_to_layer_is_any_overlap():
  rng = np.random.default_rng(0)
  mask = rng.random((3, 32, 32)) > 0.97
  got = world_report.mask_to_layer(mask, 8)
  for b in range(3):
    for i in range(8):
      for j in range(8):
        assert got[b, i, j] == mask[b, 4 * i:4 * i + 4, 4 * j:4 * j + 4].any()


def test_majority_inside_mask():
  labels = np.array([[[1, 2], [2, 3]], [[0, 0], [4, 4]]])
  mask = np.array([[[True, True], [True, False]], [[False, False], [False, False]]])
  np.testing.assert_array_equal(world_report.majority(labels, mask), [2, 0])


def test_report_ids_lie_past_every_split():
  data = quickstart.get_config().data
  ids = build_data.report_ids(data, 1000)
  splits = range(data.num_train + data.num_val + data.num_test)   # ids are split by range
  assert len(ids) == 1000 and len(set(ids.tolist())) == 1000
  assert not set(ids.tolist()) & set(splits)
