"""Score priors: the HSC host prior p(S) and galdust's conditional dust prior p(D | S)."""

from .dust import DustPrior, dust_prior
from .host import HostPrior, HostPriorFallback, fallback_host_prior, host_prior

__all__ = ["DustPrior", "dust_prior", "HostPrior", "HostPriorFallback", "fallback_host_prior", "host_prior"]
