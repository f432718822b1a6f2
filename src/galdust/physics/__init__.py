"""Physics layer: filter curves and attenuation laws (no other galdust imports)."""

from .attenuation import (
    LAMBDA_REF,
    LAMBDA_V,
    R_V,
    BandAttenuation,
    attenuation_ratio,
    av_from_aref,
    band_coefficients,
    drude_bump,
    k_calzetti,
    k_modified,
)
from .filters import Filter, UnknownBandError, filter_names, get_filter, is_known

__all__ = [
    "LAMBDA_REF", "LAMBDA_V", "R_V", "BandAttenuation", "attenuation_ratio", "av_from_aref",
    "band_coefficients", "drude_bump", "k_calzetti", "k_modified", "Filter", "UnknownBandError",
    "filter_names", "get_filter", "is_known",
]
