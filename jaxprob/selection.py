r"""Model selection for Gaussian mixtures in one compiled program: a grid over the number of components, the
covariance type and restarts, with BIC, AIC and held-out log-likelihood for every cell.

**Padding.** Every number of components $K$ of the grid is fitted with $K_{\max}$ components of
which the last $K_{\max} - K$ are *masked*: their weight is fixed at 0 (so $\log\alpha_k = -\infty$,
their responsibilities are exactly 0 and they do not change the likelihood), they are re-masked after every
M-step, and they are not counted in the number of parameters. All cells of one covariance type then share their
shapes and run as one `vmap` over ($K$, restart) of the EM loop of [`jaxprob.mixture.fit`][jaxprob.mixture.fit]
(`lax.while_loop`; finished cells are frozen while the others run).

**Covariance types.** The four types have different parameter shapes and E-step features (a full covariance
needs $D(D+1)/2$ quadratic features, a diagonal one $D$, a spherical one 1, a tied one none), so they
cannot share one `vmap` without paying the full-covariance cost in every cell. Each type is its own vmapped
sub-program; all of them are traced into **one** jitted program, compiled once per data shape and grid.

**Initialisation.** Restart $r$ draws $K_{\max}$ greedy k-means++ seeds
([`jaxprob.kmeans.kmeans_plusplus`][jaxprob.kmeans.kmeans_plusplus] with key `jax.random.split(key, n_init)[r]`, shared
by every cell); the cell with $K$ components assigns each sample to the nearest of the first $K$ seeds and runs one
M-step (as [`jaxprob.mixture.init`][jaxprob.mixture.init]). `method="random"` draws random responsibilities over the
first $K$ components. Every cell's starting parameters are returned, so any cell can be re-run alone with
`mixture.fit(x, K, covariance_type=ct, init_params=cell_params(result, ct, K, r, initial=True))`.

**Criteria** (lower is better): $\mathrm{BIC} = -2\log L + p\log n$,
$\mathrm{AIC} = -2\log L + 2p$, with $\log L = \sum_i w_i\log p(x_i)$, $n = \sum_i w_i$ and
$p$ the free parameters of the unpadded model ([`jaxprob.mixture.n_parameters`][jaxprob.mixture.n_parameters]). The
held-out criterion is the mean log-likelihood of `x_val` (higher is better).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob import em, kmeans
from jaxprob._validation import check_choice, check_int, check_key, check_sample_weight, is_tracer
from jaxprob.densities import COVARIANCE_TYPES
from jaxprob.em import Family, Mixture
from jaxprob.families.gaussian import gaussian

__all__ = ["CRITERIA", "INIT_METHODS", "SelectionResult", "fit_grid", "cell_params"]

CRITERIA = ("bic", "aic", "heldout")
"""Model-selection criteria: BIC and AIC (lower wins) and held-out log-likelihood (higher wins)."""
INIT_METHODS = ("kmeans++", "random")
"""Starts of the grid's cells: nearest k-means++ seeds, or random responsibilities."""


class SelectionResult(NamedTuple):
    """Every cell of a model-selection grid, and the best model.

    Grid arrays are indexed `[covariance type, number of components, restart]` in the order of
    `covariance_types` and `n_components`.

    Attributes:
        covariance_types: the covariance types of the grid (tuple of str).
        n_components: the numbers of components of the grid (tuple of int).
        log_likelihood: `(C, G, R)` mean (weighted) training log-likelihood of the fitted parameters.
        heldout_log_likelihood: `(C, G, R)` mean log-likelihood of `x_val` (NaN without `x_val`).
        bic: `(C, G, R)`.
        aic: `(C, G, R)`.
        n_parameters: `(C, G)` free parameters of each model (padding excluded).
        converged: `(C, G, R)` bool.
        n_iter: `(C, G, R)` EM iterations run.
        params: per covariance type, a padded [`Mixture`][jaxprob.em.Mixture] whose leaves have leading
            axes `(G, R)` and `K_max` components (masked components have weight 0); see
            [`cell_params`][jaxprob.selection.cell_params].
        init_params: the starting parameters of every cell, shaped as `params`.
        criterion: the criterion used to choose `best`.
        best_index: `(c, g, r)` of the best cell.
        best_covariance_type: its covariance type.
        best_n_components: its number of components.
        best: its fitted [`Mixture`][jaxprob.em.Mixture], unpadded.
    """

    covariance_types: tuple
    n_components: tuple
    log_likelihood: jax.Array
    heldout_log_likelihood: jax.Array
    bic: jax.Array
    aic: jax.Array
    n_parameters: np.ndarray
    converged: jax.Array
    n_iter: jax.Array
    params: tuple
    init_params: tuple
    criterion: str
    best_index: tuple
    best_covariance_type: str
    best_n_components: int
    best: Mixture
    families: tuple = ()


def _mask(model: Mixture, mask):
    """Zero the weights of the masked components and renormalise the others."""
    w = jnp.where(mask, model.weights, 0.0)
    return Mixture(w / jnp.sum(w), model.components, model.family)


def _n_params(family, comps, k):
    return k - 1 + family.n_parameters(em.take_components(family, comps, slice(0, k)))


def _grid_one_family(family, seeds, keys, x, w, x_val, w_val, tol, ks, method, max_iter):
    """All (K, restart) cells of one family: starts, vmapped EM, criteria."""
    k_max = max(ks)
    masks = jnp.arange(k_max)[None, :] < jnp.asarray(ks)[:, None]  # (G, K_max)
    total = jnp.sum(w)
    prepared = em.prepare(x, family, w)
    xm = family.seeding_matrix(x)

    def start(mask, seed, key):
        """Initial model of one cell: hard assignment to the first K seeds (or random responsibilities)."""
        if method == "kmeans++":
            d2 = jnp.sum(jnp.square(seed), axis=-1)[None, :] - 2.0 * (xm @ seed.T)
            labels = jnp.argmin(jnp.where(mask[None, :], d2, jnp.inf), axis=1)
            resp = jax.nn.one_hot(labels, mask.shape[0], dtype=xm.dtype)
        else:
            r = jax.random.uniform(key, (xm.shape[0], mask.shape[0]), xm.dtype) * mask
            resp = r / jnp.sum(r, axis=1, keepdims=True)
        stats = em.statistics_from_responsibilities(prepared, resp, family)
        return _mask(em.m_step(family, stats, prepared.center)[0], mask)

    def run(m0, mask):
        e_fn, m_fn = em.mixture_steps(prepared, family, project=lambda q: _mask(q, mask))
        return em.run(m0, None, e_fn, m_fn, max_iter=max_iter, tol=tol, given=True, n_flags=k_max)

    def cells(mask):  # the restarts of one K
        starts = jax.vmap(start, in_axes=(None, 0, 0))(mask, seeds, keys)
        return starts, jax.vmap(run, in_axes=(0, None))(starts, mask)

    starts, states = jax.vmap(cells)(masks)
    comps0 = jax.tree.map(lambda a: a[0, 0], starts.components)
    n_par = jnp.asarray([_n_params(family, comps0, k) for k in ks], x.dtype)[:, None]
    ll = states.final_ll
    bic = -2.0 * ll * total + n_par * jnp.log(total)
    aic = -2.0 * ll * total + 2.0 * n_par
    if x_val is not None:
        prep_val = em.prepare(x_val, family, w_val, prepared.center)

        def held(q):
            st = em.e_step(prep_val, q)
            return st.log_likelihood / st.total_weight

        heldout = jax.vmap(jax.vmap(held))(states.model)
    else:
        heldout = jnp.full(ll.shape, jnp.nan, x.dtype)
    return ll, heldout, bic, aic, states.converged, states.n_iter, states.model, starts


@functools.partial(jax.jit, static_argnames=("ks", "method", "max_iter"))
def _grid_jit(keys, x, w, x_val, w_val, tol, fams, *, ks, method, max_iter):
    """One program for the whole grid: the seeds, then one vmapped sub-program per family."""
    out = []
    for family in fams:
        xm = family.seeding_matrix(x)
        if method == "kmeans++":
            seeds = jax.vmap(lambda k, xm=xm: kmeans.kmeans_plusplus(xm, max(ks), sample_weight=w, key=k)[0])(keys)
        else:
            seeds = jnp.zeros((keys.shape[0], max(ks), xm.shape[1]), xm.dtype)
        out.append(_grid_one_family(family, seeds, keys, x, w, x_val, w_val, tol, ks, method, max_iter))
    return out


def _as_tuple(value, name, convert):
    items = (value,) if isinstance(value, (str, int, np.integer)) else tuple(value)
    if not items:
        raise ValueError(f"`{name}` must not be empty")
    items = tuple(convert(v) for v in items)
    if len(set(items)) != len(items):
        raise ValueError(f"`{name}` must not repeat values, got {items}")
    return items


def fit_grid(x: ArrayLike, n_components: int | Sequence[int], *, key: jax.Array,
             covariance_types: Sequence[str] | str = COVARIANCE_TYPES, families: Sequence[Family] | None = None,
             n_init: int = 1, x_val: ArrayLike | None = None, criterion: str = "bic", init_method: str = "kmeans++",
             max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6, sample_weight: ArrayLike | None = None,
             val_weight: ArrayLike | None = None) -> SelectionResult:
    """Fit every (covariance type, number of components, restart) of a grid by EM in one compiled program and
    score each cell by BIC, AIC and held-out log-likelihood.

    Args:
        x: `(n, D)` training data.
        n_components: an int `K_max` (the grid is `1..K_max`) or a sequence of numbers of components.
        key: a JAX PRNG key (restart `r` uses `jax.random.split(key, n_init)[r]`).
        covariance_types: a type or a sequence of types among `"full"`, `"tied"`, `"diag"`, `"spherical"`
            (Gaussian families with `reg_covar`; ignored when `families` is given).
        families: optional sequence of [Family][jaxprob.em.Family] objects, one grid row each (any family of
            [jaxprob.families][]); `result.covariance_types` then names them.
        n_init: restarts per cell.
        x_val: optional `(m, D)` held-out data.
        criterion: `"bic"` or `"aic"` (lowest wins) or `"heldout"` (highest held-out log-likelihood wins;
            needs `x_val`).
        init_method: `"kmeans++"` or `"random"` (see the module notes).
        max_iter: hard limit on EM iterations per cell (static).
        tol: threshold on the change of the mean log-likelihood.
        reg_covar: non-negative value added to the covariance diagonals.
        sample_weight: optional `(n,)` non-negative weights of `x`.
        val_weight: optional `(m,)` non-negative weights of `x_val`.

    Returns:
        A [`SelectionResult`][jaxprob.selection.SelectionResult].

    Raises:
        ValueError: besides bad arguments, when the criterion is NaN in every cell (no model can be chosen:
            every fit had a non-finite log-likelihood).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import selection
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (200, 2)) - 4,
        ...                      jax.random.normal(jax.random.key(2), (200, 2)) + 4])
        >>> res = selection.fit_grid(x, 3, key=jax.random.key(0), covariance_types=("diag", "spherical"))
        >>> res.bic.shape, res.best_n_components
        ((2, 3, 1), 2)
    """
    check_choice(init_method, "init_method", INIT_METHODS)
    if families is None:
        cts = _as_tuple(covariance_types, "covariance_types",
                        lambda c: check_choice(c, "covariance_types", COVARIANCE_TYPES))
        fams = tuple(gaussian(ct, reg_covar) for ct in cts)
    else:
        fams = tuple(families) if not isinstance(families, Family) else (families,)
        if not fams or not all(isinstance(f, Family) for f in fams):
            raise TypeError("`families` must be a non-empty sequence of jaxprob.em.Family objects")
        cts = tuple(getattr(f, "covariance_type", type(f).__name__.lower()) for f in fams)
        if len(set(cts)) != len(cts):
            cts = tuple(f"{name}{i}" for i, name in enumerate(cts))
    x = fams[0].validate(x, "x")
    n, d = x.shape
    ks = _as_tuple(n_components, "n_components",
                   lambda k: check_int(k, "n_components", minimum=1, maximum=n))
    if isinstance(n_components, (int, np.integer)):
        ks = tuple(range(1, ks[0] + 1))
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    check_choice(criterion, "criterion", CRITERIA)
    check_key(key)
    if not is_tracer(tol) and (not np.isfinite(float(tol)) or float(tol) < 0):
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")
    w = check_sample_weight(sample_weight, n, x.dtype)
    if x_val is not None:
        x_val = fams[0].validate(x_val, "x_val")
        if x_val.shape[1] != d:
            raise ValueError(f"`x_val` has {x_val.shape[1]} features but `x` has {d}")
        x_val = x_val.astype(x.dtype)
        w_val = check_sample_weight(val_weight, x_val.shape[0], x.dtype, "val_weight")
    else:
        if criterion == "heldout":
            raise ValueError("criterion='heldout' needs `x_val`")
        if val_weight is not None:
            raise ValueError("`val_weight` is given without `x_val`")
        w_val = None
    keys = jax.random.split(key, n_init)
    out = _grid_jit(keys, x, w, x_val, w_val, jnp.asarray(tol, x.dtype), fams, ks=ks, method=init_method,
                    max_iter=max_iter)
    ll, heldout, bic, aic, converged, n_iter, params, starts = (
        tuple(o[i] for o in out) for i in range(8)
    )
    bic, aic, heldout = jnp.stack(bic), jnp.stack(aic), jnp.stack(heldout)
    score = np.asarray({"bic": bic, "aic": aic, "heldout": -heldout}[criterion])
    if np.all(np.isnan(score)):
        raise ValueError(
            f"the {criterion} criterion is NaN in every cell of the grid (every fit had a non-finite "
            "log-likelihood): no model can be chosen; check the scale of `x`"
        )
    score = np.where(np.isnan(score), np.inf, score)
    c, g, r = (int(i) for i in np.unravel_index(np.argmin(score), score.shape))
    best = _unpad(params[c], ks[g], g, r)
    n_par = np.array([[_n_params(f, jax.tree.map(lambda a: a[0, 0], p.components), k) for k in ks]
                      for f, p in zip(fams, params, strict=True)])
    return SelectionResult(
        covariance_types=cts,
        n_components=ks,
        log_likelihood=jnp.stack(ll),
        heldout_log_likelihood=heldout,
        bic=bic,
        aic=aic,
        n_parameters=n_par,
        converged=jnp.stack(converged),
        n_iter=jnp.stack(n_iter),
        params=params,
        init_params=starts,
        criterion=criterion,
        best_index=(c, g, r),
        best_covariance_type=cts[c],
        best_n_components=ks[g],
        best=best,
        families=fams,
    )


def cell_params(result: SelectionResult, covariance_type: str, n_components: int, restart: int | None = None, *,
                initial: bool = False) -> Mixture:
    """The unpadded mixture of one grid cell (its fitted or starting parameters).

    Args:
        result: a [`SelectionResult`][jaxprob.selection.SelectionResult].
        covariance_type: the cell's covariance type (one of `result.covariance_types`).
        n_components: the cell's number of components (one of `result.n_components`).
        restart: the restart; default the restart with the highest training log-likelihood.
        initial: return the starting parameters of the cell instead of the fitted ones.

    Returns:
        A [`Mixture`][jaxprob.em.Mixture] with `n_components` components.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import selection
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (200, 2)) - 4,
        ...                      jax.random.normal(jax.random.key(2), (200, 2)) + 4])
        >>> res = selection.fit_grid(x, 3, key=jax.random.key(0), covariance_types=("diag", "spherical"))
        >>> gmm = selection.cell_params(res, "spherical", 2)
        >>> gmm.means.shape, sorted(gmm.means[:, 0].round(0).tolist())
        ((2, 2), [-4.0, 4.0])
    """
    if not isinstance(result, SelectionResult):
        raise TypeError(f"`result` must be a SelectionResult, got {type(result).__name__}")
    if covariance_type not in result.covariance_types:
        raise ValueError(f"`covariance_type` must be one of {result.covariance_types}, got {covariance_type!r}")
    if n_components not in result.n_components:
        raise ValueError(f"`n_components` must be one of {result.n_components}, got {n_components!r}")
    c = result.covariance_types.index(covariance_type)
    g = result.n_components.index(n_components)
    n_init = result.log_likelihood.shape[2]
    if restart is None:
        ll = np.asarray(result.log_likelihood[c, g])
        restart = int(np.argmax(np.where(np.isnan(ll), -np.inf, ll)))
    restart = check_int(restart, "restart", minimum=0, maximum=n_init - 1)
    padded = (result.init_params if initial else result.params)[c]
    return _unpad(padded, n_components, g, restart)


def _unpad(padded: Mixture, k: int, g: int, r: int) -> Mixture:
    p = jax.tree.map(lambda a: a[g, r], padded)
    comps = em.take_components(p.family, p.components, slice(0, k))
    return Mixture(p.weights[:k], comps, p.family)
