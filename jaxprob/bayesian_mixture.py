r"""Variational Bayesian Gaussian mixtures: conjugate priors, coordinate-ascent variational inference, and a
number of components that the data choose.

**Model.** $x_i \mid z_i = k \sim \mathcal N(\mu_k, \Lambda_k^{-1})$, $z_i \sim \operatorname{Cat}(\pi)$, with
conjugate priors

* on the weights, either a Dirichlet distribution $\pi \sim \operatorname{Dir}(\gamma_0, \dots, \gamma_0)$
  (`"dirichlet_distribution"`) or the stick-breaking representation of a Dirichlet process truncated at $K$
  sticks, $\pi_k = v_k \prod_{j<k}(1 - v_j)$ with $v_k \sim \operatorname{Beta}(1, \gamma_0)$
  (`"dirichlet_process"`, the default);
* on means and precisions, Normal–Wishart:
  $\mu_k \mid \Lambda_k \sim \mathcal N(m_0, (\beta_0 \Lambda_k)^{-1})$,
  $\Lambda_k \sim \mathcal W(W_0, \nu_0)$, for the four covariance types of the Gaussian family (full, tied,
  diagonal, spherical), each as scikit-learn's `BayesianGaussianMixture` defines it (its tied, diagonal and
  spherical precisions keep the Wishart's expected log-determinant).

**Inference.** The mean-field posterior $q(z)\, q(\pi)\, \prod_k q(\mu_k, \Lambda_k)$ is fitted by coordinate
ascent on the engine's loop ([jaxprob.em.run][]):

* the **E-step** sets $r_{ik} \propto \exp\big(\mathbb E[\log \pi_k] + \mathbb E[\log \mathcal N(x_i \mid \mu_k,
  \Lambda_k)]\big)$ and reduces them to the Gaussian family's additive statistics ([jaxprob.em.Stats][]:
  $N_k = \sum_i w_i r_{ik}$, $S_k$, $Q_k$; the `log_likelihood` field holds the additive entropy term
  $-\sum_i w_i \sum_k r_{ik} \log r_{ik}$), so that statistics of chunks or devices add up as for EM;
* the **M-step** turns the summed statistics into the posterior: Dirichlet (or Beta) concentrations from $N_k$,
  $\beta_k = \beta_0 + N_k$, $m_k = (\beta_0 m_0 + N_k \bar x_k) / \beta_k$, $\nu_k = \nu_0 + N_k$ and
  $W_k^{-1} = W_0^{-1} + N_k S_k + \frac{\beta_0 N_k}{\beta_0 + N_k} (\bar x_k - m_0)(\bar x_k - m_0)^\top$
  (Bishop, *Pattern Recognition and Machine Learning*, 10.58-10.63);
* the **evidence lower bound** $\mathcal L(q) \le \log p(X)$ is computed after every M-step. As in scikit-learn
  it is written without the terms that are the same for every $q$ of the fit (they depend only on $N$, $D$, $K$
  and the prior), so differences along a fit, between restarts and the stopping rule are those of the ELBO. The
  trace holds it per unit sample weight; it never decreases along the iterations.

Components that the data do not support keep a posterior weight near zero (of order $\gamma_0 / N$): fitted with
$K$ larger than needed, the mixture switches the extra components off instead of overfitting, which is the
variational answer to the choice of $K$ (see `docs/bayesian-mixtures.md`).

The checked front-end is [fit][jaxprob.bayesian_mixture.fit]; the pure pieces
([e_step][jaxprob.bayesian_mixture.e_step], [m_step][jaxprob.bayesian_mixture.m_step],
[lower_bound][jaxprob.bayesian_mixture.lower_bound], [fit_from][jaxprob.bayesian_mixture.fit_from]) are traceable,
and [fit_from][jaxprob.bayesian_mixture.fit_from] takes an `e_step_fn` for statistics summed over chunks or devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betaln, digamma, gammaln
from jax.typing import ArrayLike

from jaxprob import em
from jaxprob._validation import (
    as_float_array,
    check_choice,
    check_finite,
    check_int,
    check_key,
    check_sample_weight,
    is_tracer,
)
from jaxprob.densities import COVARIANCE_TYPES, log_det_precisions_cholesky, precisions_cholesky
from jaxprob.em import INIT_METHODS, FitInfo, Mixture, Prepared, Stats
from jaxprob.families.gaussian import COVARIANCE_TABLE, Gaussian, GaussianParams, check_reg_covar, gaussian

__all__ = [
    "WEIGHT_PRIOR_TYPES",
    "Prior",
    "BayesianGMM",
    "make_prior",
    "expected_log_weights",
    "expected_weights",
    "e_step",
    "m_step",
    "lower_bound",
    "loop_steps",
    "fit_from",
    "fit",
    "predict_proba",
    "predict",
    "to_mixture",
]

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
"""Priors on the mixing weights: a stick-breaking Dirichlet process truncated at $K$ sticks, or a symmetric
Dirichlet distribution."""

_HIGHEST = jax.lax.Precision.HIGHEST
_LOG2 = math.log(2.0)


# ----------------------------------------------------------------------------------------------------------
# prior and posterior
# ----------------------------------------------------------------------------------------------------------
class Prior(eqx.Module):
    r"""Conjugate prior of a Bayesian Gaussian mixture (a pytree; see the module notes).

    Attributes:
        weight_concentration: $\gamma_0 > 0$, the Dirichlet concentration of every component, or the second
            parameter of the Beta distribution of every stick for a Dirichlet process.
        mean_precision: $\beta_0 > 0$, the precision of the means' prior relative to $\Lambda_k$.
        mean: `(D,)` $m_0$.
        degrees_of_freedom: $\nu_0 > D - 1$.
        covariance: $W_0^{-1}$: `(D, D)` (full, tied), `(D,)` (diag) or `()` (spherical), positive.
        weight_prior_type: one of [WEIGHT_PRIOR_TYPES][jaxprob.bayesian_mixture.WEIGHT_PRIOR_TYPES] (static).
    """

    weight_concentration: jax.Array
    mean_precision: jax.Array
    mean: jax.Array
    degrees_of_freedom: jax.Array
    covariance: jax.Array
    weight_prior_type: str = eqx.field(static=True, default="dirichlet_process")


class BayesianGMM(eqx.Module):
    r"""The variational posterior of a Bayesian Gaussian mixture (a pytree), with its prior and family.

    Attributes:
        weight_concentration: `(2, K)` Beta parameters $(a_k, b_k)$ of the sticks (Dirichlet process) or `(K,)`
            Dirichlet concentrations $\gamma_k$ (Dirichlet distribution).
        mean_precision: `(K,)` $\beta_k$.
        means: `(K, D)` $m_k$.
        degrees_of_freedom: `(K,)` $\nu_k$ (a scalar for tied covariances).
        covariances: $\mathbb E[\Lambda_k]^{-1} = (\nu_k W_k)^{-1}$, shaped as the Gaussian family's
            covariances (`(K, D, D)`, `(D, D)`, `(K, D)`, `(K,)`).
        precisions_cholesky: Cholesky factors of $\mathbb E[\Lambda_k]$, same shape (see
            [jaxprob.densities.precisions_cholesky][]).
        prior: the [Prior][jaxprob.bayesian_mixture.Prior].
        family: the [Gaussian][jaxprob.families.gaussian.Gaussian] family (covariance type, `reg_covar`).
    """

    weight_concentration: jax.Array
    mean_precision: jax.Array
    means: jax.Array
    degrees_of_freedom: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array
    prior: Prior
    family: Gaussian

    @property
    def weights(self) -> jax.Array:
        """`(K,)` posterior mean weights (see [expected_weights][jaxprob.bayesian_mixture.expected_weights])."""
        return expected_weights(self.weight_concentration, self.prior.weight_prior_type)

    @property
    def covariance_type(self) -> str:
        return self.family.covariance_type

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]


def expected_log_weights(concentration: ArrayLike, weight_prior_type: str) -> jax.Array:
    r"""$\mathbb E_q[\log \pi_k]$ under the posterior of the weights.

    Dirichlet: $\psi(\gamma_k) - \psi(\sum_j \gamma_j)$. Dirichlet process:
    $\psi(a_k) - \psi(a_k + b_k) + \sum_{j<k} \big(\psi(b_j) - \psi(a_j + b_j)\big)$.

    Args:
        concentration: `(K,)` Dirichlet concentrations or `(2, K)` Beta parameters.
        weight_prior_type: one of [WEIGHT_PRIOR_TYPES][jaxprob.bayesian_mixture.WEIGHT_PRIOR_TYPES].

    Returns:
        `(K,)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm
        >>> bgm.expected_log_weights(jnp.array([1.0, 1.0]), "dirichlet_distribution").round(4).tolist()
        [-1.0, -1.0]
    """
    if weight_prior_type == "dirichlet_process":
        a, b = concentration[0], concentration[1]
        d_sum = digamma(a + b)
        tail = jnp.cumsum(digamma(b) - d_sum)
        return digamma(a) - d_sum + jnp.concatenate([jnp.zeros((1,), tail.dtype), tail[:-1]])
    return digamma(concentration) - digamma(jnp.sum(concentration))


def expected_weights(concentration: ArrayLike, weight_prior_type: str) -> jax.Array:
    r"""`(K,)` point estimates of the weights from their posterior, as scikit-learn's `weights_`.

    Dirichlet: $\gamma_k / \sum_j \gamma_j$. Dirichlet process: the stick-breaking weights of the sticks'
    posterior means, $\bar v_k \prod_{j<k} (1 - \bar v_j)$ with $\bar v_k = a_k / (a_k + b_k)$, renormalised
    over the $K$ sticks.

    Args:
        concentration: `(K,)` Dirichlet concentrations or `(2, K)` Beta parameters.
        weight_prior_type: one of [WEIGHT_PRIOR_TYPES][jaxprob.bayesian_mixture.WEIGHT_PRIOR_TYPES].

    Returns:
        `(K,)` weights summing to one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm
        >>> w = bgm.expected_weights(jnp.array([[1.0, 1.0], [1.0, 1.0]]), "dirichlet_process")  # sticks 1/2, 1/4
        >>> [round(float(v), 4) for v in w]
        [0.6667, 0.3333]
    """
    if weight_prior_type == "dirichlet_process":
        a, b = concentration[0], concentration[1]
        total = a + b
        rest = jnp.cumprod(b / total)
        w = a / total * jnp.concatenate([jnp.ones((1,), rest.dtype), rest[:-1]])
    else:
        w = concentration
    return w / jnp.sum(w)


# ----------------------------------------------------------------------------------------------------------
# E-step, M-step, bound
# ----------------------------------------------------------------------------------------------------------
def _log_lambda(dof, d):
    r"""$\mathbb E[\log|\Lambda|] - \log|W|$: $D \log 2 + \sum_{i<D} \psi((\nu - i)/2)$ (Wishart)."""
    i = jnp.arange(d, dtype=jnp.asarray(dof).dtype)
    return d * _LOG2 + jnp.sum(digamma(0.5 * (jnp.asarray(dof)[..., None] - i)), axis=-1)


def _log_norm_chol(model):
    r"""$\log\det$ of the Cholesky factors of $W_k$ (the normalised factors carry $\nu_k$)."""
    d = model.means.shape[1]
    ld = log_det_precisions_cholesky(model.precisions_cholesky, model.family.covariance_type, d)
    return ld - 0.5 * d * jnp.log(model.degrees_of_freedom)


def _component_offsets(model):
    r"""`(K,)` terms of $\mathbb E[\log \pi_k] + \mathbb E[\log \mathcal N(x \mid \mu_k, \Lambda_k)]$ that do not
    depend on $x$, beyond the Gaussian log-density with precision $\mathbb E[\Lambda_k]$."""
    d = model.means.shape[1]
    dof = model.degrees_of_freedom
    k = model.means.shape[0]
    log_w = expected_log_weights(model.weight_concentration, model.prior.weight_prior_type)
    per = -0.5 * d * jnp.log(dof) + 0.5 * _log_lambda(dof, d)
    return log_w + jnp.broadcast_to(per, (k,)) - 0.5 * d / model.mean_precision


def _log_rho(data, model, center):
    """`(n, K)` unnormalised log-responsibilities from prepared Gaussian features."""
    params = GaussianParams(model.means, model.covariances, model.precisions_cholesky)
    return model.family.log_prob(data, params, center) + _component_offsets(model)[None, :]


def e_step(prepared: Prepared, model: BayesianGMM) -> Stats:
    r"""Variational E-step on prepared data: responsibilities under $q$, reduced to additive statistics.

    Args:
        prepared: a [Prepared][jaxprob.em.Prepared] data set of the model's Gaussian family
            (`em.prepare(x, model.family, w)`).
        model: the current [BayesianGMM][jaxprob.bayesian_mixture.BayesianGMM].

    Returns:
        [Stats][jaxprob.em.Stats] with the Gaussian family's statistics; its `log_likelihood` field holds the
        entropy term $-\sum_i w_i \sum_k r_{ik} \log r_{ik}$ of the bound. Every leaf is a sum over samples:
        statistics of chunks (prepared about one common center) or devices add up.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm, em
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (50, 1)) - 5,
        ...                      jax.random.normal(jax.random.key(2), (50, 1)) + 5])
        >>> model, _ = bgm.fit(x, 2, key=jax.random.key(0))
        >>> stats = bgm.e_step(em.prepare(x, model.family), model)
        >>> round(float(stats.counts.sum()), 3)
        100.0
    """
    w = prepared.weights
    rho = _log_rho(prepared.data, model, prepared.center)
    log_norm = jax.nn.logsumexp(rho, axis=1)
    log_resp = rho - log_norm[:, None]
    resp = jnp.exp(log_resp)
    rw = resp * w[:, None]
    fam, counts = model.family.statistics_and_counts(prepared.data, rw, None, prepared.center)
    neg_entropy = jnp.sum(resp * log_resp, axis=1)
    entropy = -jnp.sum(jnp.where(w > 0, w * neg_entropy, 0.0))
    dtype = rw.dtype
    return Stats(counts, fam, entropy, jnp.sum(w), jnp.sum((w > 0).astype(dtype)))


def _wishart(ct, prior: Prior, nk, mu_c, m0_c, sk, beta):
    r"""Posterior degrees of freedom and normalised covariances $(\nu_k W_k)^{-1}$, per covariance type."""
    k = nk.shape[0]
    b0 = prior.mean_precision
    diff = mu_c - m0_c
    if ct == "full":
        dof = prior.degrees_of_freedom + nk
        scale = b0 * nk / beta
        cov = prior.covariance + nk[:, None, None] * sk + scale[:, None, None] * (diff[:, :, None] * diff[:, None, :])
        return dof, cov / dof[:, None, None]
    if ct == "tied":
        dof = prior.degrees_of_freedom + jnp.sum(nk) / k
        outer = jnp.matmul((nk / beta)[None, :] * diff.T, diff, precision=_HIGHEST)
        cov = prior.covariance + sk * (jnp.sum(nk) / k) + (b0 / k) * outer
        return dof, cov / dof
    dof = prior.degrees_of_freedom + nk
    if ct == "diag":
        cov = prior.covariance + nk[:, None] * (sk + (b0 / beta)[:, None] * jnp.square(diff))
        return dof, cov / dof[:, None]
    cov = prior.covariance + nk * (sk + b0 / beta * jnp.mean(jnp.square(diff), axis=1))
    return dof, cov / dof


def m_step(stats: Stats, prior: Prior, family: Gaussian, center: Any) -> tuple[BayesianGMM, jax.Array]:
    r"""Variational M-step: the posterior of weights, means and precisions from summed statistics.

    Args:
        stats: summed [Stats][jaxprob.em.Stats] of the Gaussian `family` (from [e_step][jaxprob.bayesian_mixture.e_step]
            or [jaxprob.em.statistics_from_responsibilities][]).
        prior: the [Prior][jaxprob.bayesian_mixture.Prior].
        family: the [Gaussian][jaxprob.families.gaussian.Gaussian] family (covariance type and `reg_covar`, the
            ridge added to the data covariances $S_k$ as scikit-learn adds it).
        center: the reference the statistics were prepared about.

    Returns:
        `(model, regularized)`: the [BayesianGMM][jaxprob.bayesian_mixture.BayesianGMM] and a `(K,)` bool flag
        of components whose posterior scale did not factorise (non-finite factors).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm, em, families
        >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])
        >>> fam = families.gaussian("spherical", 0.0)
        >>> prior = bgm.make_prior(x, 1, "spherical")
        >>> prep = em.prepare(x, fam)
        >>> model, _ = bgm.m_step(em.statistics_from_responsibilities(prep, jnp.ones((4, 1)), fam), prior, fam,
        ...                       prep.center)
        >>> model.means.round(4).tolist(), model.degrees_of_freedom.round(4).tolist()  # (1.5 + 4 * 1.5) / 5; 1 + 4
        ([[1.5]], [5.0])
    """
    ct = family.covariance_type
    counts = stats.counts
    nk = counts + 10 * jnp.finfo(counts.dtype).eps  # as scikit-learn: no division by an empty component
    sum_x, sum_xx = stats.family
    mu_c = sum_x / nk[:, None]
    sk = COVARIANCE_TABLE[ct].covariance(sum_xx, nk, mu_c, family.reg_covar)
    if prior.weight_prior_type == "dirichlet_process":
        tail = jnp.flip(jnp.cumsum(jnp.flip(nk)))  # sum_{j >= k} N_j, summed from the last component
        rest = jnp.concatenate([tail[1:], jnp.zeros((1,), nk.dtype)])
        concentration = jnp.stack([1.0 + nk, prior.weight_concentration + rest])
    else:
        concentration = prior.weight_concentration + nk
    beta = prior.mean_precision + nk
    m0_c = prior.mean - center
    means = (prior.mean_precision * m0_c + nk[:, None] * mu_c) / beta[:, None] + center
    dof, cov = _wishart(ct, prior, nk, mu_c, m0_c, sk, beta)
    prec = precisions_cholesky(cov, ct, symmetrize=False)  # symmetric by construction
    k = nk.shape[0]
    bad = jnp.any(~jnp.isfinite(prec.reshape((k, -1) if ct != "tied" else (1, -1))), axis=1)
    model = BayesianGMM(concentration, beta, means, dof, cov, prec, prior, family)
    return model, jnp.broadcast_to(bad, (k,))


def lower_bound(stats: Stats, model: BayesianGMM) -> jax.Array:
    r"""The evidence lower bound (total, not per sample) of responsibilities summarised by `stats` and the
    posterior `model` that the M-step made from them, without the terms constant along a fit.

    $\mathcal L = H[q(z)] - \sum_k \log B(W_k, \nu_k) - \log C(q(\pi)) - \tfrac D2 \sum_k \log \beta_k$ + const,
    with $H[q(z)]$ the entropy term of `stats`, $B$ the Wishart normaliser (of the normalised factors) and $C$ the
    Dirichlet normaliser (or $-\sum_k \log \mathrm B(a_k, b_k)$ for the sticks). For tied covariances the
    Wishart term counts $K$ times, as in scikit-learn.

    Args:
        stats: [Stats][jaxprob.em.Stats] of an [e_step][jaxprob.bayesian_mixture.e_step] (summed).
        model: `m_step(stats, ...)`'s posterior.

    Returns:
        Scalar.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm, em
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (50, 1)) - 5,
        ...                      jax.random.normal(jax.random.key(2), (50, 1)) + 5])
        >>> model, info = bgm.fit(x, 2, key=jax.random.key(0))
        >>> prep = em.prepare(x, model.family)
        >>> stats = bgm.e_step(prep, model)  # one more iteration: the bound does not decrease
        >>> new, _ = bgm.m_step(stats, model.prior, model.family, prep.center)
        >>> bool(bgm.lower_bound(stats, new) / 100 >= info.log_likelihood - 1e-5)
        True
    """
    d = model.means.shape[1]
    k = model.means.shape[0]
    dof = model.degrees_of_freedom
    ldc = _log_norm_chol(model)
    i = jnp.arange(d, dtype=dof.dtype)
    log_wishart = -(dof * ldc + dof * d * 0.5 * _LOG2 + jnp.sum(gammaln(0.5 * (dof[..., None] - i)), axis=-1))
    log_wishart = k * log_wishart if model.family.covariance_type == "tied" else jnp.sum(log_wishart)
    conc = model.weight_concentration
    if model.prior.weight_prior_type == "dirichlet_process":
        log_norm_weight = -jnp.sum(betaln(conc[0], conc[1]))
    else:
        log_norm_weight = gammaln(jnp.sum(conc)) - jnp.sum(gammaln(conc))
    return stats.log_likelihood - log_wishart - log_norm_weight - 0.5 * d * jnp.sum(jnp.log(model.mean_precision))


# ----------------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------------
def loop_steps(prepared: Prepared, prior: Prior, family: Gaussian,
               e_step_fn: Callable | None = None) -> tuple[Callable, Callable]:
    r"""The E-step and M-step callables of coordinate-ascent VI, as [jaxprob.em.run][] takes them.

    The engine's loop scores the statistics its E-step returns. Here the score of iteration $t$ is the bound
    $\mathcal L(q_t(z), q_t(\theta))$ after that iteration's M-step, as scikit-learn reports it, so the E-step
    callable also runs the (cheap, $O(K D^3)$) M-step on its statistics to evaluate the bound, and returns the
    statistics with `log_likelihood` replaced by it; the M-step callable then makes the same posterior again.

    Args:
        prepared: a [Prepared][jaxprob.em.Prepared] data set of `family`.
        prior: the [Prior][jaxprob.bayesian_mixture.Prior].
        family: the [Gaussian][jaxprob.families.gaussian.Gaussian] family.
        e_step_fn: optional `model -> Stats` replacing [e_step][jaxprob.bayesian_mixture.e_step] on `prepared`
            (a sum over chunks, or `lax.psum` over devices).

    Returns:
        `(e_fn, m_fn)`.
    """
    center = prepared.center

    def raw(model):
        return e_step(prepared, model) if e_step_fn is None else e_step_fn(model)

    def e_fn(model):
        stats = raw(model)
        new, _ = m_step(stats, prior, family, center)
        return stats._replace(log_likelihood=lower_bound(stats, new))

    def m_fn(stats, previous, use_previous):
        del previous, use_previous  # the prior keeps every component defined: nothing to hold back
        new, regularized = m_step(stats, prior, family, center)
        collapsed = stats.counts < stats.total_weight / jnp.maximum(stats.n_samples, 1.0)
        return new, collapsed, regularized

    return e_fn, m_fn


def _zeros_like_output(fn):
    shapes = jax.eval_shape(fn)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def fit_from(prepared: Prepared, prior: Prior, family: Gaussian, stats: Stats, *, max_iter: int, tol: float,
             e_step_fn: Callable | None = None) -> tuple[BayesianGMM, FitInfo]:
    r"""Coordinate-ascent VI from stacked starting statistics, one loop per restart (vmapped), the restart with
    the highest final bound kept (traceable, no validation).

    Args:
        prepared: a [Prepared][jaxprob.em.Prepared] data set of `family`.
        prior: the [Prior][jaxprob.bayesian_mixture.Prior].
        family: the [Gaussian][jaxprob.families.gaussian.Gaussian] family.
        stats: [Stats][jaxprob.em.Stats] stacked on a leading `(n_init,)` axis, e.g. from
            [jaxprob.em.initial_stats][] or [jaxprob.em.statistics_from_responsibilities][]; their M-step is
            the starting posterior.
        max_iter: hard limit on iterations (static).
        tol: threshold on the change of the bound per unit sample weight.
        e_step_fn: optional replacement of the E-step (see [loop_steps][jaxprob.bayesian_mixture.loop_steps]).

    Returns:
        `(model, info)` as [fit][jaxprob.bayesian_mixture.fit].
    """
    e_fn, m_fn = loop_steps(prepared, prior, family, e_step_fn)
    st0 = jax.tree.map(lambda a: a[0], stats)
    k = st0.counts.shape[0]
    start = _zeros_like_output(lambda: m_fn(st0, None, False)[0])  # never read: the loop starts from stats

    def one(st):
        return em.run(start, st, e_fn, m_fn, max_iter=max_iter, tol=tol, given=False, n_flags=k)

    n_init = stats.counts.shape[0]
    if n_init == 1:  # no batched while_loop: same values, faster compile
        states = jax.tree.map(lambda a: a[None], one(st0))
    else:
        states = jax.vmap(one)(stats)
    # The loop's final score is that of the look-ahead E-step after the returned posterior; the returned
    # posterior's own bound is the last recorded one (one further back when a non-finite bound stopped the loop
    # on the posterior before).
    idx = states.n_iter - 1 - states.nonfinite.astype(jnp.int32)
    final = jnp.take_along_axis(states.trace, jnp.maximum(idx, 0)[:, None], axis=1)[:, 0]
    final = jnp.where(idx >= 0, final, jnp.nan)
    return em.best_restart(states._replace(final_ll=final))


# ----------------------------------------------------------------------------------------------------------
# the checked front-end
# ----------------------------------------------------------------------------------------------------------
def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.floating, np.integer, jax.Array, np.ndarray))


def _positive_scalar(value, name, dtype):
    if is_tracer(value):
        return jnp.asarray(value, dtype)
    if not _is_number(value) or np.ndim(value) != 0:
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    if not np.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"`{name}` must be a finite positive number, got {value}")
    return jnp.asarray(value, dtype)


@jax.jit(static_argnums=(2,))
def _data_prior_jit(x, w, covariance_type):
    mean = em.weighted_center(x, w)
    xc = x - mean
    denom = jnp.sum(w) - 1.0  # frequency weights: ddof = 1 as np.cov / np.var(ddof=1)
    if covariance_type in ("full", "tied"):
        cov = jnp.matmul((xc * w[:, None]).T, xc, precision=_HIGHEST) / denom
        cov = 0.5 * (cov + cov.T)
    else:
        cov = jnp.matmul(w, jnp.square(xc), precision=_HIGHEST) / denom
        if covariance_type == "spherical":
            cov = jnp.mean(cov)
    return mean, cov


def make_prior(x: ArrayLike, n_components: int, covariance_type: str = "full", *,
               weight_concentration_prior_type: str = "dirichlet_process",
               weight_concentration_prior: float | ArrayLike | None = None,
               mean_precision_prior: float | ArrayLike | None = None, mean_prior: ArrayLike | None = None,
               degrees_of_freedom_prior: float | ArrayLike | None = None,
               covariance_prior: float | ArrayLike | None = None, sample_weight: ArrayLike | None = None) -> Prior:
    r"""The conjugate prior of a fit, with scikit-learn's data-dependent defaults (checked eagerly).

    Defaults: $\gamma_0 = 1/K$, $\beta_0 = 1$, $m_0$ the (weighted) data mean, $\nu_0 = D$, and $W_0^{-1}$ the
    data covariance with `ddof=1` (full, tied), its diagonal (diag) or the mean of its diagonal (spherical);
    sample weights count as repetitions.

    Args:
        x: `(n, D)` data.
        n_components: $K$.
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"`.
        weight_concentration_prior_type: one of [WEIGHT_PRIOR_TYPES][jaxprob.bayesian_mixture.WEIGHT_PRIOR_TYPES].
        weight_concentration_prior: $\gamma_0 > 0$; small values switch unneeded components off.
        mean_precision_prior: $\beta_0 > 0$.
        mean_prior: `(D,)` $m_0$.
        degrees_of_freedom_prior: $\nu_0 > D - 1$.
        covariance_prior: $W_0^{-1}$ shaped for `covariance_type`, positive definite.
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        A [Prior][jaxprob.bayesian_mixture.Prior] in the dtype of `x`.

    Raises:
        ValueError / TypeError: naming the argument.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm
        >>> p = bgm.make_prior(jnp.array([[0.0, 0.0], [2.0, 4.0]]), 4, "diag")
        >>> p.weight_concentration.tolist(), p.mean.tolist(), p.covariance.tolist(), p.degrees_of_freedom.tolist()
        (0.25, [1.0, 2.0], [2.0, 8.0], 2.0)
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    check_choice(weight_concentration_prior_type, "weight_concentration_prior_type", WEIGHT_PRIOR_TYPES)
    x = as_float_array(x, "x", 2)
    check_finite(x, "x")
    n, d = x.shape
    if d < 1:
        raise ValueError("`x` must have at least one feature")
    n_components = check_int(n_components, "n_components", minimum=1)
    dtype = x.dtype
    w = check_sample_weight(sample_weight, n, dtype)
    needs_data = mean_prior is None or covariance_prior is None
    if needs_data and covariance_prior is None and not is_tracer(w) and float(np.sum(np.asarray(w))) <= 1.0:
        raise ValueError("the default `covariance_prior` needs a total sample weight above 1 (two samples or more)")
    data_mean, data_cov = _data_prior_jit(x, w, covariance_type) if needs_data else (None, None)
    gamma0 = (1.0 / n_components if weight_concentration_prior is None else weight_concentration_prior)
    gamma0 = _positive_scalar(gamma0, "weight_concentration_prior", dtype)
    beta0 = _positive_scalar(1.0 if mean_precision_prior is None else mean_precision_prior,
                             "mean_precision_prior", dtype)
    if mean_prior is None:
        m0 = data_mean
    else:
        m0 = as_float_array(mean_prior, "mean_prior", 1, dtype=dtype)
        if m0.shape != (d,):
            raise ValueError(f"`mean_prior` must have shape ({d},), got {tuple(m0.shape)}")
        check_finite(m0, "mean_prior")
    nu0 = float(d) if degrees_of_freedom_prior is None else degrees_of_freedom_prior
    nu0 = _positive_scalar(nu0, "degrees_of_freedom_prior", dtype)
    if not is_tracer(nu0) and float(nu0) <= d - 1:
        raise ValueError(f"`degrees_of_freedom_prior` must be greater than D - 1 = {d - 1}, got {float(nu0)}")
    cov0 = data_cov if covariance_prior is None else _check_covariance_prior(covariance_prior, covariance_type, d,
                                                                             dtype)
    return Prior(gamma0, beta0, m0, nu0, cov0, weight_concentration_prior_type)


def _check_covariance_prior(cov, ct, d, dtype):
    ndim = {"full": 2, "tied": 2, "diag": 1, "spherical": 0}[ct]
    cov = as_float_array(cov, "covariance_prior", ndim, dtype=dtype)
    want = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[ct]
    if tuple(cov.shape) != want:
        raise ValueError(f"`covariance_prior` must have shape {want} for covariance_type={ct!r}, got "
                         f"{tuple(cov.shape)}")
    check_finite(cov, "covariance_prior")
    if is_tracer(cov):
        return cov
    arr = np.asarray(cov, np.float64)
    if ndim == 2:
        if not np.allclose(arr, arr.T, rtol=1e-6, atol=0.0):
            raise ValueError("`covariance_prior` must be symmetric")
        if np.linalg.eigvalsh(arr).min() <= 0:
            raise ValueError("`covariance_prior` must be positive definite")
        cov = 0.5 * (cov + cov.T)
    elif np.any(arr <= 0):
        raise ValueError("`covariance_prior` must be positive")
    return cov


def _check_tol(tol):
    if is_tracer(tol):
        return
    if not _is_number(tol) or np.ndim(tol) != 0:
        raise TypeError(f"`tol` must be a number, got {type(tol).__name__}")
    if not np.isfinite(float(tol)) or float(tol) < 0:
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")


def _check_prior(prior: Prior, ct: str, d: int, dtype) -> Prior:
    """A prior given whole: its type, shapes for `ct` and `d` features, and (when concrete) its values."""
    if not isinstance(prior, Prior):
        raise TypeError(f"`prior` must be a bayesian_mixture.Prior (see make_prior), got {type(prior).__name__}")
    check_choice(prior.weight_prior_type, "prior.weight_prior_type", WEIGHT_PRIOR_TYPES)
    if jnp.shape(prior.mean) != (d,):
        raise ValueError(f"`x` has {d} features but `prior.mean` has shape {jnp.shape(prior.mean)}")
    for name in ("weight_concentration", "mean_precision", "degrees_of_freedom"):
        _positive_scalar(getattr(prior, name), f"prior.{name}", dtype)
    nu0 = prior.degrees_of_freedom
    if not is_tracer(nu0) and float(nu0) <= d - 1:
        raise ValueError(f"`prior.degrees_of_freedom` must be greater than D - 1 = {d - 1}, got {float(nu0)}")
    if not is_tracer(prior.mean):
        check_finite(prior.mean, "prior.mean")
    _check_covariance_prior(prior.covariance, ct, d, dtype)
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), prior)


@jax.jit(static_argnums=(5, 6, 7, 8))
def _fit_jit(key, x, w, prior, family, n_components, init_method, n_init, max_iter, tol):
    prepared = em.prepare(x, family, w)
    stats = em.initial_stats(x, prepared, family, n_components, init_method, n_init, key=key)
    return fit_from(prepared, prior, family, stats, max_iter=max_iter, tol=tol)


@jax.jit(static_argnums=(6,))
def _fit_resp_jit(resp, x, w, prior, family, tol, max_iter):
    prepared = em.prepare(x, family, w)
    stats = jax.vmap(lambda r: em.statistics_from_responsibilities(prepared, r, family))(resp)
    return fit_from(prepared, prior, family, stats, max_iter=max_iter, tol=tol)


def fit(x: ArrayLike, n_components: int, *, key: jax.Array | None = None, covariance_type: str = "full",
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior: float | ArrayLike | None = None,
        mean_precision_prior: float | ArrayLike | None = None, mean_prior: ArrayLike | None = None,
        degrees_of_freedom_prior: float | ArrayLike | None = None, covariance_prior: float | ArrayLike | None = None,
        prior: Prior | None = None, reg_covar: float = 1e-6, n_init: int = 1, init_method: str = "kmeans++",
        init_resp: ArrayLike | None = None, max_iter: int = 100, tol: float = 1e-3,
        sample_weight: ArrayLike | None = None) -> tuple[BayesianGMM, FitInfo]:
    r"""Fit a variational Bayesian Gaussian mixture by coordinate ascent, with `n_init` restarts run as one
    vmapped program.

    Iterations stop when the bound per unit sample weight changes by less than `tol` or after `max_iter`
    iterations (scikit-learn's `tol` is on the total bound: divide it by $\sum_i w_i$ to stop at the same
    iteration). The restart with the highest final bound is kept.

    Args:
        x: `(n, D)` data, float32 or float64.
        n_components: $K$, the truncation (an upper bound on the number of components used), between 1 and `n`.
        key: a JAX PRNG key (required unless `init_resp` is given).
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"`.
        weight_concentration_prior_type: `"dirichlet_process"` (stick-breaking) or `"dirichlet_distribution"`.
        weight_concentration_prior: $\gamma_0$ (default $1/K$); see [make_prior][jaxprob.bayesian_mixture.make_prior]
            for this and the four arguments below.
        mean_precision_prior: $\beta_0$ (default 1).
        mean_prior: `(D,)` $m_0$ (default: the data mean).
        degrees_of_freedom_prior: $\nu_0$ (default $D$).
        covariance_prior: $W_0^{-1}$ (default: the data covariance).
        prior: a ready [Prior][jaxprob.bayesian_mixture.Prior] instead of the six arguments above (its own weight
            prior type is used).
        reg_covar: non-negative ridge added to the data covariances $S_k$ of the M-step.
        n_init: number of restarts.
        init_method: one of [jaxprob.em.INIT_METHODS][] (starting responsibilities, as for EM).
        init_resp: optional `(n, K)` starting responsibilities (rows summing to one); every restart starts from
            them and `key` is not needed.
        max_iter: hard limit on iterations (static: the trace has this length).
        tol: convergence threshold on the change of the bound per unit sample weight.
        sample_weight: optional `(n,)` non-negative weights (integer weights act as repeated samples).

    Returns:
        `(model, info)`: the posterior [BayesianGMM][jaxprob.bayesian_mixture.BayesianGMM] and a
        [FitInfo][jaxprob.em.FitInfo] whose `trace` is the bound per unit weight after each iteration's M-step
        and `log_likelihood` the returned posterior's bound (up to the constant of the module notes);
        `collapsed` marks components holding less than one sample's worth of responsibility (switched off),
        `regularized` posterior scales that did not factorise.

    Raises:
        ValueError / TypeError: naming the argument.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (200, 2)) - 4,
        ...                      jax.random.normal(jax.random.key(2), (200, 2)) + 4])
        >>> model, info = bgm.fit(x, 6, key=jax.random.key(0), weight_concentration_prior=1e-3, tol=1e-6,
        ...                       max_iter=300)
        >>> int((model.weights > 0.01).sum()), bool(info.converged)
        (2, True)
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    check_choice(init_method, "init_method", INIT_METHODS)
    check_reg_covar(reg_covar)
    x = as_float_array(x, "x", 2)
    check_finite(x, "x")
    n, d = x.shape
    if d < 1:
        raise ValueError("`x` must have at least one feature")
    n_components = check_int(n_components, "n_components", minimum=1, maximum=n)
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_tol(tol)
    dtype = x.dtype
    w = check_sample_weight(sample_weight, n, dtype)
    if prior is None:
        prior = make_prior(x, n_components, covariance_type,
                           weight_concentration_prior_type=weight_concentration_prior_type,
                           weight_concentration_prior=weight_concentration_prior,
                           mean_precision_prior=mean_precision_prior, mean_prior=mean_prior,
                           degrees_of_freedom_prior=degrees_of_freedom_prior, covariance_prior=covariance_prior,
                           sample_weight=w)
    else:
        given = (weight_concentration_prior, mean_precision_prior, mean_prior, degrees_of_freedom_prior,
                 covariance_prior)
        if any(v is not None for v in given):
            raise ValueError("give either `prior` or the individual prior arguments, not both")
        prior = _check_prior(prior, covariance_type, d, dtype)
    family = gaussian(covariance_type, reg_covar)
    tol = tol if is_tracer(tol) else np.asarray(tol, dtype)
    if init_resp is None:
        check_key(key)
        return _fit_jit(key, x, w, prior, family, n_components, init_method, n_init, max_iter, tol)
    resp = as_float_array(init_resp, "init_resp", 2, dtype=dtype)
    if resp.shape != (n, n_components):
        raise ValueError(f"`init_resp` must have shape ({n}, {n_components}), got {tuple(resp.shape)}")
    if not is_tracer(resp):
        arr = np.asarray(resp)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0) or not np.allclose(arr.sum(1), 1.0, atol=1e-5):
            raise ValueError("`init_resp` must be finite, non-negative, with rows summing to one")
    resps = jnp.broadcast_to(resp, (n_init,) + resp.shape)
    return _fit_resp_jit(resps, x, w, prior, family, tol, max_iter)


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------
def _check_model_x(x, model):
    if not isinstance(model, BayesianGMM):
        raise TypeError(f"`model` must be a bayesian_mixture.BayesianGMM (see fit), got {type(model).__name__}")
    x = as_float_array(x, "x", 2, dtype=model.means.dtype)
    check_finite(x, "x")
    if x.shape[1] != model.n_features:
        raise ValueError(f"`x` has {x.shape[1]} features but the model has {model.n_features}")
    return x


@jax.jit
def _proba_jit(x, model):
    params = GaussianParams(model.means, model.covariances, model.precisions_cholesky)
    rho = model.family.component_log_prob(x, params) + _component_offsets(model)[None, :]
    return jax.nn.softmax(rho, axis=1)


def predict_proba(x: ArrayLike, model: BayesianGMM) -> jax.Array:
    r"""Variational responsibilities $r_{ik} \propto \exp(\mathbb E[\log \pi_k] + \mathbb E[\log \mathcal N(x_i
    \mid \mu_k, \Lambda_k)])$, as scikit-learn's `predict_proba`.

    Args:
        x: `(n, D)`.
        model: a [BayesianGMM][jaxprob.bayesian_mixture.BayesianGMM].

    Returns:
        `(n, K)`, rows summing to one.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (50, 1)) - 5,
        ...                      jax.random.normal(jax.random.key(2), (50, 1)) + 5])
        >>> model, _ = bgm.fit(x, 2, key=jax.random.key(0))
        >>> p = bgm.predict_proba(x, model)
        >>> p.shape, bool(jnp.allclose(p.sum(axis=1), 1.0))
        ((100, 2), True)
    """
    return _proba_jit(_check_model_x(x, model), model)


def predict(x: ArrayLike, model: BayesianGMM) -> jax.Array:
    """Most responsible component under the variational posterior.

    Args:
        x: `(n, D)`.
        model: a [BayesianGMM][jaxprob.bayesian_mixture.BayesianGMM].

    Returns:
        `(n,)` int32 labels.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (50, 1)) - 5,
        ...                      jax.random.normal(jax.random.key(2), (50, 1)) + 5])
        >>> model, _ = bgm.fit(x, 2, key=jax.random.key(0))
        >>> labels = bgm.predict(x, model)
        >>> int(labels[0]) != int(labels[-1]), bool((labels[:50] == labels[0]).all())
        (True, True)
    """
    return jnp.argmax(predict_proba(x, model), axis=1).astype(jnp.int32)


def to_mixture(model: BayesianGMM) -> Mixture:
    r"""The point-estimate Gaussian mixture of a posterior: weights
    [expected_weights][jaxprob.bayesian_mixture.expected_weights], means $m_k$, covariances
    $\mathbb E[\Lambda_k]^{-1}$ (scikit-learn's `weights_`, `means_`, `covariances_`), for
    [jaxprob.mixture][]'s `score`, `sample`, `bic`...

    Args:
        model: a [BayesianGMM][jaxprob.bayesian_mixture.BayesianGMM].

    Returns:
        A [Mixture][jaxprob.em.Mixture] of the model's Gaussian family.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayesian_mixture as bgm, mixture
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (50, 1)) - 5,
        ...                      jax.random.normal(jax.random.key(2), (50, 1)) + 5])
        >>> model, _ = bgm.fit(x, 2, key=jax.random.key(0))
        >>> gmm = bgm.to_mixture(model)
        >>> mixture.log_prob(x, gmm).shape
        (100,)
    """
    if not isinstance(model, BayesianGMM):
        raise TypeError(f"`model` must be a bayesian_mixture.BayesianGMM (see fit), got {type(model).__name__}")
    params = GaussianParams(model.means, model.covariances, model.precisions_cholesky)
    return Mixture(model.weights, params, model.family)
