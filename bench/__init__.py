"""Benchmarks: ``python bench/run.py`` prints the overhead table; ``python bench/soak.py`` soaks the demo."""
