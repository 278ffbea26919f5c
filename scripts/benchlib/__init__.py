"""The pieces of ``scripts/bench.py``: statistics, processes, projects, and one module per group of figures."""
