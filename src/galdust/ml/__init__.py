"""Shared machine-learning plumbing (tree models)."""
