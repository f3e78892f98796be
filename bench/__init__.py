"""Benchmarks the repository keeps: seeding, streaming memory, REST against a raw baseline.

Run them from the repository root as modules (`.venv/bin/python -m bench.stream_memory`); see
bench/README.md."""
