"""Simulators: dusty galaxy images with per-pixel truth."""

from .dusty_images import GalaxyParams, SimConfig, params_table, render, sample_params, simulate

__all__ = ["GalaxyParams", "SimConfig", "params_table", "render", "sample_params", "simulate"]
