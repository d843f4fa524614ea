r"""Principal component analysis by singular value decomposition.

With centred data $X_c = X - \bar x = U S V^\top$, the principal axes are the rows of $V^\top$, the
explained variances $s_j^2 / (n-1)$, and the projection $z = (x - \bar x) V_{:, :d}$. Signs are made
deterministic: the entry of largest magnitude in every axis is positive.

PCA is the usual first step before a Gaussian mixture in high dimension (a full covariance in 784 dimensions
has 300k parameters per component; in 30 principal dimensions it has 465).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxprob._validation import as_float_array, check_finite, check_int

__all__ = ["PCA", "pca_fit", "pca_transform", "pca_inverse_transform"]


class PCA(eqx.Module):
    """A fitted PCA (a pytree).

    Attributes:
        mean: `(D,)` training mean.
        components: `(d, D)` orthonormal principal axes, by decreasing variance.
        explained_variance: `(d,)` variances along the axes (`ddof=1`).
        explained_variance_ratio: `(d,)` fractions of the total variance.
        singular_values: `(d,)`.
    """

    mean: jax.Array
    components: jax.Array
    explained_variance: jax.Array
    explained_variance_ratio: jax.Array
    singular_values: jax.Array


@jax.jit(static_argnums=(1,))
def _pca_fit(x, n_components):
    n = x.shape[0]
    mean = jnp.mean(x, axis=0)
    _, s, vt = jnp.linalg.svd(x - mean, full_matrices=False)
    sign = jnp.sign(vt[jnp.arange(vt.shape[0]), jnp.argmax(jnp.abs(vt), axis=1)])
    vt = vt * jnp.where(sign == 0, 1.0, sign)[:, None]
    var = jnp.square(s) / max(n - 1, 1)
    total = jnp.sum(var)
    ratio = var / jnp.where(total > 0, total, 1.0)
    return PCA(mean, vt[:n_components], var[:n_components], ratio[:n_components], s[:n_components])


def pca_fit(x: ArrayLike, n_components: int) -> PCA:
    """Fit a PCA.

    Args:
        x: `(n, D)` data.
        n_components: `d`, between 1 and `min(n, D)`.

    Returns:
        A [`PCA`][jaxprob.decomposition.PCA].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import decomposition
        >>> x = jax.random.normal(jax.random.key(0), (500, 3)) * jnp.array([3.0, 1.0, 0.1])
        >>> p = decomposition.pca_fit(x, 2)
        >>> jnp.abs(p.components).argmax(axis=1).tolist()
        [0, 1]
    """
    x = as_float_array(x, "x", 2)
    check_finite(x, "x")
    n_components = check_int(n_components, "n_components", minimum=1, maximum=min(x.shape))
    return _pca_fit(x, n_components)


def _check_pca(pca):
    if not isinstance(pca, PCA):
        raise TypeError(f"`pca` must be a PCA, got {type(pca).__name__}")


def pca_transform(x: ArrayLike, pca: PCA) -> jax.Array:
    r"""Project onto the principal axes: $z = (x - \bar x) V_d$.

    Args:
        x: `(n, D)`.
        pca: a fitted [`PCA`][jaxprob.decomposition.PCA].

    Returns:
        `(n, d)` scores.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import decomposition
        >>> p = decomposition.pca_fit(jnp.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]), 1)
        >>> decomposition.pca_transform(jnp.array([[4.0, 0.0]]), p).tolist()
        [[2.0]]
    """
    _check_pca(pca)
    x = as_float_array(x, "x", 2)
    if x.shape[1] != pca.mean.shape[0]:
        raise ValueError(f"`x` has {x.shape[1]} features but the PCA was fitted on {pca.mean.shape[0]}")
    return (x - pca.mean) @ pca.components.T


def pca_inverse_transform(z: ArrayLike, pca: PCA) -> jax.Array:
    r"""Map scores back to the data space: $\hat x = \bar x + z V_d^\top$.

    Args:
        z: `(n, d)` scores.
        pca: a fitted [`PCA`][jaxprob.decomposition.PCA].

    Returns:
        `(n, D)` reconstructions.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import decomposition
        >>> p = decomposition.pca_fit(jnp.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]), 1)
        >>> decomposition.pca_inverse_transform(jnp.array([[2.0]]), p).tolist()
        [[4.0, 0.0]]
    """
    _check_pca(pca)
    z = as_float_array(z, "z", 2)
    if z.shape[1] != pca.components.shape[0]:
        raise ValueError(f"`z` has {z.shape[1]} columns but the PCA has {pca.components.shape[0]} components")
    return z @ pca.components + pca.mean
