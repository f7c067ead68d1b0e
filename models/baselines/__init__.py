"""Baselines the sidecar is benchmarked against."""
