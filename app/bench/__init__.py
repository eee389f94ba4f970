"""Benchmark harness: real labeled data, the split protocol, baselines, runs, tables (``anomaloop bench``)."""
