"""Errors a user can fix. `main` prints one of them as a single line (no traceback) and exits 2;
the traceback still goes to the run's log file (and to the terminal with --verbosity=1)."""


class UserError(Exception):
  """A problem on the user's side: the message names the file or flag and what to do."""


class ConfigError(UserError, ValueError):
  """A bad --config value or combination of values."""


class InputError(UserError, ValueError):
  """A bad input file (audio, image, text, list of ids)."""


class MissingError(UserError, FileNotFoundError):
  """What a stage reads is not there: the message says which stage (--mode) makes it."""


class StorageError(UserError, OSError):
  """The workdir's bucket stopped answering: what was written before stays, and the same command
  resumes from it."""
