"""Benchmarks: each module prints a table and writes JSON to ``bench/results/`` (git-ignored).

Run them as modules from the repository root, e.g. ``python -m bench.accuracy``. They read the
team's shared assets (``../shared/assets``) and stop with a clear message when those are absent.
"""
