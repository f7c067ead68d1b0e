"""Vigil's Python side: feature extraction, training, bundle export (see docs/bundle-format.md)."""
