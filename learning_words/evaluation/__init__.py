"""Phase 3, evaluation: the evaluators (suite.py), running them on runs' checkpoints (runner.py)
and the report comparing runs (report.py)."""
