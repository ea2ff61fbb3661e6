"""When a periodic action (log, checkpoint, figure, validation) is due: one rule for every loop."""


def itstime(step: int, every: int, total: int | None = None, prev: int | None = None) -> bool:
  """Whether an action run every `every` steps is due now that `step` steps are done.

  Due when a multiple of `every` lies in (prev, step] (prev defaults to step - 1: loops that advance
  one step at a time) or when step == total (the last step always logs and saves). every <= 0:
  only at the last step.
  """
  prev = step - 1 if prev is None else prev
  if total is not None and step == total:
    return True
  return every > 0 and step // every > prev // every
