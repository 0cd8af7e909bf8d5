"""Operational scripts: the embedded database, the apply path, demo data, benchmarks."""
