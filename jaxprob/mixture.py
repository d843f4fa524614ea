r"""Mixtures of any family fitted by expectation-maximisation: the checked public front-end of [jaxprob.em][].

Model: $p(x) = \sum_{k=1}^K \alpha_k\, p(x \mid \theta_k)$ with components from a family of
[jaxprob.families][]: Gaussian (full, tied, diagonal or spherical covariances; the default), Bernoulli,
categorical, Poisson or Student-t.

EM alternates

* **E-step**: responsibilities $r_{ik} = \alpha_k p(x_i \mid \theta_k) / p(x_i)$, summarised as additive
  sufficient statistics ([jaxprob.em.Stats][]: $N_k = \sum_i w_i r_{ik}$ and the family's sums), the seam for
  weights, chunks and devices;
* **M-step**: $\alpha_k = N_k / \sum_j N_j$ and the family's maximum-likelihood $\theta_k$ from its sums.

The log-likelihood never decreases along EM iterations (up to rounding); [fit][jaxprob.mixture.fit] stops when the
change of the mean log-likelihood is below `tol` or after `max_iter` iterations, inside one `lax.while_loop`, and
runs `n_init` restarts as one vmapped program.

Every function here validates its arguments eagerly and then calls one jitted program. Inside your own jitted
code, use the engine directly: `prep = em.prepare(x, model.family)` once, then `em.step(prep, model)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
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
from jaxprob.densities import COVARIANCE_TYPES
from jaxprob.em import INIT_METHODS, Family, FitInfo, Mixture, Stats
from jaxprob.families.gaussian import check_reg_covar, gaussian, make_params

__all__ = [
    "Mixture",
    "Stats",
    "FitInfo",
    "INIT_METHODS",
    "make_gmm",
    "make_mixture",
    "check_model",
    "family_for",
    "validate_data",
    "init",
    "e_step",
    "m_step",
    "em_step",
    "fit",
    "log_prob",
    "score",
    "predict_proba",
    "predict",
    "sample",
    "sample_component",
    "n_parameters",
    "bic",
    "aic",
    "anomaly_score",
    "anomaly_threshold",
    "detect_anomalies",
]


# ----------------------------------------------------------------------------------------------------------
# construction and validation
# ----------------------------------------------------------------------------------------------------------
def make_mixture(weights: ArrayLike, components: Any, family: Family) -> Mixture:
    """A mixture from weights, component parameters and their family (checked eagerly).

    Args:
        weights: `(K,)` non-negative, summing to one.
        components: the family's component parameters (leading axis `K`).
        family: a [Family][jaxprob.em.Family].

    Returns:
        A [Mixture][jaxprob.em.Mixture].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import families, mixture
        >>> fam = families.bernoulli()
        >>> m = mixture.make_mixture(jnp.array([0.5, 0.5]), fam.make_params(jnp.array([[0.1], [0.9]])), fam)
        >>> m.n_components
        2
    """
    if not isinstance(family, Family):
        raise TypeError(f"`family` must be a jaxprob.em.Family, got {type(family).__name__}")
    family.check_params(components)
    k = family.n_components(components)
    leaves = [a for a in jax.tree.leaves(components) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
    weights = as_float_array(weights, "weights", 1, dtype=leaves[0].dtype if leaves else None)
    if weights.shape != (k,):
        raise ValueError(f"`weights` must have shape ({k},) to match the components, got {tuple(weights.shape)}")
    check_finite(weights, "weights")
    if not is_tracer(weights):
        w = np.asarray(weights)
        if np.any(w < 0) or abs(float(w.sum()) - 1.0) > 1e-4:
            raise ValueError("`weights` must be non-negative and sum to one")
    return Mixture(weights, components, family)


def make_gmm(weights: ArrayLike, means: ArrayLike, covariances: ArrayLike, covariance_type: str = "full", *,
             reg_covar: float = 1e-6) -> Mixture:
    """A Gaussian mixture from weights, means and covariances (the precision factors are computed).

    Args:
        weights: `(K,)` non-negative, summing to one.
        means: `(K, D)`.
        covariances: `(K, D, D)` full, `(D, D)` tied, `(K, D)` diag, `(K,)` spherical; positive definite.
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"`.
        reg_covar: the family's ridge, used when the model is refitted.

    Returns:
        A [Mixture][jaxprob.em.Mixture] of the Gaussian family. Under `jit`, invalid values cannot raise:
        [check_model][jaxprob.mixture.check_model] reports them as data.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.3, 0.7]), jnp.array([[0.0], [5.0]]), jnp.ones(2), "spherical")
        >>> gmm.n_components, gmm.n_features
        (2, 1)
    """
    family = gaussian(covariance_type, reg_covar)
    return make_mixture(weights, make_params(means, covariances, covariance_type), family)


def check_model(model: Mixture) -> jax.Array:
    """Whether a model's values are valid, as data (usable under `jit`, where nothing can raise).

    Checks that the weights are finite, non-negative and sum to one (to 1e-4), and that every leaf of the
    components is finite (a Gaussian covariance that is not positive definite gives NaN precision factors).

    Args:
        model: a [Mixture][jaxprob.em.Mixture].

    Returns:
        Scalar bool array.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> bad = jax.jit(lambda c: mixture.make_gmm(jnp.array([0.3, 0.3]), jnp.zeros((2, 1)), c, "spherical"))
        >>> bool(mixture.check_model(bad(jnp.ones(2)))), bool(mixture.check_model(bad(-jnp.ones(2))))
        (False, False)
    """
    _check_model(model)
    w = model.weights
    ok = jnp.all(jnp.isfinite(w)) & jnp.all(w >= 0) & (jnp.abs(jnp.sum(w) - 1.0) <= 1e-4)
    for leaf in jax.tree.leaves(model.components):
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


def _check_model(model, name="model", n_features=None):
    if not isinstance(model, Mixture):
        raise TypeError(f"`{name}` must be a jaxprob Mixture (see make_gmm / fit), got {type(model).__name__}")
    if n_features is not None and model.n_features != n_features:
        raise ValueError(f"`x` has {n_features} features but `{name}` has {model.n_features}")
    return model


def _check_x(x, family: Family, name="x", model=None):
    x = family.validate(x, name)
    n = jax.tree.leaves(x)[0].shape[0]
    if n < 1:
        raise ValueError(f"`{name}` must hold at least one sample")
    if model is not None:
        _check_features(x, model, name)
        dtype = jnp.result_type(jax.tree.leaves(x)[0].dtype, model.weights.dtype)
        x = jax.tree.map(lambda a: a.astype(dtype), x)
    return x


def _check_features(x, model, name):
    leaf = jax.tree.leaves(x)[0]
    d = model.n_features
    if leaf.ndim == 2 and leaf.shape[1] != d:
        raise ValueError(f"`{name}` has {leaf.shape[1]} features but the model has {d}")


def family_for(family: Family | None = None, covariance_type: str | None = None, reg_covar: float = 1e-6,
               init_params: Mixture | None = None) -> Family:
    """The family a fit uses, from the arguments of the fitting functions (checked eagerly).

    `family` wins; else the family of `init_params`, which must then match `covariance_type` when one is given;
    else the Gaussian family of `covariance_type` (default `"full"`) and `reg_covar`.

    Args:
        family: an explicit [Family][jaxprob.em.Family], or None.
        covariance_type: the Gaussian covariance type asked for.
        reg_covar: the Gaussian ridge asked for.
        init_params: an optional starting [Mixture][jaxprob.em.Mixture].

    Returns:
        The [Family][jaxprob.em.Family].

    Examples:
        >>> from jaxprob import mixture
        >>> mixture.family_for(None, "diag").covariance_type
        'diag'
    """
    if init_params is not None:
        _check_model(init_params, "init_params")
        if family is not None and family != init_params.family:
            raise ValueError("`family` differs from the family of `init_params`; give one of them")
        ct = getattr(init_params.family, "covariance_type", None)
        if family is None and ct is not None and covariance_type is not None and ct != covariance_type:
            raise ValueError(
                f"`init_params` has covariance_type={ct!r} but covariance_type={covariance_type!r} was asked for"
            )
        return init_params.family
    return _family_of(family, covariance_type, reg_covar)


def _family_of(family, covariance_type, reg_covar):
    if family is None:
        covariance_type = "full" if covariance_type is None else covariance_type
        check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_reg_covar(reg_covar)
        return gaussian(covariance_type, reg_covar)
    if not isinstance(family, Family):
        raise TypeError(f"`family` must be a jaxprob.em.Family (see jaxprob.families), got {type(family).__name__}")
    return family


def validate_data(x: Any, model: Mixture, name: str = "x") -> Any:
    """Check data eagerly against a model (its family's rules, the number of features) and cast it to the
    model's float dtype.

    Args:
        x: the data.
        model: a [Mixture][jaxprob.em.Mixture].
        name: the argument's name in error messages.

    Returns:
        The checked data.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 2)), jnp.ones(1), "spherical")
        >>> mixture.validate_data(jnp.zeros((3, 2)), gmm).shape
        (3, 2)
    """
    _check_model(model)
    return _check_x(x, model.family, name, model)


def _check_tol(tol):
    if is_tracer(tol):
        return
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer, jax.Array)):
        raise TypeError(f"`tol` must be a number, got {type(tol).__name__}")
    if not np.isfinite(float(tol)) or float(tol) < 0:
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")


def _weights(sample_weight, x):
    leaf = jax.tree.leaves(x)[0]
    return check_sample_weight(sample_weight, leaf.shape[0], leaf.dtype)


# ----------------------------------------------------------------------------------------------------------
# E / M / EM steps
# ----------------------------------------------------------------------------------------------------------
@jax.jit
def _e_step_jit(x, w, model, center):
    return em.e_step(em.prepare(x, model.family, w, center), model)


def e_step(x: ArrayLike, model: Mixture, *, sample_weight: ArrayLike | None = None, center: Any = None) -> Stats:
    r"""E-step: sufficient statistics of `x` under the responsibilities of `model`.

    Args:
        x: `(n, D)` data.
        model: a [Mixture][jaxprob.em.Mixture].
        sample_weight: optional `(n,)` non-negative weights.
        center: the reference of the family's moments (default the weighted mean of `x`); give the same one to
            every chunk whose statistics you add, and to [m_step][jaxprob.mixture.m_step].

    Returns:
        [Stats][jaxprob.em.Stats] (`stats.log_likelihood / stats.total_weight` is the mean log-likelihood).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> stats = mixture.e_step(jnp.array([[-1.0], [1.0]]), gmm, center=jnp.zeros(1))
        >>> stats.counts.round(3).tolist()
        [1.0, 1.0]
    """
    _check_model(model)
    x = _check_x(x, model.family, model=model)
    w = _weights(sample_weight, x)
    if center is None:
        center = em.weighted_center(x, w)
    return _e_step_jit(x, w, model, center)


@jax.jit
def _m_step_jit(stats, family, center):
    return em.m_step(family, stats, center)[0]


def m_step(stats: Stats, family: Family, center: Any) -> Mixture:
    r"""M-step: maximum-likelihood weights and components from (summed) sufficient statistics.

    Args:
        stats: [Stats][jaxprob.em.Stats] from [e_step][jaxprob.mixture.e_step], possibly summed over chunks.
        family: the model's family (`model.family`).
        center: the `center` the statistics were taken about.

    Returns:
        A [Mixture][jaxprob.em.Mixture].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import families, mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.array([[0.0]]), jnp.ones(1), "spherical", reg_covar=0.0)
        >>> c = jnp.zeros(1)
        >>> new = mixture.m_step(mixture.e_step(jnp.array([[1.0], [3.0]]), gmm, center=c), gmm.family, c)
        >>> new.means.round(4).tolist(), new.covariances.round(4).tolist()
        ([[2.0]], [1.0])
    """
    if not isinstance(stats, Stats):
        raise TypeError(f"`stats` must be a jaxprob.em.Stats, got {type(stats).__name__}")
    family = _family_of(family, None, None)
    return _m_step_jit(stats, family, center)


@jax.jit
def _em_step_jit(x, w, model):
    return em.step(em.prepare(x, model.family, w), model)


def em_step(x: ArrayLike, model: Mixture, *, sample_weight: ArrayLike | None = None) -> tuple[Mixture, jax.Array]:
    """One EM iteration (validated; prepares the data on every call).

    In a loop of your own, prepare once and step many times: `prep = em.prepare(x, model.family)` then
    `em.step(prep, model)` inside your `jit`, which costs what an iteration inside [fit][jaxprob.mixture.fit]
    costs.

    Args:
        x: `(n, D)` data.
        model: current [Mixture][jaxprob.em.Mixture].
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        `(new_model, mean_log_likelihood)`, the latter under the *input* model.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> x = jnp.array([[-2.0], [-1.5], [1.5], [2.0]])
        >>> new, ll = mixture.em_step(x, gmm)
        >>> bool(mixture.score(x, new) >= ll)
        True
    """
    _check_model(model)
    x = _check_x(x, model.family, model=model)
    w = _weights(sample_weight, x)
    return _em_step_jit(x, w, model)


# ----------------------------------------------------------------------------------------------------------
# initialisation and fit
# ----------------------------------------------------------------------------------------------------------
@jax.jit(static_argnums=(3, 4))
def _init_jit(key, x, w, n_components, init_method, family):
    prepared = em.prepare(x, family, w)
    # the key itself is the draw of a random start, so that init(key=split(k, n)[i]) is restart i of fit
    draws = None if init_method == "kmeans++" else key[None]
    stats = em.initial_stats(x, prepared, family, n_components, init_method, 1, draws=draws, key=key)
    return em.m_step(family, jax.tree.map(lambda a: a[0], stats), prepared.center)[0]


def _fit_args(x, n_components, family, covariance_type, reg_covar, init_method, sample_weight):
    family = _family_of(family, covariance_type, reg_covar)
    check_choice(init_method, "init_method", INIT_METHODS)
    x = _check_x(x, family)
    n = jax.tree.leaves(x)[0].shape[0]
    n_components = check_int(n_components, "n_components", minimum=1, maximum=n)
    w = _weights(sample_weight, x)
    return family, x, n_components, w


def init(x: ArrayLike, n_components: int, *, key: jax.Array, family: Family | None = None,
         covariance_type: str = "full", init_method: str = "kmeans++", reg_covar: float = 1e-6,
         sample_weight: ArrayLike | None = None) -> Mixture:
    """Starting model from data: the start of the first restart of [fit][jaxprob.mixture.fit] with `key`.

    `"kmeans++"` seeds `K` centres by greedy k-means++ and `"random_from_data"` picks `K` distinct samples;
    both assign every sample to its nearest centre and run one M-step. `"kmeans"` refines the k-means++ seeds
    by at most 10 weighted Lloyd steps first. `"random"` draws random responsibilities.

    Args:
        x: `(n, D)` data.
        n_components: `K`, between 1 and `n`.
        key: a JAX PRNG key.
        family: a [Family][jaxprob.em.Family] (default: Gaussian with `covariance_type` and `reg_covar`).
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"` (Gaussian family).
        init_method: one of [INIT_METHODS][jaxprob.em.INIT_METHODS].
        reg_covar: non-negative value added to the covariance diagonals (Gaussian family).
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        A [Mixture][jaxprob.em.Mixture].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> x = jnp.array([[0.0, 0.0], [0.2, 0.1], [5.0, 5.0], [5.1, 4.8]])
        >>> gmm = mixture.init(x, 2, key=jax.random.key(0), covariance_type="diag")
        >>> gmm.means.shape, gmm.covariances.shape
        ((2, 2), (2, 2))
    """
    check_key(key)
    family, x, n_components, w = _fit_args(x, n_components, family, covariance_type, reg_covar, init_method,
                                           sample_weight)
    return _init_jit(key, x, w, n_components, init_method, family)


def _final(x, w, model, info):
    """The returned model's mean log-likelihood by the direct evaluation path (that of `score`), so that
    `info.log_likelihood` and `score` agree to the last bit (the loop scores through prepared features)."""
    lp = jax.nn.logsumexp(_weighted_log_probs(x, model), axis=1)
    ll = jnp.sum(jnp.where(w > 0, w * lp, 0.0)) / jnp.sum(w)
    ll = jnp.where(jnp.isfinite(info.log_likelihood), ll, info.log_likelihood)
    restarts = info.restart_log_likelihoods.at[info.best_restart].set(ll)
    return model, info._replace(log_likelihood=ll, restart_log_likelihoods=restarts)


@jax.jit(static_argnums=(4, 5, 6, 7, 9))
def _fit_jit(key, x, w, family, n_components, init_method, n_init, max_iter, tol, callback):
    model, info = em.fit(x, family, n_components, sample_weight=w, init_method=init_method, n_init=n_init,
                         max_iter=max_iter, tol=tol, callback=callback, key=key)
    return _final(x, w, model, info)


@jax.jit(static_argnums=(3, 5))
def _fit_from_jit(models, x, w, max_iter, tol, callback):
    family = jax.tree.map(lambda a: a[0], models.family)
    prepared = em.prepare(x, family, w)
    model, info = em.fit_from(prepared, family, models=models, max_iter=max_iter, tol=tol, callback=callback)
    return _final(x, w, model, info)


def fit(x: ArrayLike, n_components: int, *, key: jax.Array | None = None, family: Family | None = None,
        covariance_type: str | None = None, n_init: int = 1, init_method: str = "kmeans++",
        init_params: Mixture | None = None, max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
        sample_weight: ArrayLike | None = None, callback: Callable | None = None) -> tuple[Mixture, FitInfo]:
    r"""Fit a mixture by EM (`lax.while_loop`), with `n_init` restarts run as one vmapped program.

    Iterations stop when $|\bar\ell_t - \bar\ell_{t-1}| < \text{tol}$ (mean log-likelihood per unit weight) or
    after `max_iter` iterations. The restart with the highest final log-likelihood is kept. A non-finite
    log-likelihood stops the iterations on the last model whose likelihood was finite and sets
    `info.nonfinite` (never `converged`).

    Args:
        x: `(n, D)` data, float32 or float64 (the computation runs in this dtype; float16 and bfloat16 are
            computed in float32).
        n_components: `K`, between 1 and `n`.
        key: a JAX PRNG key (required unless `init_params` is given).
        family: a [Family][jaxprob.em.Family] of [jaxprob.families][] (default: Gaussian with `covariance_type`
            and `reg_covar`).
        covariance_type: `"full"` (the default), `"tied"`, `"diag"` or `"spherical"` (Gaussian family; with
            `init_params`, its type unless given).
        n_init: number of restarts.
        init_method: one of [INIT_METHODS][jaxprob.em.INIT_METHODS] (ignored when `init_params` is given).
        init_params: optional starting [Mixture][jaxprob.em.Mixture] (every restart starts from it; its family
            is used).
        max_iter: hard limit on EM iterations (static: the trace has this length).
        tol: convergence threshold on the change of the mean log-likelihood.
        reg_covar: non-negative value added to the covariance diagonals (Gaussian family).
        sample_weight: optional `(n,)` non-negative weights; integer weights give the same fit as repeating the
            samples.
        callback: optional `callback(n_iter, mean_log_likelihood)`, called on the host after every iteration
            from inside the compiled loop (`jax.debug.callback`); None (the default) costs nothing.

    Returns:
        `(model, info)`: the fitted [Mixture][jaxprob.em.Mixture] and a [FitInfo][jaxprob.em.FitInfo].

    Raises:
        ValueError / TypeError: naming the argument, for NaN/inf, wrong shapes, non-float `x`, `n_components`
            outside `[1, n]`, negative weights, an unknown `covariance_type`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (200, 2)) - 4,
        ...                      jax.random.normal(jax.random.key(2), (200, 2)) + 4])
        >>> gmm, info = mixture.fit(x, 2, key=jax.random.key(0))
        >>> bool(info.converged), sorted(gmm.means[:, 0].round(0).tolist())
        (True, [-4.0, 4.0])
    """
    if init_params is not None:
        family = family_for(family, covariance_type, reg_covar, init_params)
    family, x, n_components, w = _fit_args(x, n_components, family, covariance_type, reg_covar, init_method,
                                           sample_weight)
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_tol(tol)
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable, got {type(callback).__name__}")
    dtype = jax.tree.leaves(x)[0].dtype
    # host-side scalars: no tiny eager programs to compile on the first call
    tol = tol if is_tracer(tol) else np.asarray(tol, dtype)
    if init_params is None:
        check_key(key)
        return _fit_jit(key, x, w, family, n_components, init_method, n_init, max_iter, tol, callback)
    _check_features(x, init_params, "x")
    if init_params.n_components != n_components:
        raise ValueError(f"`init_params` has {init_params.n_components} components, not {n_components}")
    start = jax.tree.map(lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                         else a, init_params)
    models = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_init,) + jnp.shape(a)), start)
    return _fit_from_jit(models, x, w, max_iter, tol, callback)


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------
def _weighted_log_probs(x, model):
    return em.weight_log_probs(model.family.component_log_prob(x, model.components), model.weights)


_weighted_log_probs_jit = jax.jit(_weighted_log_probs)


def _eval_x(x, model):
    _check_model(model)
    return _check_x(x, model.family, model=model)


def log_prob(x: ArrayLike, model: Mixture) -> jax.Array:
    r"""Per-sample log-density $\log p(x_i) = \log\sum_k \alpha_k p(x_i \mid \theta_k)$.

    Args:
        x: `(n, D)`.
        model: a [Mixture][jaxprob.em.Mixture].

    Returns:
        `(n,)` log-densities.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> [round(float(v), 4) for v in mixture.log_prob(jnp.zeros((1, 1)), gmm)]
        [-0.9189]
    """
    x = _eval_x(x, model)
    return jax.nn.logsumexp(_weighted_log_probs_jit(x, model), axis=1)


def score(x: ArrayLike, model: Mixture, *, sample_weight: ArrayLike | None = None) -> jax.Array:
    """Mean (weighted) log-likelihood of `x`, as scikit-learn's `score`.

    Args:
        x: `(n, D)`.
        model: a [Mixture][jaxprob.em.Mixture].
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        Scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> round(float(mixture.score(jnp.zeros((3, 1)), gmm)), 4)
        -0.9189
    """
    lp = log_prob(x, model)
    w = check_sample_weight(sample_weight, lp.shape[0], lp.dtype)
    return jnp.sum(jnp.where(w > 0, w * lp, 0.0)) / jnp.sum(w)


def predict_proba(x: ArrayLike, model: Mixture) -> jax.Array:
    r"""Responsibilities $r_{ik} = p(k \mid x_i)$.

    Args:
        x: `(n, D)`.
        model: a [Mixture][jaxprob.em.Mixture].

    Returns:
        `(n, K)`, rows summing to one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> mixture.predict_proba(jnp.zeros((1, 1)), gmm).round(3).tolist()
        [[0.5, 0.5]]
    """
    x = _eval_x(x, model)
    return jax.nn.softmax(_weighted_log_probs_jit(x, model), axis=1)


def predict(x: ArrayLike, model: Mixture) -> jax.Array:
    r"""Most responsible component $\arg\max_k r_{ik}$.

    Args:
        x: `(n, D)`.
        model: a [Mixture][jaxprob.em.Mixture].

    Returns:
        `(n,)` int32 labels.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> mixture.predict(jnp.array([[-3.0], [2.0]]), gmm).tolist()
        [0, 1]
    """
    x = _eval_x(x, model)
    return jnp.argmax(_weighted_log_probs_jit(x, model), axis=1).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------------------
@jax.jit(static_argnums=(2,))
def _sample_jit(key, model, n):
    k_lab, k_x = jax.random.split(key)
    labels = jax.random.categorical(k_lab, jnp.log(model.weights), shape=(n,)).astype(jnp.int32)
    return model.family.sample(k_x, model.components, labels), labels


@jax.jit(static_argnums=(3,))
def _sample_component_jit(key, model, component, n):
    return model.family.sample(key, model.components, jnp.full((n,), component, jnp.int32))


def sample(model: Mixture, n_samples: int, *, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Draw samples: a component $k \sim \mathrm{Cat}(\alpha)$, then $x \sim p(x \mid \theta_k)$.

    Args:
        model: a [Mixture][jaxprob.em.Mixture].
        n_samples: number of samples (static).
        key: a JAX PRNG key.

    Returns:
        `(x, labels)`: `(n_samples, D)` samples and the `(n_samples,)` components they came from.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-5.0], [5.0]]), jnp.ones(2), "spherical")
        >>> x, labels = mixture.sample(gmm, 1000, key=jax.random.key(0))
        >>> x.shape, bool(jnp.all((x[:, 0] > 0) == (labels == 1)))
        ((1000, 1), True)
    """
    check_key(key)
    _check_model(model)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    return _sample_jit(key, model, n_samples)


def sample_component(model: Mixture, component: int, n_samples: int, *, key: jax.Array) -> jax.Array:
    r"""Draw samples from one component $p(x \mid \theta_k)$.

    Args:
        model: a [Mixture][jaxprob.em.Mixture].
        component: index `k` in `[0, K)`.
        n_samples: number of samples (static).
        key: a JAX PRNG key.

    Returns:
        `(n_samples, D)` samples.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-5.0], [5.0]]), jnp.ones(2), "spherical")
        >>> x = mixture.sample_component(gmm, 1, 2000, key=jax.random.key(0))
        >>> round(float(x.mean()), 1)
        5.0
    """
    check_key(key)
    _check_model(model)
    component = check_int(component, "component", minimum=0, maximum=model.n_components - 1)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    return _sample_component_jit(key, model, component, n_samples)


# ----------------------------------------------------------------------------------------------------------
# model selection
# ----------------------------------------------------------------------------------------------------------
def n_parameters(model: Mixture) -> int:
    r"""Number of free parameters: $K-1$ weights and the family's component parameters (for a Gaussian:
    $KD$ means and $KD(D+1)/2$ full, $D(D+1)/2$ tied, $KD$ diag or $K$ spherical covariance parameters).

    Args:
        model: a [Mixture][jaxprob.em.Mixture].

    Returns:
        A Python int.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.zeros((2, 3)), jnp.ones(2), "spherical")
        >>> mixture.n_parameters(gmm)  # 1 weight + 6 means + 2 variances
        9
    """
    _check_model(model)
    return model.n_components - 1 + model.family.n_parameters(model.components)


def _total_ll_and_n(x, model, sample_weight):
    lp = log_prob(x, model)
    w = check_sample_weight(sample_weight, lp.shape[0], lp.dtype)
    return jnp.sum(jnp.where(w > 0, w * lp, 0.0)), jnp.sum(w)


def bic(x: ArrayLike, model: Mixture, *, sample_weight: ArrayLike | None = None) -> jax.Array:
    r"""Bayesian information criterion $-2 \log L + p \log n$ (lower is better).

    With weights, $\log L = \sum_i w_i \log p(x_i)$ and $n = \sum_i w_i$.

    Args:
        x: `(n, D)`.
        model: a [Mixture][jaxprob.em.Mixture].
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        Scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> round(float(mixture.bic(jnp.zeros((4, 1)), gmm)), 4)  # 2 * 4 * 0.9189 + 2 log 4
        10.1241
    """
    total, n = _total_ll_and_n(x, model, sample_weight)
    return -2.0 * total + n_parameters(model) * jnp.log(n)


def aic(x: ArrayLike, model: Mixture, *, sample_weight: ArrayLike | None = None) -> jax.Array:
    r"""Akaike information criterion $-2\log L + 2p$ (lower is better).

    Args:
        x: `(n, D)`.
        model: a [Mixture][jaxprob.em.Mixture].
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        Scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> round(float(mixture.aic(jnp.zeros((4, 1)), gmm)), 4)
        11.3515
    """
    total, _ = _total_ll_and_n(x, model, sample_weight)
    return -2.0 * total + 2.0 * n_parameters(model)


# ----------------------------------------------------------------------------------------------------------
# anomaly detection
# ----------------------------------------------------------------------------------------------------------
def anomaly_score(x: ArrayLike, model: Mixture) -> jax.Array:
    r"""Anomaly score $s(x) = -\log p(x)$ (higher is more anomalous).

    Args:
        x: `(n, D)`.
        model: a [Mixture][jaxprob.em.Mixture].

    Returns:
        `(n,)` scores.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> s = mixture.anomaly_score(jnp.array([[0.0], [5.0]]), gmm)
        >>> bool(s[1] > s[0])
        True
    """
    return -log_prob(x, model)


def anomaly_threshold(scores: ArrayLike, *, contamination: float | None = None,
                      epsilon: float | None = None) -> jax.Array:
    r"""Threshold on anomaly scores, from a density level or from an expected contamination.

    Exactly one of:

    * `epsilon`: a sample is anomalous when $p(x) < \varepsilon$, i.e. $s(x) > -\log\varepsilon$;
    * `contamination`: the fraction of the given `scores` to flag; the threshold is their
      $(1-\text{contamination})$ quantile (linear interpolation).

    Args:
        scores: `(n,)` anomaly scores (e.g. of the training data) — only used with `contamination`.
        contamination: in `(0, 1)`.
        epsilon: density level, `> 0`.

    Returns:
        Scalar threshold; anomalies are `scores > threshold`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> float(mixture.anomaly_threshold(jnp.arange(101.0), contamination=0.1))
        90.0
    """
    if (contamination is None) == (epsilon is None):
        raise ValueError("give exactly one of `contamination` and `epsilon`")
    if epsilon is not None:
        if not float(epsilon) > 0:
            raise ValueError(f"`epsilon` must be > 0, got {epsilon}")
        return -jnp.log(jnp.asarray(epsilon, dtype=float))
    if not 0.0 < float(contamination) < 1.0:
        raise ValueError(f"`contamination` must be in (0, 1), got {contamination}")
    scores = as_float_array(scores, "scores", 1)
    check_finite(scores, "scores")
    return jnp.quantile(scores, 1.0 - contamination)


def detect_anomalies(x: ArrayLike, model: Mixture, threshold: ArrayLike) -> jax.Array:
    r"""Boolean anomaly mask $-\log p(x_i) > \text{threshold}$.

    Args:
        x: `(n, D)`.
        model: a [Mixture][jaxprob.em.Mixture].
        threshold: scalar from [anomaly_threshold][jaxprob.mixture.anomaly_threshold].

    Returns:
        `(n,)` booleans.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> t = mixture.anomaly_threshold(None, epsilon=1e-3)
        >>> mixture.detect_anomalies(jnp.array([[0.0], [5.0]]), gmm, t).tolist()
        [False, True]
    """
    return anomaly_score(x, model) > threshold
