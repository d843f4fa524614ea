"""Matplotlib helpers used by the experiments (they draw on an `Axes` you pass and return it).

matplotlib is imported lazily, inside the functions, so importing jaxprob stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxprob.em import Mixture

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["covariance_ellipses", "dense_covariances"]


def dense_covariances(params: Mixture) -> np.ndarray:
    """`(K, D, D)` covariance matrices of a Gaussian [`Mixture`][jaxprob.em.Mixture], whatever its covariance type.

    Args:
        params: a [`Mixture`][jaxprob.em.Mixture].

    Returns:
        NumPy array `(K, D, D)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture, plotting
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 2)), jnp.array([2.0]), "spherical")
        >>> plotting.dense_covariances(gmm).tolist()
        [[[2.0, 0.0], [0.0, 2.0]]]
    """
    cov = np.asarray(params.covariances)
    k, d = params.means.shape
    ct = params.covariance_type
    if ct == "full":
        return cov
    if ct == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if ct == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def covariance_ellipses(ax: Axes, params: Mixture, *, dims: tuple[int, int] = (0, 1),
                        n_std: Sequence[float] = (1.0, 2.0), colors: Sequence[Any] | None = None,
                        **kwargs: Any) -> Axes:
    r"""Draw the $n\sigma$ ellipses $(x-\mu_k)^\top\Sigma_k^{-1}(x-\mu_k) = n^2$ of every component,
    projected on two coordinates, and mark the means.

    Args:
        ax: a matplotlib `Axes`.
        params: a [`Mixture`][jaxprob.em.Mixture].
        dims: the two coordinates to show.
        n_std: the radii, in standard deviations.
        colors: one colour per component (default: the colour cycle).
        **kwargs: passed to `matplotlib.patches.Ellipse`.

    Returns:
        `ax`.

    Examples:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture, plotting
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 2)), jnp.eye(2)[None], "full")
        >>> fig, ax = plt.subplots()
        >>> _ = plotting.covariance_ellipses(ax, gmm)
        >>> len(ax.patches)
        2
        >>> plt.close(fig)
    """
    from matplotlib.patches import Ellipse

    covs = dense_covariances(params)[:, list(dims)][:, :, list(dims)]
    means = np.asarray(params.means)[:, list(dims)]
    if colors is None:
        cycle = [c["color"] for c in __import__("matplotlib").rcParams["axes.prop_cycle"]]
        colors = [cycle[k % len(cycle)] for k in range(len(means))]
    kwargs.setdefault("lw", 1.5)
    for k, (mu, cov) in enumerate(zip(means, covs, strict=True)):
        vals, vecs = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
        for r in n_std:
            width, height = 2 * r * np.sqrt(np.maximum(vals[::-1], 0))
            ax.add_patch(Ellipse(mu, width, height, angle=angle, fill=False, color=colors[k], **kwargs))
        ax.plot(*mu, marker="x", color=colors[k], ms=9, mew=2)
    return ax
