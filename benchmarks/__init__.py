"""Benchmarks of Aster Studio; `python -m benchmarks.run` (`make bench`) runs them."""
