"""Fuzzing the readers: seeded mutations of every input kind, each run through the command that reads it
(tests/test_fuzz.py, bench/fuzz_report.py)."""
