r"""Densities: Gaussian log-likelihoods, mixture log-densities, entropy, cross-entropy and KL divergence.

**Covariance parametrisation**

A set of `K` Gaussian components in `D` dimensions is described by its means `(K, D)` and by the Cholesky
factors of the *precision* matrices, with one of four covariance types (the shapes follow scikit-learn's
`precisions_cholesky_`):

| type | covariances | precisions_cholesky |
|---|---|---|
| `"full"` | `(K, D, D)` | upper-triangular `U_k` with $\Sigma_k^{-1} = U_k U_k^\top$ |
| `"tied"` | `(D, D)` shared | one `U` for all components |
| `"diag"` | `(K, D)` variances | $1/\sigma_{kd}$ |
| `"spherical"` | `(K,)` variances | $1/\sigma_k$ |

With these factors, $\log \mathcal N(x \mid \mu_k, \Sigma_k) = -\tfrac12 \lVert (x-\mu_k) U_k \rVert^2
+ \sum_d \log U_{k,dd} - \tfrac D2 \log 2\pi$: one matrix product, no solve and no determinant.

All functions are pure, jittable, vmappable and differentiable; they work in the dtype of `x`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy
from jax.typing import ArrayLike

from jaxprob import numerics
from jaxprob._validation import as_float_array, check_choice

__all__ = [
    "COVARIANCE_TYPES",
    "precisions_cholesky",
    "covariances_from_precisions_cholesky",
    "gaussian_log_prob",
    "gaussian_log_prob_diag",
    "gaussian_log_prob_spherical",
    "component_log_prob",
    "log_det_precisions_cholesky",
    "diagonal_entries",
    "mixture_log_prob",
    "categorical_log_prob",
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "gaussian_entropy",
    "gaussian_kl",
    "softmax",
    "log_softmax",
    "logsumexp",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
"""The Gaussian covariance types: full, tied (shared), diagonal, spherical."""
_LOG_2PI = math.log(2.0 * math.pi)

logsumexp = jax.nn.logsumexp
r"""`jax.nn.logsumexp`, re-exported: $\log \sum_i e^{a_i}$ computed stably."""


# ----------------------------------------------------------------------------------------------------------
# covariance <-> precision Cholesky factors
# ----------------------------------------------------------------------------------------------------------
def _prec_chol_from_cov(cov, symmetrize=True):
    """Upper-triangular U with cov^{-1} = U U^T, for (..., D, D) covariances (NaN if not positive definite):
    U = L^{-T} for the Cholesky factor L of cov, by one triangular solve with L transposed."""
    if symmetrize:
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    lower = jax.lax.linalg.cholesky(cov, symmetrize_input=False)
    eye = jnp.broadcast_to(jnp.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
    return jax.lax.linalg.triangular_solve(lower, eye, left_side=True, lower=True, transpose_a=True)


def _precisions_cholesky(covariances, covariance_type, symmetrize=True):
    if covariance_type in ("full", "tied"):
        return _prec_chol_from_cov(covariances, symmetrize)
    return jax.lax.rsqrt(covariances)


def precisions_cholesky(covariances: ArrayLike, covariance_type: str = "full", *, symmetrize: bool = True) -> jax.Array:
    r"""Cholesky factors of the precision matrices, from covariances.

    Args:
        covariances: `(K, D, D)` for `"full"`, `(D, D)` for `"tied"`, `(K, D)` variances for
            `"diag"`, `(K,)` variances for `"spherical"`.
        covariance_type: one of `"full"`, `"tied"`, `"diag"`, `"spherical"`.
        symmetrize: average each matrix with its transpose first; pass False when the covariances are symmetric
            by construction (one kernel less to compile).

    Returns:
        Array of the same shape as `covariances`: upper-triangular $U$ with $\Sigma^{-1} = U U^\top$
        (full, tied) or $1/\sigma$ (diag, spherical). A covariance that is not positive definite gives NaN.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import precisions_cholesky
        >>> u = precisions_cholesky(jnp.array([[[4.0, 0.0], [0.0, 1.0]]]), "full")
        >>> u.round(3).tolist()
        [[[0.5, 0.0], [0.0, 1.0]]]
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    ndim = {"full": 3, "tied": 2, "diag": 2, "spherical": 1}[covariance_type]
    covariances = as_float_array(covariances, "covariances", ndim)
    return _precisions_cholesky(covariances, covariance_type, symmetrize)


def _covariances_from_prec_chol(prec_chol, covariance_type):
    if covariance_type in ("full", "tied"):

        def one(u):
            inv_u = jax.scipy.linalg.solve_triangular(u, jnp.eye(u.shape[-1], dtype=u.dtype), lower=False)
            return jnp.matmul(inv_u.T, inv_u, precision=jax.lax.Precision.HIGHEST)  # parameters only: full

        return jax.vmap(one)(prec_chol) if covariance_type == "full" else one(prec_chol)
    return 1.0 / jnp.square(prec_chol)


def covariances_from_precisions_cholesky(precisions_cholesky: ArrayLike, covariance_type: str = "full") -> jax.Array:
    r"""Inverse of [`precisions_cholesky`][jaxprob.densities.precisions_cholesky]:
$\Sigma = (U U^\top)^{-1} = U^{-\top} U^{-1}$.

    Args:
        precisions_cholesky: factors shaped as in [`precisions_cholesky`][jaxprob.densities.precisions_cholesky].
        covariance_type: one of `"full"`, `"tied"`, `"diag"`, `"spherical"`.

    Returns:
        The covariances, same shape as the input.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import covariances_from_precisions_cholesky
        >>> covariances_from_precisions_cholesky(jnp.array([[0.5, 2.0]]), "diag").tolist()
        [[4.0, 0.25]]
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    ndim = {"full": 3, "tied": 2, "diag": 2, "spherical": 1}[covariance_type]
    u = as_float_array(precisions_cholesky, "precisions_cholesky", ndim)
    return _covariances_from_prec_chol(u, covariance_type)


# ----------------------------------------------------------------------------------------------------------
# Gaussian log-densities
# ----------------------------------------------------------------------------------------------------------
def diagonal_entries(a: ArrayLike) -> jax.Array:
    """Diagonals of a stack of square matrices, as a strided slice of the flattened matrices.

    XLA on the CPU compiles a slice to much less code than the gather of `jnp.diagonal`.

    Args:
        a: `(..., D, D)` matrices.

    Returns:
        `(..., D)` diagonals.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob.densities import diagonal_entries
        >>> diagonal_entries(jnp.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
        [1.0, 4.0]
    """
    d = a.shape[-1]
    return a.reshape(a.shape[:-2] + (d * d,))[..., :: d + 1]


def log_det_precisions_cholesky(prec_chol: ArrayLike, covariance_type: str, n_features: int) -> jax.Array:
    r"""$\log\det U = -\tfrac12 \log\det\Sigma$ of precision Cholesky factors, per component (a scalar when tied).

    Args:
        prec_chol: factors shaped as in [precisions_cholesky][jaxprob.densities.precisions_cholesky].
        covariance_type: one of `"full"`, `"tied"`, `"diag"`, `"spherical"`.
        n_features: $D$ (needed for the spherical type).

    Returns:
        `(K,)` log-determinants (a scalar for `"tied"`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob.densities import log_det_precisions_cholesky
        >>> [round(float(v), 4) for v in log_det_precisions_cholesky(jnp.array([0.5, 1.0]), "spherical", 2)]
        [-1.3863, 0.0]
    """
    if covariance_type == "full":
        return jnp.sum(jnp.log(diagonal_entries(prec_chol)), axis=-1)
    if covariance_type == "tied":
        return jnp.sum(jnp.log(diagonal_entries(prec_chol)))
    if covariance_type == "diag":
        return jnp.sum(jnp.log(prec_chol), axis=-1)
    return n_features * jnp.log(prec_chol)


def _component_log_prob(x, means, prec_chol, covariance_type):
    """(n, K) log N(x_i | mu_k, Sigma_k); no validation (used inside jitted code)."""
    d = x.shape[-1]
    if covariance_type == "full":
        # the products over samples take the library policy (jaxprob.numerics)
        y = numerics.einsum("nd,kde->nke", x, prec_chol) - numerics.einsum("kd,kde->ke", means, prec_chol)[None]
        maha = jnp.sum(jnp.square(y), axis=-1)
    elif covariance_type == "tied":
        y = numerics.matmul(x, prec_chol)
        nu = numerics.matmul(means, prec_chol)
        maha = jnp.sum(jnp.square(y[:, None, :] - nu[None, :, :]), axis=-1)
    elif covariance_type == "diag":
        maha = jnp.sum(jnp.square((x[:, None, :] - means[None]) * prec_chol[None]), axis=-1)
    else:
        maha = jnp.sum(jnp.square(x[:, None, :] - means[None]), axis=-1) * jnp.square(prec_chol)[None]
    log_det = log_det_precisions_cholesky(prec_chol, covariance_type, d)
    return -0.5 * (d * _LOG_2PI + maha) + log_det


def _check_components(x, means, prec_chol, covariance_type):
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    x = as_float_array(x, "x", (1, 2))
    means = as_float_array(means, "means", 2)
    k, d = means.shape
    if x.shape[-1] != d:
        raise ValueError(f"`x` has {x.shape[-1]} features but `means` has {d}")
    expected = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]
    prec_chol = as_float_array(prec_chol, "precisions_cholesky")
    if tuple(prec_chol.shape) != expected:
        raise ValueError(
            f"`precisions_cholesky` must have shape {expected} for covariance_type={covariance_type!r} "
            f"with {k} components in {d} dimensions, got {tuple(prec_chol.shape)}"
        )
    dtype = jnp.result_type(x.dtype, means.dtype, prec_chol.dtype)
    return x.astype(dtype), means.astype(dtype), prec_chol.astype(dtype)


def component_log_prob(x: ArrayLike, means: ArrayLike, precisions_cholesky: ArrayLike,
                       covariance_type: str = "full") -> jax.Array:
    r"""Log-density of every sample under every Gaussian component.

    $$
    \ell_{ik} = \log \mathcal N(x_i \mid \mu_k, \Sigma_k)
    $$

    Args:
        x: `(n, D)` samples, or `(D,)` for one sample.
        means: `(K, D)` component means.
        precisions_cholesky: factors of the precisions, shaped as in
            [`precisions_cholesky`][jaxprob.densities.precisions_cholesky].
        covariance_type: one of `"full"`, `"tied"`, `"diag"`, `"spherical"`.

    Returns:
        `(n, K)` log-densities (`(K,)` for a single sample).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import component_log_prob
        >>> lp = component_log_prob(jnp.zeros((3, 2)), jnp.zeros((1, 2)), jnp.ones((1, 2)), "diag")
        >>> lp.shape, round(float(lp[0, 0]), 4)  # -log(2 pi)
        ((3, 1), -1.8379)
    """
    x, means, prec_chol = _check_components(x, means, precisions_cholesky, covariance_type)
    single = x.ndim == 1
    out = _component_log_prob(jnp.atleast_2d(x), means, prec_chol, covariance_type)
    return out[0] if single else out


def mixture_log_prob(x: ArrayLike, weights: ArrayLike, means: ArrayLike, precisions_cholesky: ArrayLike,
                     covariance_type: str = "full") -> jax.Array:
    r"""Log-density of a Gaussian mixture, by log-sum-exp over components.

    $$
    \log p(x) = \log \sum_k \alpha_k \mathcal N(x \mid \mu_k, \Sigma_k)
    $$

    Args:
        x: `(n, D)` samples, or `(D,)`.
        weights: `(K,)` mixing weights (non-negative, summing to one).
        means: `(K, D)`.
        precisions_cholesky: shaped as in [`precisions_cholesky`][jaxprob.densities.precisions_cholesky].
        covariance_type: one of `"full"`, `"tied"`, `"diag"`, `"spherical"`.

    Returns:
        `(n,)` log-densities (a scalar for a single sample).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture_log_prob
        >>> lp = mixture_log_prob(jnp.zeros((1, 1)), jnp.array([0.5, 0.5]), jnp.zeros((2, 1)),
        ...                       jnp.ones(2), "spherical")
        >>> round(float(lp[0]), 4)  # log N(0 | 0, 1)
        -0.9189
    """
    x, means, prec_chol = _check_components(x, means, precisions_cholesky, covariance_type)
    weights = as_float_array(weights, "weights", 1).astype(x.dtype)
    if weights.shape[0] != means.shape[0]:
        raise ValueError(f"`weights` has {weights.shape[0]} entries but `means` has {means.shape[0]} rows")
    single = x.ndim == 1
    lp = _component_log_prob(jnp.atleast_2d(x), means, prec_chol, covariance_type) + jnp.log(weights)
    out = logsumexp(lp, axis=-1)
    return out[0] if single else out


def _single_gaussian(x, mean, cov, covariance_type, ndim_cov):
    x = as_float_array(x, "x", (1, 2))
    mean = as_float_array(mean, "mean", 1)
    cov = as_float_array(cov, "cov", ndim_cov)
    if x.shape[-1] != mean.shape[0]:
        raise ValueError(f"`x` has {x.shape[-1]} features but `mean` has {mean.shape[0]}")
    if ndim_cov == 2 and cov.shape != (mean.shape[0],) * 2:
        raise ValueError(f"`cov` must have shape {(mean.shape[0],) * 2}, got {tuple(cov.shape)}")
    if ndim_cov == 1 and cov.shape != mean.shape:
        raise ValueError(f"`var` must have shape {tuple(mean.shape)}, got {tuple(cov.shape)}")
    dtype = jnp.result_type(x.dtype, mean.dtype, cov.dtype)
    x, mean, cov = x.astype(dtype), mean.astype(dtype), cov.astype(dtype)
    single = x.ndim == 1
    pc = _precisions_cholesky(cov[None], covariance_type)
    out = _component_log_prob(jnp.atleast_2d(x), mean[None], pc, covariance_type)[:, 0]
    return out[0] if single else out


def gaussian_log_prob(x: ArrayLike, mean: ArrayLike, cov: ArrayLike) -> jax.Array:
    r"""Multivariate normal log-density with a full covariance, through the Cholesky factor of the precision.

    $$
    \log \mathcal N(x \mid \mu, \Sigma) = -\tfrac12 (x-\mu)^\top \Sigma^{-1} (x-\mu)
    - \tfrac12 \log\lvert 2\pi\Sigma \rvert
    $$

    Args:
        x: `(n, D)` samples, or `(D,)`.
        mean: `(D,)`.
        cov: `(D, D)` symmetric positive definite.

    Returns:
        `(n,)` log-densities (scalar for one sample); NaN when `cov` is not positive definite.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import gaussian_log_prob
        >>> round(float(gaussian_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.eye(2))), 4)
        -1.8379
    """
    return _single_gaussian(x, mean, cov, "full", 2)


def gaussian_log_prob_diag(x: ArrayLike, mean: ArrayLike, var: ArrayLike) -> jax.Array:
    """Gaussian log-density with a diagonal covariance `diag(var)`.

    Args:
        x: `(n, D)` samples, or `(D,)`.
        mean: `(D,)`.
        var: `(D,)` positive variances.

    Returns:
        `(n,)` log-densities (scalar for one sample).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import gaussian_log_prob_diag
        >>> round(float(gaussian_log_prob_diag(jnp.zeros(1), jnp.zeros(1), jnp.array([4.0]))), 4)
        -1.6121
    """
    return _single_gaussian(x, mean, var, "diag", 1)


def gaussian_log_prob_spherical(x: ArrayLike, mean: ArrayLike, var: ArrayLike) -> jax.Array:
    r"""Gaussian log-density with an isotropic covariance $\sigma^2 I$.

    Args:
        x: `(n, D)` samples, or `(D,)`.
        mean: `(D,)`.
        var: scalar variance $\sigma^2 > 0$.

    Returns:
        `(n,)` log-densities (scalar for one sample).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import gaussian_log_prob_spherical
        >>> round(float(gaussian_log_prob_spherical(jnp.zeros(2), jnp.zeros(2), 1.0)), 4)
        -1.8379
    """
    var = as_float_array(jnp.asarray(var, dtype=float) if isinstance(var, (int, float)) else var, "var", 0)
    x = as_float_array(x, "x", (1, 2))
    mean = as_float_array(mean, "mean", 1)
    if x.shape[-1] != mean.shape[0]:
        raise ValueError(f"`x` has {x.shape[-1]} features but `mean` has {mean.shape[0]}")
    dtype = jnp.result_type(x.dtype, mean.dtype)
    single = x.ndim == 1
    out = _component_log_prob(
        jnp.atleast_2d(x).astype(dtype), mean[None].astype(dtype), jax.lax.rsqrt(var.astype(dtype))[None],
        "spherical",
    )[:, 0]
    return out[0] if single else out


def categorical_log_prob(labels: ArrayLike, logits: ArrayLike) -> jax.Array:
    r"""Log-probability of integer labels under categorical distributions given by (unnormalised) logits.

    Args:
        labels: `(n,)` integers in `[0, C)`.
        logits: `(n, C)` or `(C,)` (shared by all samples).

    Returns:
        `(n,)` values $\log \mathrm{softmax}(\text{logits})_{y_i}$.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import categorical_log_prob
        >>> lp = categorical_log_prob(jnp.array([0, 1]), jnp.log(jnp.array([0.25, 0.75])))
        >>> [round(float(v), 4) for v in lp]
        [-1.3863, -0.2877]
    """
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"`labels` must be integers, got {labels.dtype}")
    logits = as_float_array(logits, "logits", (1, 2))
    logp = jax.nn.log_softmax(logits, axis=-1)
    logp = jnp.broadcast_to(logp, labels.shape + logp.shape[-1:])
    return jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]


# ----------------------------------------------------------------------------------------------------------
# Information measures
# ----------------------------------------------------------------------------------------------------------
def entropy(p: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Shannon entropy (nats) of discrete distributions, with $0 \log 0 = 0$.

    $$
    H(p) = -\sum_i p_i \log p_i
    $$

    Args:
        p: probabilities along `axis` (any leading shape).
        axis: the axis holding the distribution.

    Returns:
        Entropy with `axis` removed.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import entropy
        >>> round(float(entropy(jnp.array([0.5, 0.5, 0.0]))), 4)  # log 2
        0.6931
    """
    p = as_float_array(p, "p")
    return -jnp.sum(xlogy(p, p), axis=axis)


def cross_entropy(p: ArrayLike, q: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Cross-entropy (nats) $H(p, q) = -\sum_i p_i \log q_i$; infinite where $q_i = 0 < p_i$.

    Args:
        p: reference probabilities along `axis`.
        q: model probabilities, same shape as `p`.
        axis: the axis holding the distributions.

    Returns:
        Cross-entropy with `axis` removed.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import cross_entropy
        >>> round(float(cross_entropy(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]))), 4)
        0.6931
    """
    p = as_float_array(p, "p")
    q = as_float_array(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"`p` and `q` must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return -jnp.sum(xlogy(p, q), axis=axis)


def kl_divergence(p: ArrayLike, q: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Kullback-Leibler divergence $\mathrm{KL}(p\,\|\,q) = \sum_i p_i \log (p_i / q_i) = H(p,q) - H(p)$.

    Terms with $p_i = 0$ contribute zero; the divergence is infinite where $q_i = 0 < p_i$.

    Args:
        p: probabilities along `axis`.
        q: probabilities, same shape as `p`.
        axis: the axis holding the distributions.

    Returns:
        Non-negative divergence with `axis` removed.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kl_divergence
        >>> round(float(kl_divergence(jnp.array([0.5, 0.5]), jnp.array([0.9, 0.1]))), 4)
        0.5108
    """
    p = as_float_array(p, "p")
    q = as_float_array(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"`p` and `q` must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return jnp.sum(xlogy(p, p) - xlogy(p, q), axis=axis)


def gaussian_entropy(cov: ArrayLike) -> jax.Array:
    r"""Differential entropy of $\mathcal N(\mu, \Sigma)$: $\tfrac12 \log\lvert 2\pi e \Sigma\rvert$.

    Args:
        cov: `(D, D)` covariance.

    Returns:
        Scalar entropy in nats.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import gaussian_entropy
        >>> round(float(gaussian_entropy(jnp.eye(1))), 4)
        1.4189
    """
    cov = as_float_array(cov, "cov", 2)
    d = cov.shape[-1]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(cov))))
    return 0.5 * (d * (1.0 + _LOG_2PI) + log_det)


def gaussian_kl(mean_p: ArrayLike, cov_p: ArrayLike, mean_q: ArrayLike, cov_q: ArrayLike) -> jax.Array:
    r"""Closed-form $\mathrm{KL}(\mathcal N(\mu_p, \Sigma_p) \,\|\, \mathcal N(\mu_q, \Sigma_q))$.

    $$
    \tfrac12 \Big[\operatorname{tr}(\Sigma_q^{-1}\Sigma_p) + (\mu_q-\mu_p)^\top \Sigma_q^{-1}(\mu_q-\mu_p)
    - D + \log\frac{\lvert\Sigma_q\rvert}{\lvert\Sigma_p\rvert}\Big]
    $$

    Args:
        mean_p: `(D,)`.
        cov_p: `(D, D)`.
        mean_q: `(D,)`.
        cov_q: `(D, D)`.

    Returns:
        Scalar divergence in nats.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import gaussian_kl
        >>> float(gaussian_kl(jnp.zeros(1), jnp.eye(1), jnp.ones(1), jnp.eye(1)))
        0.5
    """
    mean_p = as_float_array(mean_p, "mean_p", 1)
    mean_q = as_float_array(mean_q, "mean_q", 1)
    cov_p = as_float_array(cov_p, "cov_p", 2)
    cov_q = as_float_array(cov_q, "cov_q", 2)
    d = mean_p.shape[0]
    for name, arr in (("mean_q", mean_q),):
        if arr.shape != (d,):
            raise ValueError(f"`{name}` must have shape ({d},), got {tuple(arr.shape)}")
    for name, arr in (("cov_p", cov_p), ("cov_q", cov_q)):
        if arr.shape != (d, d):
            raise ValueError(f"`{name}` must have shape ({d}, {d}), got {tuple(arr.shape)}")
    # one batched Cholesky and one solve, never two LAPACK calls side by side: under vmap, jaxlib 0.10's CPU
    # kernels split large batches over the thread pool they run on, and two at once can deadlock it
    lp, lq = jnp.linalg.cholesky(jnp.stack([cov_p, cov_q]))
    mz = jax.scipy.linalg.solve_triangular(lq, jnp.concatenate([lp, (mean_q - mean_p)[:, None]], axis=1), lower=True)
    m, z = mz[:, :d], mz[:, d]
    log_det_ratio = 2.0 * (jnp.sum(jnp.log(jnp.diagonal(lq))) - jnp.sum(jnp.log(jnp.diagonal(lp))))
    return 0.5 * (jnp.sum(jnp.square(m)) + jnp.sum(jnp.square(z)) - d + log_det_ratio)


def softmax(logits: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Numerically stable softmax $\exp(z_i - \operatorname{logsumexp}(z))$.

    Args:
        logits: any shape.
        axis: the normalised axis.

    Returns:
        Probabilities of the same shape, summing to one along `axis`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import softmax
        >>> softmax(jnp.array([0.0, jnp.log(3.0)])).round(4).tolist()
        [0.25, 0.75]
    """
    logits = as_float_array(logits, "logits")
    return jax.nn.softmax(logits, axis=axis)


def log_softmax(logits: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Numerically stable $z_i - \operatorname{logsumexp}(z)$.

    Args:
        logits: any shape.
        axis: the normalised axis.

    Returns:
        Log-probabilities of the same shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import log_softmax
        >>> [round(float(v), 4) for v in log_softmax(jnp.array([1000.0, 1000.0]))]
        [-0.6931, -0.6931]
    """
    logits = as_float_array(logits, "logits")
    return jax.nn.log_softmax(logits, axis=axis)
