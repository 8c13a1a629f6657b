"""Performance benchmarks (issue 8): ``python -m benchmarks [--quick] [--only NAME]`` prints one table."""
