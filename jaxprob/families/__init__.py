"""Component families for the EM engine ([jaxprob.em][]): one module per family.

Each family is an `equinox.Module` subclass of [jaxprob.em.Family][] with a constructor function:

| family | data | components |
|---|---|---|
| [gaussian][jaxprob.families.gaussian.gaussian] | `(n, D)` real | means and covariances (full, tied, diag, spherical) |
"""

from jaxprob.families.gaussian import Gaussian, GaussianParams, gaussian

__all__ = ["Gaussian", "GaussianParams", "gaussian"]
