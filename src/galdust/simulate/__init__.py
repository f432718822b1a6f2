"""Simulators: dusty galaxy images with per-pixel truth."""

from .dusty_images import GalaxyParams, SimConfig, convolve_fft, params_table, render, sample_params, simulate

__all__ = ["GalaxyParams", "SimConfig", "convolve_fft", "params_table", "render", "sample_params", "simulate"]
