r"""Categorical and multinomial components: count vectors (bag-of-words) and one-hot categorical features.

The $V$ columns of $x$ are split into $B$ blocks of sizes $V_1, \dots, V_B$ (`sizes`; by default one block of all
columns). Within a component the blocks are independent multinomials,

$$p(x \mid \theta_k) = \prod_b \frac{n_b!}{\prod_{v \in b} x_v!} \prod_{v \in b} p_{kv}^{x_v},
\qquad n_b = \sum_{v \in b} x_v,$$

so one block of word counts is a multinomial mixture of documents, and blocks of one-hot columns ($n_b = 1$) are
independent categorical features: with one component per class, [jaxprob.bayes.fit][] is then naive Bayes by
counting. The multinomial coefficient is part of the log-likelihood, so the values are true log-probabilities.

**The fused E-step.** The data are prepared once as $\Phi = [x, c]$ with the per-sample constant
$c_i = \sum_b \big(\log n_{ib}! - \sum_{v \in b} \log x_{iv}!\big)$; every E-step is one matrix product
$\Phi W^\top$ with $W_k = [\log p_k, 1]$, and the statistics are the product $R^\top \Phi$.

**The M-step** is the posterior mode under a symmetric Dirichlet($\alpha + 1$) prior on every block:
$p_{kv} = (S_{kv} + \alpha) / \sum_{u \in b} (S_{ku} + \alpha)$ with $S_{kv} = \sum_i r_{ik} x_{iv}$ (additive,
or Laplace, smoothing for $\alpha = 1$). Probabilities are kept at or above the machine epsilon of the dtype and
renormalised, which only acts when `alpha` is 0 or negligible, so that $\log 0$ never occurs.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob._validation import check_int, is_tracer
from jaxprob.em import Family, keep_rows
from jaxprob.families._checks import as_count_array, check_number, check_param_array, default_float
from jaxprob.numerics import matmul_precision, segment_sum

__all__ = ["CategoricalParams", "Categorical", "categorical", "make_params", "one_hot_features"]



class CategoricalParams(eqx.Module):
    """Parameters of $K$ categorical / multinomial components (a pytree).

    Attributes:
        probs: `(K, V)` probabilities; within every block of columns each row sums to one.
    """

    probs: jax.Array


class Categorical(Family):
    r"""Independent multinomial blocks of count columns (see the module notes).

    Statistics: `(K, V + 1)` $R^\top [x, c]$: the responsibility-weighted column sums $S_{kv}$ (and, in the last
    column, the weighted sum of the per-sample constants, which the M-step does not use).

    Attributes:
        alpha: non-negative pseudo-count added to every column of every component.
        sizes: block sizes $(V_1, \dots, V_B)$ (static), or None for one block of all columns.
        n_trials: number of trials per block of the samples drawn by `sample` (static; 1 draws one-hot
            categories).
    """

    alpha: float | jax.Array = 1.0
    sizes: tuple[int, ...] | None = eqx.field(static=True, default=None)
    n_trials: int = eqx.field(static=True, default=1)

    # ---- blocks --------------------------------------------------------------------------------------------
    def _sizes(self, v: int) -> tuple[int, ...]:
        return (v,) if self.sizes is None else self.sizes

    def _segments(self, v: int) -> np.ndarray:
        return np.repeat(np.arange(len(self._sizes(v))), self._sizes(v))

    def _block_sums(self, a):
        """`(K, V)` -> `(K, V)`: every entry replaced by the sum of its block in its row."""
        seg = self._segments(a.shape[1])
        sums = segment_sum(a.T, seg, len(self._sizes(a.shape[1])))  # deterministic on every backend
        return sums.T[:, seg]

    # ---- checks --------------------------------------------------------------------------------------------
    def validate(self, x, name: str = "x"):
        """`x` as a float `(n, V)` array of non-negative whole counts (integers are converted explicitly)."""
        x = as_count_array(x, name)
        if self.sizes is not None and x.shape[1] != sum(self.sizes):
            raise ValueError(f"`{name}` has {x.shape[1]} columns but the blocks `sizes` add up to {sum(self.sizes)}")
        return x

    def make_params(self, probs) -> CategoricalParams:
        """Component parameters from probabilities, checked eagerly.

        Args:
            probs: `(K, V)` positive probabilities, each block of every row summing to one.

        Returns:
            [CategoricalParams][jaxprob.families.categorical.CategoricalParams].

        Examples:
            >>> import jax.numpy as jnp
            >>> from jaxprob import families
            >>> fam = families.categorical(sizes=(2, 3))
            >>> fam.make_params(jnp.array([[0.5, 0.5, 0.2, 0.3, 0.5]])).probs.shape
            (1, 5)
        """
        params = CategoricalParams(check_param_array(probs, "probs", 2))
        self.check_params(params)
        return params

    def check_params(self, params, n_features: int | None = None) -> None:
        if not isinstance(params, CategoricalParams):
            raise TypeError(f"categorical components must be CategoricalParams, got {type(params).__name__}")
        p = params.probs
        if p.ndim != 2:
            raise ValueError(f"`probs` must have shape (K, V), got {tuple(p.shape)}")
        if self.sizes is not None and p.shape[1] != sum(self.sizes):
            raise ValueError(f"`probs` has {p.shape[1]} columns but the blocks `sizes` add up to {sum(self.sizes)}")
        if n_features is not None and p.shape[1] != n_features:
            raise ValueError(f"`x` has {n_features} features but the model has {p.shape[1]}")
        if not is_tracer(p):
            arr = np.asarray(p, np.float64)
            if not np.all(arr > 0):
                raise ValueError("`probs` must be positive (log 0 is not a log-likelihood)")
            seg = self._segments(arr.shape[1])
            sums = np.stack([np.bincount(seg, weights=row) for row in arr])
            if not np.allclose(sums, 1.0, atol=1e-4 * max(1, arr.shape[1])):
                raise ValueError("every block of `probs` must sum to one in every row")

    # ---- the E-step ----------------------------------------------------------------------------------------
    def _constants(self, x):
        r"""`(n,)` $\sum_b \log n_b! - \sum_v \log x_v!$, the log multinomial coefficients."""
        seg = self._segments(x.shape[1])
        n_b = segment_sum(x.T, seg, len(self._sizes(x.shape[1])))
        return jnp.sum(jax.lax.lgamma(n_b + 1.0), axis=0) - jnp.sum(jax.lax.lgamma(x + 1.0), axis=1)

    def prepare(self, x, w, center):
        return jnp.concatenate([x, self._constants(x)[:, None]], axis=1)

    def log_prob(self, data, params: CategoricalParams, center):
        nat = jnp.concatenate([jnp.log(params.probs), jnp.ones((params.probs.shape[0], 1), data.dtype)], axis=1)
        return jnp.matmul(data, nat.T, precision=matmul_precision())

    def component_log_prob(self, x, params: CategoricalParams):
        return jnp.matmul(x, jnp.log(params.probs).T, precision=matmul_precision()) + self._constants(x)[:, None]

    def statistics(self, data, resp, params, center):
        return jnp.matmul(resp.T, data, precision=matmul_precision())

    # ---- the M-step ----------------------------------------------------------------------------------------
    def m_step(self, stats, counts, center, previous, keep):
        v = stats.shape[1] - 1
        num = stats[:, :v] + jnp.asarray(self.alpha, stats.dtype)
        total = self._block_sums(num)
        p = num / jnp.where(total > 0, total, 1.0)
        # an empty block with alpha = 0 gives 0 / 0: the floor and renormalisation make it uniform
        p = jnp.maximum(p, jnp.finfo(p.dtype).eps)
        new = CategoricalParams(p / self._block_sums(p))
        if previous is not None:
            new = keep_rows(keep, new, previous)
        return new, jnp.zeros((p.shape[0],), bool)

    def implied_statistics(self, params: CategoricalParams, weights, center):
        # block totals of N_k (one trial per sample) plus the pseudo-counts: p (N_k + V_b alpha) - alpha
        p = params.probs
        alpha = jnp.asarray(self.alpha, p.dtype)
        width = jnp.asarray(np.asarray(self._sizes(p.shape[1]))[self._segments(p.shape[1])], p.dtype)
        s = p * (weights[:, None] + width * alpha) - alpha
        return jnp.concatenate([s, jnp.zeros_like(weights)[:, None]], axis=1)

    def n_parameters(self, params: CategoricalParams) -> int:
        k, v = params.probs.shape
        return k * (v - len(self._sizes(v)))

    def n_features(self, params: CategoricalParams) -> int:
        return params.probs.shape[-1]

    def sample(self, key, params: CategoricalParams, labels):
        # every trial is a categorical draw (Gumbel argmax) in its block, and the draws are counted by one
        # scatter-add: integer-valued float sums, exact in any order. All blocks at once, padded to the
        # widest with log-probability -inf (a padded column is never drawn).
        p = params.probs[labels]
        m, v = p.shape
        sizes = self._sizes(v)
        starts = np.cumsum((0,) + sizes[:-1])
        cols = np.full((len(sizes), max(sizes)), v)  # column v is a dummy that padded entries point to
        for b, (a, s) in enumerate(zip(starts, sizes, strict=True)):
            cols[b, :s] = a + np.arange(s)
        logp = jnp.concatenate([jnp.log(p), jnp.full((m, 1), -jnp.inf, p.dtype)], axis=1)[:, cols]
        draws = jax.random.categorical(key, logp, axis=-1, shape=(self.n_trials, m, len(sizes)))
        where = jnp.asarray(cols)[jnp.arange(len(sizes))[None, None, :], draws]
        counts = jnp.zeros((m, v + 1), p.dtype).at[jnp.arange(m)[None, :, None], where].add(1.0)
        return counts[:, :v]


def categorical(alpha: float = 1.0, *, sizes: Sequence[int] | None = None, n_trials: int = 1) -> Categorical:
    r"""The categorical / multinomial family, with `alpha` pseudo-counts per column (a symmetric Dirichlet prior).

    Args:
        alpha: non-negative pseudo-count; 1 is Laplace smoothing, 0 maximum likelihood.
        sizes: optional block sizes $(V_1, \dots, V_B)$ splitting the columns into independent multinomials (for
            one-hot categorical features, see [one_hot_features][jaxprob.families.categorical.one_hot_features]);
            None makes one block of all columns.
        n_trials: trials per block of the samples drawn by [jaxprob.mixture.sample][] (1: one-hot categories).

    Returns:
        A [Categorical][jaxprob.families.categorical.Categorical] family.

    Note:
        Online EM ([jaxprob.scale.fit_online][]) averages the statistics per unit of weight, so there the
        pseudo-counts weigh as much as the whole stream; pass `alpha / n` for the prior of a fit on $n$ samples.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import families, mixture
        >>> x = jnp.array([[4, 0, 1], [4, 1, 0], [0, 5, 0], [1, 4, 0]])  # word counts of 4 documents
        >>> model, _ = mixture.fit(x, 2, key=jax.random.key(0), family=families.categorical(alpha=0.0))
        >>> [round(p, 2) for p in sorted(model.probs[:, 0].tolist())]  # 1/10 and 8/10
        [0.1, 0.8]
    """
    check_number(alpha, "alpha")
    if sizes is not None:
        if isinstance(sizes, (int, np.integer)) or not all(isinstance(s, (int, np.integer)) for s in sizes):
            raise TypeError(f"`sizes` must be a sequence of integers, got {sizes!r}")
        sizes = tuple(check_int(s, "sizes", minimum=1) for s in sizes)
        if not sizes:
            raise ValueError("`sizes` must not be empty")
    n_trials = check_int(n_trials, "n_trials", minimum=1)
    return Categorical(alpha, sizes, n_trials)


def make_params(probs: ArrayLike, sizes: Sequence[int] | None = None) -> CategoricalParams:
    """[CategoricalParams][jaxprob.families.categorical.CategoricalParams] from `(K, V)` probabilities whose
    blocks sum to one, checked eagerly (same as `categorical(sizes=sizes).make_params`).

    Args:
        probs: `(K, V)` positive probabilities.
        sizes: optional block sizes.

    Returns:
        The component parameters.

    Examples:
        >>> from jaxprob.families.categorical import make_params
        >>> make_params([[0.5, 0.25, 0.25]]).probs.shape
        (1, 3)
    """
    return categorical(sizes=sizes).make_params(probs)


def one_hot_features(x: ArrayLike, n_categories: Sequence[int] | None = None) -> tuple[jax.Array, tuple[int, ...]]:
    """Integer categorical features as one-hot columns, with the block sizes for
    [categorical][jaxprob.families.categorical.categorical].

    Args:
        x: `(n, F)` non-negative integer codes (feature $f$ takes values in `[0, n_categories[f])`).
        n_categories: optional sequence of $F$ category counts (default: one more than each column's maximum).

    Returns:
        `(onehot, sizes)`: an `(n, sum(sizes))` float array (default float dtype) and the tuple of sizes.

    Examples:
        >>> import numpy as np
        >>> from jaxprob.families.categorical import one_hot_features
        >>> onehot, sizes = one_hot_features(np.array([[0, 2], [1, 0]]))
        >>> onehot.tolist(), sizes
        ([[1.0, 0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0, 0.0]], (2, 3))
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"`x` must have 2 dimension(s), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"`x` must hold integer category codes, got {x.dtype}")
    if np.any(x < 0):
        raise ValueError("`x` must hold non-negative category codes")
    if n_categories is None:
        sizes = tuple(int(m) + 1 for m in x.max(axis=0))
    else:
        sizes = tuple(check_int(c, "n_categories", minimum=1) for c in n_categories)
        if len(sizes) != x.shape[1]:
            raise ValueError(f"`n_categories` has {len(sizes)} entries but `x` has {x.shape[1]} columns")
        too_big = x >= np.asarray(sizes)[None, :]
        if np.any(too_big):
            f = int(np.argmax(np.any(too_big, axis=0)))
            raise ValueError(f"column {f} of `x` holds code {int(x[:, f].max())} but n_categories[{f}] = {sizes[f]}")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.zeros((x.shape[0], sum(sizes)), default_float())
    out[np.arange(x.shape[0])[:, None], offsets[None, :] + x] = 1.0
    return jnp.asarray(out), sizes
