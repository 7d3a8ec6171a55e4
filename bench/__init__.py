"""Benchmarks that measure the trainer and the service from outside; each script prints its own tables."""
