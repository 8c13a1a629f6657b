"""Child-process scripts for tests/integration/test_concurrency.py (run with ``python -m``)."""
