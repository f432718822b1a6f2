"""Amortized posteriors of galaxy properties (conditional flow matching)."""
