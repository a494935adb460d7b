"""Helpers to run the real platform in tests and benchmarks."""
