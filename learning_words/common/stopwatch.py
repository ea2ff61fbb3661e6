"""Where a loop's wall time goes: seconds summed per named stage (the training profile)."""
import contextlib
import time


class Stopwatch:
  """`with watch("loader"): ...` adds the block's wall time to that stage; `summary()` gives each
  stage's seconds, the total since creation and `other_s`, the time no stage claimed."""

  def __init__(self):
    self._start = time.perf_counter()
    self.seconds: dict[str, float] = {}

  def add(self, stage: str, seconds: float):
    self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

  @contextlib.contextmanager
  def __call__(self, stage: str):
    t = time.perf_counter()
    try:
      yield
    finally:
      self.add(stage, time.perf_counter() - t)

  def summary(self) -> dict:
    """{stage}_s for each stage (largest first), total_s and other_s, rounded to ms."""
    total = time.perf_counter() - self._start
    out = {f"{k}_s": round(v, 3) for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])}
    return {**out, "other_s": round(total - sum(self.seconds.values()), 3),
            "total_s": round(total, 3)}


def describe(summary: dict) -> str:
  """'step 412.1 s, loader 35.2 s, ..., total 480.0 s' from a Stopwatch summary."""
  return ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f} s" for k, v in summary.items())
