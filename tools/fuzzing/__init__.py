"""Fuzzing the readers: seeded mutations of every input kind, each run through the command that reads it
(tests/test_fuzz.py, bench/fuzz_report.py); and the flags (flag_*.py): every option of every command given the
hostile values its declaration calls for, every resumable run resumed with each flag changed
(tests/test_flag_fuzz.py, bench/fuzz_report.py --flags)."""
