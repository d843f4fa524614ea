r"""The EM engine: one family protocol, one E-step, one M-step, one loop, one restart driver.

Every latent-variable model of jaxprob is fitted by the same pieces:

* a **family** ([Family][jaxprob.em.Family]) describes one component distribution $p(x \mid \theta_k)$ by a
  handful of pure functions on pytrees: the component log-likelihoods, the additive sufficient statistics of
  responsibility-weighted data, the M-step from those statistics, the parameter count, a check of its parameters
  and a sampler. Its hyper-parameters (a regulariser, a prior count) are fields of the family, so a family is a
  small pytree that travels through `jit` with the model;
* the **statistics** ([Stats][jaxprob.em.Stats]) are a pytree of sums over samples. Statistics of disjoint
  chunks, devices or sequences add up with `jax.tree.map(jnp.add, ...)`, and an online average is a
  `jax.tree.map` too, so the drivers of [jaxprob.scale][] need no per-family code;
* a **prepared data set** ([Prepared][jaxprob.em.Prepared]) holds what a family computes once from $x$ (the
  Gaussian feature matrix $\Phi = [\operatorname{vech}(x x^\top), x, 1]$, say), so that a step in the user's own
  jitted loop costs what an iteration inside [fit][jaxprob.em.fit] costs;
* one **loop** ([run][jaxprob.em.run], a `lax.while_loop` with a tolerance, a hard `max_iter`, a stop on a
  non-finite log-likelihood, a trace and flags) drives any model given its E-step and M-step: mixtures here,
  hidden Markov models in [jaxprob.hmm][];
* one **restart rule** ([best_restart][jaxprob.em.best_restart]): the restart with the highest final
  log-likelihood is kept, NaN never wins, and every restart's score is reported.

For a mixture $p(x) = \sum_k \alpha_k p(x \mid \theta_k)$ the E-step computes responsibilities
$r_{ik} = \alpha_k p(x_i \mid \theta_k) / p(x_i)$ in log space and reduces them to statistics; the M-step sets
$\alpha_k = N_k / \sum_j N_j$ with $N_k = \sum_i w_i r_{ik}$ and asks the family for $\theta_k$.

Adding a family is one file: a subclass of [Family][jaxprob.em.Family] (see `docs/architecture.md`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from jaxprob import kmeans, numerics

__all__ = [
    "Family",
    "Mixture",
    "Stats",
    "Prepared",
    "FitInfo",
    "LoopState",
    "INIT_METHODS",
    "weighted_center",
    "prepare",
    "e_step",
    "m_step",
    "step",
    "run",
    "best_restart",
    "info_of_one_run",
    "restart_draws",
    "initial_responsibilities",
    "initial_stats",
    "initial_models",
    "statistics_from_responsibilities",
    "fit",
    "fit_from",
    "component_log_probs",
    "weight_log_probs",
    "fold_log_weights",
    "keep_rows",
    "take_components",
    "mixture_steps",
]

INIT_METHODS = ("kmeans++", "random_from_data", "random", "kmeans")
"""Ways to start EM from data: k-means++ seeds, distinct random samples, random responsibilities, or k-means++
seeds refined by a few Lloyd steps. Every method but `"random"` assigns each sample to its nearest seed."""


# ----------------------------------------------------------------------------------------------------------
# the family protocol
# ----------------------------------------------------------------------------------------------------------
class Family(eqx.Module):
    r"""A family of component distributions $p(x \mid \theta)$, as pure functions on pytrees.

    Subclasses are `equinox.Module`s whose fields are the hyper-parameters (static fields such as a covariance
    type, numeric leaves such as a regulariser). Component parameters are a pytree whose leaves have a leading
    axis of length $K$ (a family may also hold shared leaves, as the tied Gaussian covariance).

    The methods below are called inside jitted code (no validation), except `validate` and `check_params`,
    which the public entry points call eagerly.
    """

    @abc.abstractmethod
    def prepare(self, x, w, center):
        """Per-sample data computed once per fit. `x`: `(n, ...)` data, `w`: `(n,)` weights, `center`: the
        weighted mean of `x` ([weighted_center][jaxprob.em.weighted_center]). Returns a pytree whose every leaf
        has leading axis `n`."""

    @abc.abstractmethod
    def log_prob(self, data, params, center) -> jax.Array:
        r"""`(n, K)` component log-likelihoods $\log p(x_i \mid \theta_k)$ from prepared data (`center` as
        given to `prepare`)."""

    @abc.abstractmethod
    def statistics(self, data, resp, params, center):
        """Additive sufficient statistics (a pytree) of the prepared data weighted by `resp`: `(n, K)` sample
        weight times responsibility (or posterior marginal). `params` are the parameters of the E-step (only
        families with latent variables of their own, as the Student-t scales, use them; None at
        initialisation)."""

    def weighted_log_prob(self, data, params, center, weights) -> jax.Array:
        r"""`(n, K)` $\log\alpha_k + \log p(x_i \mid \theta_k)$ for the E-step, `weights` the `(K,)` mixing
        weights. A component of weight 0 must get a value whose exponential, taken relative to any other
        component's, vanishes; it must be finite or $-\infty$ whatever its parameters hold. The default is
        [weight_log_probs][jaxprob.em.weight_log_probs] of [log_prob][jaxprob.em.Family.log_prob] (exactly
        $-\infty$), one more pass over the `(n, K)` result; a family whose log-likelihood is one product with
        a column of ones can fold the log-weights into its parameters instead
        ([fold_log_weights][jaxprob.em.fold_log_weights])."""
        return weight_log_probs(self.log_prob(data, params, center), weights)

    def statistics_and_counts(self, data, resp, params, center):
        """`(statistics, counts)`: [statistics][jaxprob.em.Family.statistics] and the `(K,)` column sums of
        `resp`. The default sums `resp` on its own; a family whose statistics already hold those sums (a column of
        ones in its prepared data) returns them instead, which saves a pass over the `(n, K)` responsibilities."""
        return self.statistics(data, resp, params, center), jnp.sum(resp, axis=0)

    @abc.abstractmethod
    def m_step(self, stats, counts, center, previous, keep):
        """New component parameters from summed statistics.

        Args:
            stats: the family's statistics, summed.
            counts: `(K,)` summed responsibilities $N_k$.
            center: the `center` given to `prepare`.
            previous: the parameters of the previous iteration, or None at initialisation.
            keep: `(K,)` bool, components that keep their `previous` parameters (collapsed components).

        Returns:
            `(params, regularized)`: the parameters and a `(K,)` bool flag of components whose estimate had to
            be regularised beyond the family's usual rule this iteration.
        """

    @abc.abstractmethod
    def n_parameters(self, params) -> int:
        """Number of free parameters of the components (mixing weights excluded)."""

    @abc.abstractmethod
    def sample(self, key, params, labels) -> jax.Array:
        r"""Draws $x_j \sim p(x \mid \theta_{z_j})$ for `labels` $z$ of shape `(m,)`."""

    @abc.abstractmethod
    def check_params(self, params, n_features: int | None = None) -> None:
        """Raise a `TypeError` / `ValueError` naming the problem if `params` are not valid parameters."""

    def validate(self, x, name: str = "x"):
        """Eager check and conversion of a data set for this family (default: a finite float `(n, D)` array)."""
        from jaxprob._validation import as_float_array, check_finite

        x = as_float_array(x, name, 2)
        if x.shape[1] < 1:
            raise ValueError(f"`{name}` must have at least one feature (D >= 1), got shape {tuple(x.shape)}")
        check_finite(x, name)
        return x

    def component_log_prob(self, x, params) -> jax.Array:
        """`(n, K)` component log-likelihoods of raw data (the evaluation path of `predict` and `score`).

        The default prepares `x` about its own mean; families with a direct formula override it."""
        w = jnp.ones((jax.tree.leaves(x)[0].shape[0],), jax.tree.leaves(x)[0].dtype)
        center = weighted_center(x, w)
        return self.log_prob(self.prepare(x, w, center), params, center)

    def seeding_matrix(self, x):
        """`(n, D)` float matrix on which k-means style initialisations run (default: the data itself)."""
        return x

    def model_center(self, weights, params):
        """A reference like the weighted data mean, from a model alone (online EM has no data set to average):
        `(D,)` zeros by default; families whose statistics are centred override it."""
        leaf = jax.tree.leaves(params)[0]
        return jnp.zeros((self.n_features(params),), leaf.dtype)

    def implied_statistics(self, params, weights, center):
        """Statistics per unit total weight whose M-step gives back `params` (starts online EM). Families that
        cannot provide them raise `NotImplementedError`."""
        raise NotImplementedError(f"{type(self).__name__} gives no implied statistics")

    def n_features(self, params) -> int:
        """$D$, the length of the last axis of the first component parameter."""
        return jax.tree.leaves(params)[0].shape[-1]

    def component_mask(self, params):
        """A pytree of Python bools like `params`: True for the leaves with a leading `(K,)` component axis
        (default: every leaf whose first axis has length $K$; families with shared leaves override it)."""
        k = self.n_components(params)
        return jax.tree.map(lambda a: a.ndim > 0 and a.shape[0] == k, params)

    def n_components(self, params) -> int:
        """$K$, the length of the leading axis of the component parameters."""
        return jax.tree.leaves(params)[0].shape[0]


def take_components(family: Family, params: Any, index: int | slice | ArrayLike) -> Any:
    """Component parameters indexed along their component axis (shared leaves are kept whole).

    Args:
        family: the [Family][jaxprob.em.Family].
        params: its component parameters.
        index: an index or slice of the components.

    Returns:
        The indexed parameters.
    """
    mask = family.component_mask(params)
    return jax.tree.map(lambda a, m: a[index] if m else a, params, mask)


def keep_rows(keep: ArrayLike, new: Any, previous: Any) -> Any:
    """Per component, `previous` where `keep` else `new`, for every leaf with a leading `(K,)` axis.

    Args:
        keep: `(K,)` bool.
        new: a pytree of component parameters.
        previous: the same structure.

    Returns:
        The selected pytree.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import em
        >>> em.keep_rows(jnp.array([True, False]), jnp.zeros((2, 3)), jnp.ones((2, 3)))[:, 0].tolist()
        [1.0, 0.0]
    """
    k = keep.shape[0]

    def sel(a, b):
        if a.ndim == 0 or a.shape[0] != k:
            return a
        return jnp.where(keep.reshape((k,) + (1,) * (a.ndim - 1)), b, a)

    return jax.tree.map(sel, new, previous)


# ----------------------------------------------------------------------------------------------------------
# models, statistics, prepared data
# ----------------------------------------------------------------------------------------------------------
class Mixture(eqx.Module):
    r"""A finite mixture $p(x) = \sum_k \alpha_k p(x \mid \theta_k)$ of one family (a pytree).

    Attributes:
        weights: `(K,)` mixing weights $\alpha_k$, summing to one.
        components: the family's component parameters (leaves with leading axis `K`).
        family: the [Family][jaxprob.em.Family] (its hyper-parameters travel with the model).

    Attributes of the components (`means`, `covariances`, ... for a Gaussian family) can be read on the
    mixture directly: `model.means` is `model.components.means`.
    """

    weights: jax.Array
    components: Any
    family: Family

    @property
    def n_components(self) -> int:
        return self.weights.shape[-1]

    @property
    def n_features(self) -> int:
        return self.family.n_features(self.components)

    def __getattr__(self, name):
        # read-through to the components (model.means, model.covariance_type, ...)
        if name.startswith("__") or name in ("weights", "components", "family"):
            raise AttributeError(name)
        comps = self.__dict__.get("components")
        fam = self.__dict__.get("family")
        if comps is not None and hasattr(comps, name):
            return getattr(comps, name)
        if fam is not None and hasattr(fam, name) and not callable(getattr(fam, name)):
            return getattr(fam, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class Stats(NamedTuple):
    r"""Sufficient statistics of a data set under a model: additive in every leaf.

    Attributes:
        counts: `(K,)` $N_k = \sum_i w_i r_{ik}$.
        family: the family's statistics (a pytree).
        log_likelihood: scalar $\sum_i w_i \log p(x_i)$ under the model of the E-step.
        total_weight: scalar $\sum_i w_i$.
        n_samples: scalar number of samples of positive weight.
    """

    counts: jax.Array
    family: Any
    log_likelihood: jax.Array
    total_weight: jax.Array
    n_samples: jax.Array


class Prepared(eqx.Module):
    """A data set prepared for EM with one family: what the family computes once from $x$.

    Attributes:
        data: the family's per-sample pytree (leading axis `n`).
        weights: `(n,)` sample weights.
        center: the weighted mean of $x$ (the reference of the Gaussian moments).
    """

    data: Any
    weights: jax.Array
    center: Any


class FitInfo(NamedTuple):
    """Diagnostics of an EM fit (a pytree of arrays).

    Attributes:
        converged: bool, the change of the mean log-likelihood fell below `tol`.
        n_iter: number of EM iterations run (M-steps after the initial one, as scikit-learn's `n_iter_`).
        log_likelihood: mean (weighted) log-likelihood of the *returned* model.
        trace: `(max_iter,)` mean log-likelihood at the E-step of each iteration (the value before that
            iteration's M-step, as scikit-learn's `lower_bound_`); NaN after `n_iter`.
        collapsed: `(K,)` components holding less than one sample's worth of responsibility at the last M-step
            (they kept their previous parameters).
        regularized: `(K,)` components whose estimate had to be regularised at some iteration (for a Gaussian:
            a covariance that was not positive definite got a larger `reg_covar`).
        nonfinite: bool, a non-finite log-likelihood stopped the iterations (the returned model is the last
            one with a finite likelihood when there is one; `converged` is then False).
        restart_log_likelihoods: `(n_init,)` final mean log-likelihood of every restart.
        best_restart: index of the restart that was kept.
    """

    converged: jax.Array
    n_iter: jax.Array
    log_likelihood: jax.Array
    trace: jax.Array
    collapsed: jax.Array
    regularized: jax.Array
    nonfinite: jax.Array
    restart_log_likelihoods: jax.Array
    best_restart: jax.Array


def weighted_center(x: Any, w: ArrayLike) -> Any:
    """Weighted mean of every leaf of `x` along its first axis.

    Args:
        x: a pytree of `(n, ...)` arrays.
        w: `(n,)` weights.

    Returns:
        The pytree of `(...)` means.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import em
        >>> em.weighted_center(jnp.array([[0.0], [4.0]]), jnp.array([3.0, 1.0])).tolist()
        [1.0]
    """
    total = jnp.sum(w)

    def one(a):
        a = jnp.asarray(a)
        flat = a.reshape(a.shape[0], -1).astype(w.dtype)
        return numerics.matmul(w, flat).reshape(a.shape[1:]) / total

    return jax.tree.map(one, x)


def prepare(x: Any, family: Family, w: ArrayLike | None = None, center: Any = None) -> Prepared:
    """Prepare a data set for EM with `family` (traceable; no validation).

    Args:
        x: `(n, ...)` data.
        family: a [Family][jaxprob.em.Family].
        w: optional `(n,)` sample weights (default ones).
        center: optional reference (default the weighted mean of `x`); give the same one to every chunk whose
            statistics you add.

    Returns:
        A [Prepared][jaxprob.em.Prepared] data set.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import em, families
        >>> prep = em.prepare(jnp.array([[0.0, 1.0], [2.0, 3.0]]), families.gaussian("diag"))
        >>> prep.center.tolist(), prep.data.shape  # features: x**2, x, 1
        ([1.0, 2.0], (2, 5))
    """
    n = jax.tree.leaves(x)[0].shape[0]
    if w is None:
        w = jnp.ones((n,), jax.tree.leaves(x)[0].dtype)
    if center is None:
        center = weighted_center(x, w)
    return Prepared(family.prepare(x, w, center), w, center)


def component_log_probs(prepared: Prepared, model: Mixture) -> jax.Array:
    r"""`(n, K)` $\log \alpha_k + \log p(x_i \mid \theta_k)$ from prepared data.

    Args:
        prepared: a [Prepared][jaxprob.em.Prepared] data set.
        model: a [Mixture][jaxprob.em.Mixture].

    Returns:
        `(n, K)` weighted component log-likelihoods.
    """
    lp = model.family.log_prob(prepared.data, model.components, prepared.center)
    return weight_log_probs(lp, model.weights)


def weight_log_probs(lp: ArrayLike, weights: ArrayLike) -> jax.Array:
    r"""$\log\alpha_k + \ell_{ik}$, exactly $-\infty$ for a component of weight 0 whatever its parameters
    (a masked or emptied component may hold non-finite parameters that must not turn into NaN).

    Args:
        lp: `(n, K)` component log-likelihoods.
        weights: `(K,)` mixing weights.

    Returns:
        `(n, K)`.
    """
    return jnp.where(weights > 0, lp + jnp.log(jnp.where(weights > 0, weights, 1.0)), -jnp.inf)


def fold_log_weights(natural: ArrayLike, weights: ArrayLike) -> jax.Array:
    r"""Natural parameters with the log-weights folded into their last (constant) column, for a
    [Family.weighted_log_prob][jaxprob.em.Family.weighted_log_prob] computed as one product
    `data @ natural.T` whose last data column is ones.

    A component of weight 0 gets a zero row (its parameters may be non-finite) and the constant
    $-\max/4$ of the dtype: finite, since an infinity in a product that an accelerator splits into bfloat16 parts
    becomes NaN, and far below any live component's log-likelihood, so its responsibility is exactly 0.

    Args:
        natural: `(K, P)` per-component coefficients of the prepared data's `P` columns, the last for the column
            of ones.
        weights: `(K,)` mixing weights.

    Returns:
        `(K, P)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import em
        >>> em.fold_log_weights(jnp.array([[2.0, -1.0], [jnp.nan, 3.0]]), jnp.array([1.0, 0.0]))[:, :1].tolist()
        [[2.0], [0.0]]
    """
    natural = jnp.asarray(natural)
    live = jnp.asarray(weights) > 0
    floor = -jnp.finfo(natural.dtype).max / 4
    const = jnp.where(live, natural[:, -1] + jnp.log(jnp.where(live, weights, 1.0)), floor)
    return jnp.concatenate([jnp.where(live[:, None], natural[:, :-1], 0.0), const[:, None]], axis=1)


def _normalise(lp, w):
    """Log-normaliser per sample and weighted responsibilities, from one exponential."""
    top = jax.lax.stop_gradient(jnp.max(lp, axis=1))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(lp - top[:, None])
    total = jnp.sum(e, axis=1)
    log_norm = top + jnp.log(total)
    resp = e * jnp.where(total > 0, w / total, 0.0)[:, None]
    return log_norm, resp


def e_step(prepared: Prepared, model: Mixture) -> Stats:
    """E-step of a mixture on prepared data: the statistics under the responsibilities of `model`.

    Args:
        prepared: a [Prepared][jaxprob.em.Prepared] data set.
        model: a [Mixture][jaxprob.em.Mixture].

    Returns:
        [Stats][jaxprob.em.Stats] (`stats.log_likelihood / stats.total_weight` is the mean log-likelihood).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import em, mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> stats = em.e_step(em.prepare(jnp.array([[-1.0], [1.0]]), gmm.family), gmm)
        >>> stats.counts.round(3).tolist()
        [1.0, 1.0]
    """
    family = model.family
    w = prepared.weights
    lp = family.weighted_log_prob(prepared.data, model.components, prepared.center, model.weights)
    log_norm, resp = _normalise(lp, w)
    fam, counts = family.statistics_and_counts(prepared.data, resp, model.components, prepared.center)
    ll = jnp.sum(jnp.where(w > 0, w * log_norm, 0.0))
    dtype = resp.dtype
    return Stats(counts, fam, ll, jnp.sum(w), jnp.sum((w > 0).astype(dtype)))


def m_step(family: Family, stats: Stats, center: Any, previous: Mixture | None = None,
           use_previous: bool | jax.Array = True) -> tuple[Mixture, jax.Array, jax.Array]:
    """M-step of a mixture: weights from the counts, components from the family.

    A component holding less than one sample's worth of responsibility (`counts` below the mean sample
    weight) is *collapsed*: it keeps its `previous` parameters when they are given (and the traced bool
    `use_previous` holds).

    Args:
        family: the [Family][jaxprob.em.Family].
        stats: summed [Stats][jaxprob.em.Stats].
        center: the reference given to [prepare][jaxprob.em.prepare].
        previous: the model of the previous iteration, or None.
        use_previous: traced bool; False ignores `previous` (the first pass of a loop).

    Returns:
        `(model, collapsed, regularized)`: a [Mixture][jaxprob.em.Mixture] and two `(K,)` bool flags.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import em, families
        >>> fam = families.gaussian("spherical", reg_covar=0.0)
        >>> prep = em.prepare(jnp.array([[1.0], [3.0]]), fam)
        >>> stats = em.statistics_from_responsibilities(prep, jnp.ones((2, 1)), fam)
        >>> model, _, _ = em.m_step(fam, stats, prep.center)
        >>> model.means.round(4).tolist(), model.covariances.round(4).tolist()
        ([[2.0]], [1.0])
    """
    counts = stats.counts
    eps = 10 * jnp.finfo(counts.dtype).eps
    nk = counts + eps
    mean_weight = stats.total_weight / jnp.maximum(stats.n_samples, 1.0)
    collapsed = counts < mean_weight
    if previous is None:
        comps, regularized = family.m_step(stats.family, nk, center, None, None)
    else:
        keep = collapsed & use_previous
        comps, regularized = family.m_step(stats.family, nk, center, previous.components, keep)
    return Mixture(nk / jnp.sum(nk), comps, family), collapsed, regularized


def step(prepared: Prepared, model: Mixture) -> tuple[Mixture, jax.Array]:
    """One EM iteration on prepared data: E-step, then M-step (traceable, cheap inside the caller's `jit`).

    Args:
        prepared: a [Prepared][jaxprob.em.Prepared] data set.
        model: the current [Mixture][jaxprob.em.Mixture].

    Returns:
        `(new_model, mean_log_likelihood)`, the latter under the *input* model.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import em, mixture
        >>> x = jnp.array([[-2.0], [-1.5], [1.5], [2.0]])
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> prep = em.prepare(x, gmm.family)
        >>> new, ll = jax.jit(em.step)(prep, gmm)
        >>> bool(em.step(prep, new)[1] >= ll)
        True
    """
    stats = e_step(prepared, model)
    new, _, _ = m_step(model.family, stats, prepared.center, model)
    return new, stats.log_likelihood / stats.total_weight


def statistics_from_responsibilities(prepared: Prepared, resp: ArrayLike, family: Family, params: Any = None) -> Stats:
    """Statistics of prepared data under given responsibilities (an initialisation; no log-likelihood).

    Args:
        prepared: a [Prepared][jaxprob.em.Prepared] data set.
        resp: `(n, K)` responsibilities (rows summing to one).
        family: the [Family][jaxprob.em.Family].
        params: component parameters for families whose statistics need them (default None).

    Returns:
        [Stats][jaxprob.em.Stats] with a zero log-likelihood.
    """
    w = prepared.weights
    rw = resp * w[:, None]
    fam, counts = family.statistics_and_counts(prepared.data, rw, params, prepared.center)
    zero = jnp.zeros((), rw.dtype)
    return Stats(counts, fam, zero, jnp.sum(w), jnp.sum((w > 0).astype(rw.dtype)))


# ----------------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------------
class LoopState(NamedTuple):
    """State of [run][jaxprob.em.run] (a pytree; `model` and `stats` are whatever the caller's steps use)."""

    model: Any
    stats: Any
    first: jax.Array
    prev_ll: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    nonfinite: jax.Array
    trace: jax.Array
    collapsed: jax.Array
    regularized: jax.Array
    done: jax.Array
    final_ll: jax.Array
    last_good: Any


def run(model: Any, stats: Any, e_step_fn: Callable, m_step_fn: Callable, *, max_iter: int, tol: float, given: bool,
        n_flags: int, callback: Callable | None = None) -> LoopState:
    r"""The EM loop, as one `lax.while_loop` whose pass is an M-step followed by an E-step.

    The first pass starts either from the statistics `stats` (their M-step gives the initial model, not counted
    as an iteration) or, when `given` (a Python bool), from `model` (that M-step is discarded). Pass $j$
    scores the model it made; once $|\bar\ell_{j-1} - \bar\ell_{j-2}| < \text{tol}$ or $j$ reaches `max_iter`,
    pass $j$ is the last and its E-step gives the log-likelihood of the returned model. A non-finite
    log-likelihood ends the loop on the last model whose log-likelihood was finite (flag `nonfinite`;
    `converged` stays False).

    Args:
        model: the starting model (used when `given`; any model of the right structure otherwise).
        stats: the starting statistics (used unless `given`; when `given`, None or any statistics of the right
            structure).
        e_step_fn: `model -> stats` with fields `log_likelihood` and `total_weight`.
        m_step_fn: `(stats, previous_model, use_previous) -> (model, collapsed, regularized)`.
        max_iter: hard limit on iterations (static: the trace has this length).
        tol: threshold on the change of the mean log-likelihood.
        given: start from `model` rather than from `stats` (static).
        n_flags: length of the `collapsed` / `regularized` flags (static; $K$).
        callback: optional `callback(n_iter, mean_log_likelihood)` called on the host after every iteration
            (through `jax.debug.callback`; None compiles no callback at all).

    Returns:
        The final [LoopState][jaxprob.em.LoopState] (`model`, `final_ll`, `trace`, flags).
    """
    dtype = next(a.dtype for a in jax.tree.leaves(model) if jnp.issubdtype(a.dtype, jnp.floating))
    if stats is None:
        stats = _placeholder(lambda: e_step_fn(model))

    def body(s: LoopState):
        new, collapsed, regularized = m_step_fn(s.stats, s.model, ~s.first)
        if given:  # a Python bool: the program that starts from statistics holds no selection
            new = jax.tree.map(lambda a, b: jnp.where(s.first, a, b), s.model, new)
        counted = ~s.first
        n_iter = s.n_iter + counted.astype(jnp.int32)
        stats = e_step_fn(new)
        ll = stats.log_likelihood / stats.total_weight
        nonfinite = ~jnp.isfinite(ll)
        last = (counted & s.converged) | (n_iter >= max_iter) | nonfinite
        record = ~last
        if callback is not None:
            jax.debug.callback(callback, n_iter, ll, ordered=True)
        # a non-finite likelihood returns the last model that had a finite one (if any)
        fall_back = nonfinite & ~s.first
        good = jax.tree.map(lambda a, b: jnp.where(fall_back, a, b), s.last_good, new)
        return LoopState(
            good,
            stats,
            jnp.asarray(False),
            jnp.where(record, ll, s.prev_ll),
            n_iter,
            jnp.where(record, jnp.abs(ll - s.prev_ll) < tol, s.converged & ~nonfinite),
            nonfinite,
            jnp.where(record, s.trace.at[jnp.minimum(n_iter, max_iter - 1)].set(ll), s.trace),
            jnp.where(counted, collapsed, s.collapsed),
            s.regularized | (regularized & counted),
            last,
            jnp.where(fall_back, s.prev_ll, ll),
            good,
        )

    state = LoopState(
        model,
        stats,
        jnp.asarray(True),
        jnp.asarray(-jnp.inf, dtype),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(False),
        jnp.asarray(False),
        jnp.full((max_iter,), jnp.nan, dtype),
        jnp.zeros((n_flags,), bool),
        jnp.zeros((n_flags,), bool),
        jnp.asarray(False),
        jnp.asarray(jnp.nan, dtype),
        model,
    )
    return jax.lax.while_loop(lambda s: ~s.done, body, state)


def best_restart(states: LoopState) -> tuple[Any, FitInfo]:
    """The restart with the highest final log-likelihood (NaN never wins), and its [FitInfo][jaxprob.em.FitInfo].

    Args:
        states: a [LoopState][jaxprob.em.LoopState] stacked over restarts (leading axis `n_init`).

    Returns:
        `(model, info)`.
    """
    final_ll = states.final_ll
    best = jnp.argmax(jnp.where(jnp.isnan(final_ll), -jnp.inf, final_ll))
    s = jax.tree.map(lambda a: a[best], states)
    info = FitInfo(
        converged=s.converged,
        n_iter=s.n_iter,
        log_likelihood=final_ll[best],
        trace=s.trace,
        collapsed=s.collapsed,
        regularized=s.regularized,
        nonfinite=s.nonfinite,
        restart_log_likelihoods=final_ll,
        best_restart=best.astype(jnp.int32),
    )
    return s.model, info


def info_of_one_run(*, converged: bool, n_iter: int, log_likelihood: float, trace: ArrayLike, collapsed: ArrayLike,
                    regularized: ArrayLike, nonfinite: bool, dtype: Any) -> FitInfo:
    """The [FitInfo][jaxprob.em.FitInfo] of one restart driven from the host (the chunked drivers' loops).

    Args:
        converged: the tolerance was met.
        n_iter: iterations run.
        log_likelihood: mean log-likelihood of the returned model.
        trace: `(max_iter,)` trace (NaN after `n_iter`).
        collapsed: `(K,)` flags of the last M-step.
        regularized: `(K,)` flags of any M-step.
        nonfinite: a non-finite log-likelihood stopped the loop.
        dtype: the float dtype of the fit.

    Returns:
        A [FitInfo][jaxprob.em.FitInfo] with one restart.
    """
    return FitInfo(
        converged=jnp.asarray(converged),
        n_iter=jnp.asarray(n_iter, jnp.int32),
        log_likelihood=jnp.asarray(log_likelihood, dtype),
        trace=jnp.asarray(trace, dtype),
        collapsed=jnp.asarray(collapsed),
        regularized=jnp.asarray(regularized),
        nonfinite=jnp.asarray(nonfinite),
        restart_log_likelihoods=jnp.asarray([log_likelihood], dtype),
        best_restart=jnp.asarray(0, jnp.int32),
    )


# ----------------------------------------------------------------------------------------------------------
# initialisation and the mixture fit
# ----------------------------------------------------------------------------------------------------------
def restart_draws(n_init: int, n_components: int, method: str, dtype: DTypeLike, *, key: jax.Array) -> jax.Array:
    """The randomness of every restart, stacked on `(n_init,)`.

    For k-means++ these are its uniforms, all from one draw of `key` (with one restart the seeds are those of
    [jaxprob.kmeans.kmeans_plusplus][] with `key`); for the other methods, keys split from `key`.
    """
    if method == "kmeans++":
        trials = kmeans.default_local_trials(n_components)
        return kmeans.kmeans_plusplus_uniforms(n_init, n_components, trials, dtype, key=key)
    return jax.random.split(key, n_init)


def initial_responsibilities(draw: jax.Array, xm: ArrayLike, w: ArrayLike, n_components: int, method: str) -> jax.Array:
    """`(n, K)` starting responsibilities of one restart.

    Args:
        draw: that restart's entry of [restart_draws][jaxprob.em.restart_draws].
        xm: `(n, D)` seeding matrix (a family's `seeding_matrix`, centred).
        w: `(n,)` weights.
        n_components: $K$.
        method: one of [INIT_METHODS][jaxprob.em.INIT_METHODS].
    """
    if method == "random":
        r = jax.random.uniform(draw, (xm.shape[0], n_components), xm.dtype)
        return r / jnp.sum(r, axis=1, keepdims=True)
    if method == "kmeans++":
        centers, _ = kmeans.kmeans_plusplus_from_uniforms(draw, xm, w)
    elif method == "kmeans":
        centers = kmeans.kmeans_plusplus_refined(xm, n_components, sample_weight=w, key=draw)
    else:
        centers, _ = kmeans.random_centroids(xm, n_components, sample_weight=w, key=draw)
    labels = jnp.argmin(kmeans.squared_distances(xm, centers), axis=1)
    return jax.nn.one_hot(labels, n_components, dtype=xm.dtype)


def _seeding(family, x, w):
    xm = family.seeding_matrix(x)
    return xm - weighted_center(xm, w)


def initial_stats(x: Any, prepared: Prepared, family: Family, n_components: int, method: str, n_init: int, *,
                  key: jax.Array, draws: jax.Array | None = None) -> Stats:
    """Initial statistics of every restart, stacked on `(n_init,)` (`draws` overrides
    [restart_draws][jaxprob.em.restart_draws])."""
    xm = _seeding(family, x, prepared.weights)
    w = prepared.weights

    def one(r):
        resp = initial_responsibilities(r, xm, w, n_components, method)
        return statistics_from_responsibilities(prepared, resp, family)

    rs = restart_draws(n_init, n_components, method, xm.dtype, key=key) if draws is None else draws
    if n_init == 1:  # same values as the vmapped program, compiles faster
        return jax.tree.map(lambda a: a[None], one(rs[0]))
    return jax.vmap(one)(rs)


def initial_models(x: Any, family: Family, n_components: int, *, key: jax.Array, sample_weight: ArrayLike | None = None,
                   init_method: str = "kmeans++", n_init: int = 1) -> Mixture:
    """The starting models of the `n_init` restarts of [fit][jaxprob.em.fit] for `key`, stacked (traceable).

    Args:
        x: `(n, ...)` data.
        family: a [Family][jaxprob.em.Family].
        n_components: $K$ (static).
        key: a PRNG key.
        sample_weight: optional `(n,)` weights.
        init_method: one of [INIT_METHODS][jaxprob.em.INIT_METHODS] (static).
        n_init: number of restarts (static).

    Returns:
        A [Mixture][jaxprob.em.Mixture] whose leaves have a leading `(n_init,)` axis.
    """
    n = jax.tree.leaves(x)[0].shape[0]
    w = jnp.ones((n,), jax.tree.leaves(x)[0].dtype) if sample_weight is None else sample_weight
    prepared = prepare(x, family, w)
    stats = initial_stats(x, prepared, family, n_components, init_method, n_init, key=key)
    return jax.vmap(lambda st: m_step(family, st, prepared.center)[0])(stats)


def _placeholder(tree_fn):
    """Zeros shaped like the output of `tree_fn()` (stand-ins the compiled loop never reads)."""
    shapes = jax.eval_shape(tree_fn)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def mixture_steps(prepared: Prepared, family: Family, project: Callable | None = None) -> tuple[Callable, Callable]:
    """The E-step and M-step callables of a mixture on prepared data, as [run][jaxprob.em.run] takes them.

    Args:
        prepared: a [Prepared][jaxprob.em.Prepared] data set.
        family: the [Family][jaxprob.em.Family].
        project: optional map applied to every M-step's model (e.g. masking padded components).

    Returns:
        `(e_step_fn, m_step_fn)`.
    """

    def e_fn(model):
        return e_step(prepared, model)

    def m_fn(stats, previous, use_previous):
        new, collapsed, regularized = m_step(family, stats, prepared.center, previous, use_previous)
        if project is not None:
            new = project(new)
        return new, collapsed, regularized

    return e_fn, m_fn


def fit_from(prepared: Prepared, family: Family, models: Mixture | None = None, stats: Stats | None = None, *,
             max_iter: int, tol: float, project: Callable | None = None, callback: Callable | None = None,
             e_step_fn: Callable | None = None) -> tuple[Mixture, FitInfo]:
    """EM from stacked starting models (or starting statistics), one loop per restart, best restart kept.

    Exactly one of `models` (a [Mixture][jaxprob.em.Mixture] whose leaves have a leading `(n_init,)` axis)
    and `stats` (stacked [Stats][jaxprob.em.Stats]) is given. `e_step_fn` replaces the E-step on `prepared`
    (the sharded driver sums it over devices); `project` maps every M-step's model onto the model set.

    Returns:
        `(model, info)` as [fit][jaxprob.em.fit].
    """
    e_fn, m_fn = mixture_steps(prepared, family, project)
    if e_step_fn is not None:
        e_fn = e_step_fn
    given = models is not None
    if given:
        first = jax.tree.map(lambda a: a[0], models)
        k = first.weights.shape[0]
        stats = jax.vmap(lambda _m: _placeholder(lambda: e_fn(first)))(models.weights)
    else:
        st0 = jax.tree.map(lambda a: a[0], stats)
        k = st0.counts.shape[0]
        models = jax.vmap(lambda _c: _placeholder(lambda: m_fn(st0, None, False)[0]))(stats.counts)

    def one(m, st):
        return run(m, st, e_fn, m_fn, max_iter=max_iter, tol=tol, given=given, n_flags=k, callback=callback)

    if models.weights.shape[0] == 1:  # one restart: no batched while_loop (same values, faster compile)
        states = jax.tree.map(lambda a: a[None], one(*jax.tree.map(lambda a: a[0], (models, stats))))
    else:
        states = jax.vmap(one)(models, stats)
    return best_restart(states)


def fit(x: Any, family: Family, n_components: int, *, key: jax.Array, sample_weight: ArrayLike | None = None,
        init_method: str = "kmeans++", n_init: int = 1, max_iter: int = 100, tol: float = 1e-3,
        callback: Callable | None = None) -> tuple[Mixture, FitInfo]:
    """Fit a mixture of `family` by EM from data: initialisation, vmapped restarts, the best kept (traceable).

    This is the engine's core, without validation; [jaxprob.mixture.fit][] is the checked public front-end.

    Args:
        x: `(n, ...)` data.
        family: a [Family][jaxprob.em.Family].
        n_components: $K$ (static).
        key: a PRNG key.
        sample_weight: optional `(n,)` weights.
        init_method: one of [INIT_METHODS][jaxprob.em.INIT_METHODS] (static).
        n_init: number of restarts (static).
        max_iter: hard limit on iterations (static).
        tol: threshold on the change of the mean log-likelihood.
        callback: optional progress callback (see [run][jaxprob.em.run]).

    Returns:
        `(model, info)`: a [Mixture][jaxprob.em.Mixture] and a [FitInfo][jaxprob.em.FitInfo].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import em, families
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (100, 2)) - 3,
        ...                      jax.random.normal(jax.random.key(2), (100, 2)) + 3])
        >>> fit = jax.jit(em.fit, static_argnums=2)
        >>> model, info = fit(x, families.gaussian("diag"), 2, key=jax.random.key(0))
        >>> bool(info.converged), sorted(model.means[:, 0].round(0).tolist())
        (True, [-3.0, 3.0])
    """
    n = jax.tree.leaves(x)[0].shape[0]
    w = jnp.ones((n,), jax.tree.leaves(x)[0].dtype) if sample_weight is None else sample_weight
    prepared = prepare(x, family, w)
    stats = initial_stats(x, prepared, family, n_components, init_method, n_init, key=key)
    return fit_from(prepared, family, stats=stats, max_iter=max_iter, tol=tol, callback=callback)
