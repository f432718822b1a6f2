"""Physics layer: filter curves and attenuation laws (no other galdust imports)."""

from .attenuation import k_calzetti
from .filters import filter_names

__all__ = ["k_calzetti", "filter_names"]  # the rest: import from galdust.physics.attenuation / .filters
