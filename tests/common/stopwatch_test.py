"""The training profile's stopwatch against a clock moved by hand."""
import pytest

from learning_words.common import stopwatch


def test_stages_sum_and_the_rest_is_other(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(stopwatch.time, "perf_counter", lambda: now[0])
  watch = stopwatch.Stopwatch()
  now[0] += 2.0  # unclaimed
  with watch("step"):
    now[0] += 3.0
  with watch("loader"):
    now[0] += 0.5
  with watch("step"):
    now[0] += 1.0
  watch.add("setup", 0.25)
  with pytest.raises(KeyError):
    with watch("validation"):  # a stage that fails still counts its time
      now[0] += 0.75
      raise KeyError("x")
  got = watch.summary()
  assert got == {"step_s": 4.0, "validation_s": 0.75, "loader_s": 0.5, "setup_s": 0.25,
                 "other_s": 1.75, "total_s": 7.25}
  assert list(got)[:4] == ["step_s", "validation_s", "loader_s", "setup_s"]  # largest first
  assert stopwatch.describe({"step_s": 4.0, "total_s": 7.25}) == "step 4.0 s, total 7.2 s"
