"""Benchmarks: each module runs alone (``python benchmarks/<name>.py``) or all together
(``python -m benchmarks``), which prints one table and can write ``docs/performance.md``."""
