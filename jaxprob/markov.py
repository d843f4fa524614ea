r"""Markov chains on integer-coded sequences: counting, order-k models with smoothing, generation.

Sequences are integer arrays padded into a batch `(B, T)` with their `lengths` `(B,)`: positions at or after
a sequence's length are ignored, so variable-length sequences share one compiled program
([pad_sequences][jaxprob.markov.pad_sequences] builds the batch from a list).

**Order-1 counts** ([count_transitions][jaxprob.markov.count_transitions]) are one `jax.ops.segment_sum` of
the pair indices $s_{t-1} S + s_t$ over the valid positions; the maximum-likelihood transition matrix is
$P_{ij} = N_{ij} / \sum_j N_{ij}$. A state outside $[0, S)$ raises an error on concrete input; under `jit` the
transitions that touch it are not counted and their number is returned as data (`return_info=True`) and
reported by `jax.experimental.checkify` when the call is checkified.

**Order-k chains** ([fit][jaxprob.markov.fit]) keep, for every order $\ell = 0, \dots, k$, the contexts of
length $\ell$ that occur in the data and, per context, its successors with their counts (a CSR table). The
contexts form a suffix tree: a context of length $\ell$ is stored as the row of its suffix of length
$\ell - 1$ (its *parent*) and its oldest state, and the children of a row are sorted by state. A context is
found by $k$ binary searches, with int32 indices only: no context is ever encoded as one base-$S$ number, so
no order overflows, with or without x64. A vocabulary of 10,000 words at order 3 stores one row per distinct
word triple seen, never $S^3$ numbers. The tables are built eagerly with NumPy (their size depends on the
data); every lookup runs under `jit`.

**Smoothing.** Every method writes the probability of $s$ after a context $c$ of length $\ell$ as a
discounted part plus a weight times a lower-order distribution,

$$
p(s \mid c) = \frac{\tilde N_{c,s}}{Z_c} + \lambda_c \, q(s \mid c).
$$

* *Additive* (`smoothing=α`, a number): $\tilde N_{c,s} = N_{c,s}$, $Z_c = N_c + \alpha S$,
  $\lambda_c = \alpha S / Z_c$ and $q = 1/S$, that is $p(s \mid c) = (N_{c,s} + \alpha)/(N_c + \alpha S)$.
  At a context never seen in training the model *backs off* to the longest suffix that was seen (down to the
  unigram table of order 0, always defined).
* *Interpolated Kneser–Ney* (`smoothing="kneser-ney"`; Kneser and Ney, 1995; Chen and Goodman, 1998):
  $\tilde N_{c,s} = \max(N_{c,s} - D_\ell, 0)$, $Z_c = \sum_s N_{c,s}$,
  $\lambda_c = D_\ell \, N_{1+}(c\,\cdot) / Z_c$ with $N_{1+}(c\,\cdot)$ the number of distinct successors
  of $c$, and $q(s \mid c) = p(s \mid c')$ the same formula one order lower at the suffix $c'$ of $c$ (the
  context without its oldest state), down to order 0, whose $q$ is uniform, $1/S$. At the model's own order
  $N$ are the counts; at every lower order they are *continuation counts*: $N_{c',s}$ is the number of
  distinct states $v$ seen just before $c'\,s$ (a sequence start counts as one more such $v$, so that an
  n-gram seen only at the start of sequences keeps its mass). The discount of each order is
  $D_\ell = n_1 / (n_1 + 2 n_2)$, with $n_j$ the number of (context, successor) pairs of that order whose
  count is $j$ (0.5 when $n_1 = 0$), unless `discount` is given. At a context seen only up to order $L$ the
  recursion starts at order $L$ (the weight of the unseen orders is one).
* *Modified Kneser–Ney* (`smoothing="modified-kneser-ney"`; Chen and Goodman, 1998): the same with three
  discounts, $D_1$ for pairs counted once, $D_2$ twice and $D_{3+}$ three times or more,
  $Y = n_1/(n_1 + 2n_2)$, $D_1 = 1 - 2Y n_2/n_1$, $D_2 = 2 - 3Y n_3/n_2$, $D_{3+} = 3 - 4Y n_4/n_3$
  (the Kneser–Ney discount for all three when some $n_j$, $j \le 4$, is zero or some $D_j$ falls outside
  $(0, j]$, as happens on small data),
  and $\lambda_c = (D_1 N_1(c\,\cdot) + D_2 N_2(c\,\cdot) + D_{3+} N_{3+}(c\,\cdot))/Z_c$.

Every conditional distribution sums to one over the $S$ states. Kneser–Ney gives every state a positive
probability; additive smoothing with `smoothing=0` gives an unseen successor of a seen context probability 0
(log-probability `-inf`), never NaN.

**Likelihood.** [log_likelihood][jaxprob.markov.log_likelihood] sums $\log p(s_t \mid s_{t-k:t})$ over
$t = k, \dots, L-1$ (conditioned on the first $k$ states); [perplexity][jaxprob.markov.perplexity] is
$\exp(-\sum \log p / \#\text{transitions})$.

**Generation** ([generate][jaxprob.markov.generate]) is a `lax.scan`: greedy (argmax, deterministic; ties go
to the smallest state) or sampled from $p(s\mid c)^{1/\tau}$ at temperature $\tau$.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from jax.typing import ArrayLike

from jaxprob._validation import as_float_array, check_finite, check_int, check_key, is_tracer

__all__ = [
    "MarkovChain",
    "Generation",
    "CountInfo",
    "METHODS",
    "pad_sequences",
    "count_transitions",
    "count_initial",
    "fit",
    "next_state_probs",
    "transition_matrix",
    "initial_distribution",
    "log_likelihood",
    "perplexity",
    "stationary_distribution",
    "generate",
]

#: Smoothing methods: `"additive"` (a number passed as `smoothing`), `"kneser-ney"`, `"modified-kneser-ney"`.
METHODS = ("additive", "kneser-ney", "modified-kneser-ney")
"""Smoothing methods of Markov chains."""


class MarkovChain(eqx.Module):
    r"""A fitted order-k Markov chain with the tables of every lower order (a pytree).

    Order $\ell \in \{0,\dots,k\}$ (context length $\ell$) owns the rows `level_offsets[l]:level_offsets[l+1]`
    of the context table; row 0 is the empty context. Row `r` owns the successors `row_ptr[r]:row_ptr[r+1]`
    and its children (contexts one state longer, sorted by their oldest state) are the rows
    `child_ptr[r]:child_ptr[r+1]`. The probability of successor `next_states[j]` of row `r` is
    `pair_probs[j] + backoff[r] * q`, with `q` the lower-order (Kneser–Ney) or uniform (additive) probability.

    Attributes:
        child_ptr: `(C + 1,)` int32 offsets of each row's children.
        context_state: `(C,)` int32 oldest state of each row's context (0 for the empty context).
        context_counts: `(C,)` number of transitions out of each context in the data.
        row_ptr: `(C + 1,)` int32 offsets of each row's successors.
        next_states: `(P,)` int32 successors, sorted within each row.
        pair_counts: `(P,)` counts of (context, successor) pairs in the data.
        pair_probs: `(P,)` discounted part $\tilde N_{c,s} / Z_c$ of each pair's probability.
        backoff: `(C,)` weight $\lambda_c$ of the lower-order distribution.
        initial_counts: `(S,)` counts of the first state of each sequence.
        smoothing: scalar additive smoothing $\alpha$ (0 for Kneser–Ney).
        discounts: `(k + 1, 3)` discounts $(D_1, D_2, D_{3+})$ of each order (all equal for Kneser–Ney,
            zero for additive smoothing).
        n_states: static, $S$.
        order: static, $k$.
        method: static, one of `METHODS`: "additive", "kneser-ney", "modified-kneser-ney".
        level_offsets: static tuple of `k + 2` row offsets.
        max_row: static tuple, per order, of the largest number of successors of a context.
        max_children: static tuple, per order `0..k-1`, of the largest number of children of a context.
    """

    child_ptr: jax.Array
    context_state: jax.Array
    context_counts: jax.Array
    row_ptr: jax.Array
    next_states: jax.Array
    pair_counts: jax.Array
    pair_probs: jax.Array
    backoff: jax.Array
    initial_counts: jax.Array
    smoothing: jax.Array
    discounts: jax.Array
    n_states: int = eqx.field(static=True)
    order: int = eqx.field(static=True)
    method: str = eqx.field(static=True)
    level_offsets: tuple = eqx.field(static=True)
    max_row: tuple = eqx.field(static=True)
    max_children: tuple = eqx.field(static=True)

    @property
    def n_contexts(self) -> int:
        """Number of stored contexts at the model's own order."""
        return self.level_offsets[-1] - self.level_offsets[-2]


class Generation(NamedTuple):
    """Output of [generate][jaxprob.markov.generate].

    Attributes:
        states: `(n_steps,)` generated states (after `stop_state` is emitted, the rest repeat it).
        length: number of states generated up to and including the first `stop_state` (`n_steps` if none).
        orders: `(n_steps,)` the longest context length found in the tables at each step (below the model's
            order where the full context was never seen in training).
    """

    states: jax.Array
    length: jax.Array
    orders: jax.Array


class CountInfo(NamedTuple):
    """Diagnostics of [count_transitions][jaxprob.markov.count_transitions] (`return_info=True`).

    Attributes:
        n_counted: int32 scalar, transitions counted.
        n_rejected: int32 scalar, transitions within the lengths that were not counted because one of their
            two states lies outside `[0, n_states)` (possible only under `jit`: concrete input raises).
    """

    n_counted: jax.Array
    n_rejected: jax.Array


# ----------------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------------
def pad_sequences(sequences: Sequence[ArrayLike], *, pad_value: int = 0) -> tuple[jax.Array, jax.Array]:
    """Pad a list of 1-D integer sequences into a batch.

    Args:
        sequences: a non-empty list of 1-D integer sequences (lists or arrays), possibly of length zero.
        pad_value: value written after each sequence's end (ignored by every function here).

    Returns:
        `(batch, lengths)`: `(B, T)` int32 with `T` the longest length (at least 1), and `(B,)` int32.

    Examples:
        >>> from jaxprob import markov
        >>> batch, lengths = markov.pad_sequences([[0, 1, 2], [2]])
        >>> batch.tolist(), lengths.tolist()
        ([[0, 1, 2], [2, 0, 0]], [3, 1])
    """
    if isinstance(sequences, (np.ndarray, jax.Array)) or not hasattr(sequences, "__len__"):
        raise TypeError("`sequences` must be a list of 1-D integer sequences")
    if len(sequences) == 0:
        raise ValueError("`sequences` must hold at least one sequence")
    check_int(pad_value, "pad_value")
    arrays = []
    for i, s in enumerate(sequences):
        a = np.asarray(s)
        if a.size == 0:
            a = a.reshape(0).astype(np.int32)
        if a.ndim != 1:
            raise ValueError(f"`sequences[{i}]` must be 1-D, got shape {a.shape}")
        if not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
            raise TypeError(f"`sequences[{i}]` must hold integers, got {a.dtype}")
        arrays.append(a)
    lengths = np.array([a.shape[0] for a in arrays], np.int32)
    batch = np.full((len(arrays), max(1, int(lengths.max()))), pad_value, np.int32)
    for i, a in enumerate(arrays):
        batch[i, : a.shape[0]] = a
    return jnp.asarray(batch), jnp.asarray(lengths)


def _check_n_states(n_states):
    return check_int(n_states, "n_states", minimum=1)


def _check_sequences(sequences, lengths, n_states):
    """Return (int32 (B, T) sequences, int32 (B,) lengths) after the eager checks."""
    if is_tracer(sequences) or isinstance(sequences, jax.Array):
        seq = sequences
    else:
        try:
            seq = np.asarray(sequences)
        except ValueError as err:  # ragged nested lists
            raise ValueError("`sequences` must be a (B, T) array; pad variable-length sequences with "
                             "markov.pad_sequences") from err
    if not jnp.issubdtype(seq.dtype, jnp.integer):
        raise TypeError(f"`sequences` must have an integer dtype, got {seq.dtype}")
    if seq.ndim == 1:
        seq = seq[None, :]
    if seq.ndim != 2:
        raise ValueError(f"`sequences` must have shape (B, T) or (T,), got {tuple(seq.shape)}")
    b, t = seq.shape
    if b < 1:
        raise ValueError("`sequences` must hold at least one sequence")
    if lengths is None:
        lens = jnp.full((b,), t, jnp.int32)
    else:
        lens = lengths if (is_tracer(lengths) or isinstance(lengths, jax.Array)) else np.asarray(lengths)
        if not jnp.issubdtype(lens.dtype, jnp.integer):
            raise TypeError(f"`lengths` must have an integer dtype, got {lens.dtype}")
        if lens.shape != (b,):
            raise ValueError(f"`lengths` must have shape ({b},) to match `sequences`, "
                             f"got {tuple(lens.shape)}")
        if not is_tracer(lens):
            arr = np.asarray(lens)
            if np.any(arr < 0):
                raise ValueError(f"`lengths` must be non-negative, got {int(arr.min())}")
            if np.any(arr > t):
                raise ValueError(f"`lengths` must be at most T={t} (the padded width), got {int(arr.max())}")
    if not is_tracer(seq) and not is_tracer(lens):
        s = np.asarray(seq)
        valid = np.arange(t)[None, :] < np.asarray(lens)[:, None]
        bad = valid & ((s < 0) | (s >= n_states))
        if np.any(bad):
            i, j = np.argwhere(bad)[0]
            raise ValueError(
                f"`sequences` holds state {int(s[i, j])} at [{i}, {j}], outside [0, n_states={n_states})"
            )
    return jnp.asarray(seq, jnp.int32), jnp.asarray(lens, jnp.int32)


# ----------------------------------------------------------------------------------------------------------
# dense order-1 counting
# ----------------------------------------------------------------------------------------------------------
@jax.jit(static_argnames=("n_states",))
def _count_transitions_jit(seq, lengths, n_states):
    t = seq.shape[1]
    pos = jnp.arange(1, t)
    within = pos[None, :] < lengths[:, None]
    in_range = (seq >= 0) & (seq < n_states)
    ok = within & in_range[:, :-1] & in_range[:, 1:]
    # an out-of-range state would alias another pair's index s * S + s': such pairs are masked, not counted
    pair = jnp.where(ok, seq[:, :-1] * n_states + seq[:, 1:], 0)
    counts = jax.ops.segment_sum(ok.astype(jnp.int32).ravel(), pair.ravel(), num_segments=n_states * n_states,
                                 indices_are_sorted=False).reshape(n_states, n_states)
    n_rejected = jnp.sum(within & ~ok, dtype=jnp.int32)
    checkify.debug_check(n_rejected == 0, "markov.count_transitions: {n} transition(s) with a state outside "
                         "[0, n_states) were not counted", n=n_rejected)
    return counts, CountInfo(jnp.sum(ok, dtype=jnp.int32), n_rejected)


def count_transitions(sequences: ArrayLike, lengths: ArrayLike, n_states: int, *,
                      return_info: bool = False) -> jax.Array | tuple[jax.Array, CountInfo]:
    r"""Order-1 transition counts $N_{ij} = \#\{t : s_{t-1} = i, s_t = j\}$ of a padded batch.

    One `segment_sum` of the pair indices $iS + j$ over the valid positions; the compiled program depends only
    on `(B, T)` and `n_states`.

    **Invalid states.** On concrete input a state outside `[0, n_states)` within the lengths raises a
    `ValueError` naming `sequences`. Under `jit` (values unknown when checked) a transition with such a state
    is never counted; `return_info=True` returns how many were rejected, and under
    `jax.experimental.checkify.checkify` the call reports them as a failed check.

    Args:
        sequences: `(B, T)` (or `(T,)`) integer states in `[0, n_states)` (checked on valid positions).
        lengths: `(B,)` valid lengths in `[0, T]`, or `None` for full rows.
        n_states: $S$ (dense output; at most 46,340 so that $S^2$ fits int32 -- use
            [fit][jaxprob.markov.fit] for large vocabularies).
        return_info: also return a [CountInfo][jaxprob.markov.CountInfo].

    Returns:
        `(S, S)` int32 counts (and the [CountInfo][jaxprob.markov.CountInfo] when `return_info`).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import markov
        >>> markov.count_transitions(jnp.array([[0, 1, 1, 0], [1, 0, 9, 9]]), jnp.array([4, 2]), 2).tolist()
        [[0, 1], [2, 1]]
        >>> counts, info = jax.jit(lambda s: markov.count_transitions(s, None, 2, return_info=True))(
        ...     jnp.array([0, 1, 5, 1]))
        >>> counts.tolist(), int(info.n_rejected)
        ([[0, 1], [0, 0]], 2)
    """
    n_states = _check_n_states(n_states)
    if n_states > 46340:
        raise ValueError(f"`n_states`={n_states} is too large for a dense count matrix; use markov.fit")
    if not isinstance(return_info, bool):
        raise TypeError(f"`return_info` must be a bool, got {type(return_info).__name__}")
    seq, lens = _check_sequences(sequences, lengths, n_states)
    if seq.shape[1] < 2:
        zero = jnp.zeros((), jnp.int32)
        counts, info = jnp.zeros((n_states, n_states), jnp.int32), CountInfo(zero, zero)
    else:
        counts, info = _count_transitions_jit(seq, lens, n_states)
    return (counts, info) if return_info else counts


@jax.jit(static_argnames=("n_states",))
def _count_initial_jit(seq, lengths, n_states):
    first = seq[:, 0]
    ok = (lengths > 0) & (first >= 0) & (first < n_states)
    return jax.ops.segment_sum(ok.astype(jnp.int32), jnp.where(ok, first, 0), num_segments=n_states)


def count_initial(sequences: ArrayLike, lengths: ArrayLike, n_states: int) -> jax.Array:
    """Counts of the first state of each non-empty sequence.

    Under `jit` a first state outside `[0, n_states)` is not counted (concrete input raises).

    Args:
        sequences: `(B, T)` integer states.
        lengths: `(B,)` valid lengths, or `None`.
        n_states: $S$.

    Returns:
        `(S,)` int32 counts.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> markov.count_initial(jnp.array([[1, 0], [1, 1], [0, 0]]), jnp.array([2, 1, 0]), 3).tolist()
        [0, 2, 0]
    """
    n_states = _check_n_states(n_states)
    seq, lens = _check_sequences(sequences, lengths, n_states)
    return _count_initial_jit(seq, lens, n_states)


# ----------------------------------------------------------------------------------------------------------
# order-k fitting (sparse, eager NumPy: the table sizes depend on the data)
# ----------------------------------------------------------------------------------------------------------
def _check_smoothing(smoothing):
    """Return (method, alpha)."""
    if isinstance(smoothing, str):
        if smoothing not in METHODS[1:]:
            raise ValueError(f"`smoothing` must be a number >= 0 (additive) or one of {list(METHODS[1:])}, "
                             f"got {smoothing!r}")
        return smoothing, 0.0
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float, np.integer, np.floating)):
        raise TypeError(f"`smoothing` must be a number or a method name, got {type(smoothing).__name__}")
    if not (math.isfinite(smoothing) and smoothing >= 0):
        raise ValueError(f"`smoothing` must be finite and >= 0, got {smoothing}")
    return "additive", float(smoothing)


def _check_discount(discount, method):
    if discount is None:
        return None
    if method == "additive":
        raise ValueError("`discount` applies to Kneser-Ney smoothing only; pass smoothing='kneser-ney'")
    if method == "kneser-ney":
        if isinstance(discount, bool) or not isinstance(discount, (int, float, np.integer, np.floating)):
            raise TypeError(f"`discount` must be a number in (0, 1], got {type(discount).__name__}")
        if not (0 < discount <= 1):
            raise ValueError(f"`discount` must lie in (0, 1], got {discount}")
        return (float(discount),) * 3
    try:
        d = tuple(float(v) for v in discount)
    except TypeError as err:
        raise TypeError("`discount` must be a triple (D1, D2, D3+) for modified Kneser-Ney") from err
    if len(d) != 3 or not (0 < d[0] <= 1 and 0 < d[1] <= 2 and 0 < d[2] <= 3):
        raise ValueError(f"`discount` must be (D1, D2, D3+) with 0 < D1 <= 1, 0 < D2 <= 2, 0 < D3+ <= 3, "
                         f"got {discount}")
    return d


def _estimate_discounts(counts, method):
    """(D1, D2, D3+) from the count-of-counts of one order (Chen and Goodman, 1998)."""
    n = [int(np.sum(counts == j)) for j in (1, 2, 3, 4)]
    d = n[0] / (n[0] + 2 * n[1]) if n[0] > 0 else 0.5
    if method == "kneser-ney" or min(n) == 0:
        return (d, d, d)
    est = (1 - 2 * d * n[1] / n[0], 2 - 3 * d * n[2] / n[1], 3 - 4 * d * n[3] / n[2])
    if not all(0 < e <= j for j, e in enumerate(est, start=1)):
        return (d, d, d)  # small data: an estimate out of range would zero or overdraw some mass
    return tuple(float(e) for e in est)


def fit(sequences: ArrayLike, lengths: ArrayLike, n_states: int, *, order: int = 1, smoothing: float | str = 1.0,
        discount: float | Sequence[float] | None = None) -> MarkovChain:
    r"""Estimate an order-k chain (with its lower orders) by counting.

    Sequences of length at most `order` contribute no order-k transition (they still count for the lower
    orders and the initial distribution); empty sequences (length 0) contribute nothing. For text,
    `smoothing="kneser-ney"` (or `"modified-kneser-ney"`) gives much lower held-out perplexity than additive
    smoothing at orders 2 and above (see the module docstring for the formulas).

    Args:
        sequences: `(B, T)` (or `(T,)`) integer states in `[0, n_states)`.
        lengths: `(B,)` valid lengths in `[0, T]`, or `None` for full rows.
        n_states: $S$.
        order: $k \ge 0$ (0 is the unigram model).
        smoothing: additive smoothing $\alpha \ge 0$ (1 is Laplace smoothing), or `"kneser-ney"` or
            `"modified-kneser-ney"`.
        discount: Kneser–Ney discount in $(0, 1]$ for every order, or $(D_1, D_2, D_{3+})$ for modified
            Kneser–Ney; `None` estimates them per order from the counts.

    Returns:
        A [MarkovChain][jaxprob.markov.MarkovChain].

    Raises:
        ValueError: bad states or lengths, no sequence longer than `order`, or a bad smoothing or discount.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1, 0, 1, 1]]), None, 2, smoothing=0.0)
        >>> markov.transition_matrix(m).tolist()
        [[0.0, 1.0], [0.5, 0.5]]
        >>> kn = markov.fit(jnp.array([[0, 1, 2, 0, 1, 1, 2]]), None, 3, order=2, smoothing="kneser-ney")
        >>> round(float(markov.next_state_probs(kn, jnp.array([0, 1])).sum()), 6)
        1.0
    """
    n_states = _check_n_states(n_states)
    order = check_int(order, "order", minimum=0)
    method, alpha = _check_smoothing(smoothing)
    discounts_given = _check_discount(discount, method)
    seq, lens = _check_sequences(sequences, lengths, n_states)
    if is_tracer(seq) or is_tracer(lens):
        raise TypeError("markov.fit needs concrete `sequences` and `lengths` "
                        "(the table sizes depend on the data)")
    lens_np = np.asarray(lens).astype(np.int64)
    if not np.any(lens_np > order):
        raise ValueError(
            f"no sequence is longer than order={order} (longest has length {int(lens_np.max())}): "
            "there is no transition to count"
        )
    s_np = np.asarray(seq).astype(np.int64)
    b, t = s_np.shape
    pos = np.arange(t)[None, :]
    within = pos < lens_np[:, None]
    big = np.int64(n_states)

    row_of = np.zeros((b, t), np.int64)  # global row of the context of each position at the current order
    offsets = [0, 1]
    ctx_parent, ctx_state = [np.array([-1], np.int64)], [np.array([0], np.int64)]
    next_states, pair_counts, used_counts, pair_rows = [], [], [], []
    max_row, discounts = [], []
    for level in range(order + 1):
        valid = within & (pos >= level)
        if level > 0:
            oldest = np.zeros((b, t), np.int64)
            oldest[:, level:] = s_np[:, :-level]
            # a context of length `level` = (its suffix's row at order level-1, its oldest state)
            key = row_of[valid] * big + oldest[valid]
            uniq, inv = np.unique(key, return_inverse=True)
            row_of = np.zeros((b, t), np.int64)
            row_of[valid] = offsets[-1] + inv
            ctx_parent.append(uniq // big)
            ctx_state.append(uniq % big)
            offsets.append(offsets[-1] + uniq.shape[0])
        first_row = offsets[level]
        local = row_of[valid] - first_row
        uniq_pair, pair_inv, counts = np.unique(local * big + s_np[valid], return_inverse=True,
                                                return_counts=True)
        rows = uniq_pair // big
        if method != "additive" and level < order:
            # continuation count: distinct states just before the (context, successor) pair, a sequence
            # start counting as one more (id S)
            left = np.full((b, t), big, np.int64)
            if level + 1 < t:
                left[:, level + 1 :] = s_np[:, : t - level - 1]
            ext = np.unique(pair_inv.astype(np.int64) * (big + 1) + left[valid])
            used = np.bincount(ext // (big + 1), minlength=uniq_pair.shape[0]).astype(np.int64)
        else:
            used = counts.astype(np.int64)
        next_states.append(uniq_pair % big)
        pair_counts.append(counts)
        used_counts.append(used)
        pair_rows.append(first_row + rows)
        n_rows = offsets[level + 1] - offsets[level]
        max_row.append(int(np.bincount(rows, minlength=n_rows).max()))
        if method == "additive":
            discounts.append((0.0, 0.0, 0.0))
        else:
            discounts.append(discounts_given or _estimate_discounts(used, method))

    n_ctx = offsets[-1]
    rows_all = np.concatenate(pair_rows)
    nxt_all = np.concatenate(next_states)
    cnt_all = np.concatenate(pair_counts).astype(np.float64)
    used_all = np.concatenate(used_counts).astype(np.float64)
    per_row = np.bincount(rows_all, minlength=n_ctx)
    row_ptr = np.concatenate([[0], np.cumsum(per_row)])
    ctx_counts = np.bincount(rows_all, weights=cnt_all, minlength=n_ctx)
    if method == "additive":
        denom = ctx_counts + alpha * n_states
        pair_probs = cnt_all / denom[rows_all]
        backoff = alpha * n_states / denom
    else:
        d = np.asarray(discounts)  # (k + 1, 3)
        level_of_pair = np.concatenate([np.full(p.shape[0], lv) for lv, p in enumerate(pair_rows)])
        which = np.minimum(used_all, 3).astype(np.int64) - 1
        dpair = d[level_of_pair, which]
        denom = np.bincount(rows_all, weights=used_all, minlength=n_ctx)
        pair_probs = np.maximum(used_all - dpair, 0.0) / denom[rows_all]
        backoff = np.bincount(rows_all, weights=np.minimum(dpair, used_all), minlength=n_ctx) / denom

    parents = np.concatenate(ctx_parent)
    child_ptr = np.full(n_ctx + 1, n_ctx, np.int64)
    max_children = []
    for level in range(order):
        lo, hi = offsets[level], offsets[level + 1]
        kids = parents[offsets[level + 1] : offsets[level + 2]]
        child_ptr[lo:hi] = offsets[level + 1] + np.searchsorted(kids, np.arange(lo, hi), side="left")
        max_children.append(int(np.bincount(kids - lo, minlength=hi - lo).max()))
    if order > 0:
        child_ptr[offsets[order] :] = n_ctx  # the model's own order has no children
    fdtype = jnp.zeros(()).dtype
    if max(row_ptr[-1], n_ctx) >= 2**31:
        raise ValueError("the count tables exceed 2**31 entries; use fewer or shorter sequences")
    return MarkovChain(
        child_ptr=jnp.asarray(child_ptr, jnp.int32),
        context_state=jnp.asarray(np.concatenate(ctx_state), jnp.int32),
        context_counts=jnp.asarray(ctx_counts, fdtype),
        row_ptr=jnp.asarray(row_ptr, jnp.int32),
        next_states=jnp.asarray(nxt_all, jnp.int32),
        pair_counts=jnp.asarray(cnt_all, fdtype),
        pair_probs=jnp.asarray(pair_probs, fdtype),
        backoff=jnp.asarray(backoff, fdtype),
        initial_counts=count_initial(seq, lens, n_states).astype(fdtype),
        smoothing=jnp.asarray(alpha, fdtype),
        discounts=jnp.asarray(np.asarray(discounts, np.float64), fdtype),
        n_states=n_states,
        order=order,
        method=method,
        level_offsets=tuple(int(o) for o in offsets),
        max_row=tuple(max_row),
        max_children=tuple(max_children),
    )


# ----------------------------------------------------------------------------------------------------------
# lookups (inside jit)
# ----------------------------------------------------------------------------------------------------------
def _n_iter(width: int) -> int:
    return max(1, int(width).bit_length() + 1)


def _search(values, lo, hi, target, n_iter: int):
    """Position of `target` in the sorted slice `values[lo:hi]` and whether it is there (binary search)."""
    last = values.shape[0] - 1

    def body(_, lh):
        lo, hi = lh
        mid = (lo + hi) // 2
        less = values[jnp.clip(mid, 0, last)] < target
        active = lo < hi
        return jnp.where(active & less, mid + 1, lo), jnp.where(active & ~less, mid, hi)

    lo, _ = jax.lax.fori_loop(0, n_iter, body, (lo, hi))
    loc = jnp.clip(lo, 0, last)
    return loc, (lo < hi) & (values[loc] == target)


def _find_rows(model: MarkovChain, context):
    """`(k + 1,)` rows of the suffixes of `context` of length 0..k and the longest length found."""
    k = model.order
    rows = [jnp.asarray(0, jnp.int32)]
    used = jnp.asarray(0, jnp.int32)
    found = jnp.asarray(True)
    for level in range(1, k + 1):
        parent = rows[-1]
        loc, ok = _search(model.context_state, model.child_ptr[parent], model.child_ptr[parent + 1],
                          context[k - level], _n_iter(model.max_children[level - 1]))
        found = found & ok
        rows.append(jnp.where(found, loc, parent).astype(jnp.int32))
        used = jnp.where(found, level, used)
    return jnp.stack(rows), used


def _active(model, level, used):
    # Kneser-Ney interpolates every order up to the longest context found; additive smoothing uses that
    # order alone
    return level <= used if model.method != "additive" else level == used


def _dense_probs(model: MarkovChain, rows, used):
    """`(S,)` distribution of the next state given the rows of `_find_rows`."""
    dtype = model.pair_probs.dtype
    uniform = jnp.full((model.n_states,), 1.0 / model.n_states, dtype)
    p = uniform
    for level in range(model.order + 1):
        row = rows[level]
        idx = model.row_ptr[row] + jnp.arange(model.max_row[level], dtype=jnp.int32)
        valid = idx < model.row_ptr[row + 1]
        nxt = model.next_states.at[idx].get(mode="fill", fill_value=0)
        pp = jnp.where(valid, model.pair_probs.at[idx].get(mode="fill", fill_value=0), 0.0)
        lower = p if model.method != "additive" else uniform
        new = (model.backoff[row] * lower).at[nxt].add(pp)
        p = jnp.where(_active(model, level, used), new, p)
    return p


def _log_prob(model: MarkovChain, context, state):
    """log p(state | context); -inf when a state lies outside [0, S) (possible only under jit)."""
    rows, used = _find_rows(model, context)
    dtype = model.pair_probs.dtype
    uniform = jnp.asarray(1.0 / model.n_states, dtype)
    p = uniform
    for level in range(model.order + 1):
        row = rows[level]
        loc, found = _search(model.next_states, model.row_ptr[row], model.row_ptr[row + 1], state,
                             _n_iter(model.max_row[level]))
        pp = jnp.where(found, model.pair_probs[loc], 0.0)
        lower = p if model.method != "additive" else uniform
        p = jnp.where(_active(model, level, used), pp + model.backoff[row] * lower, p)
    ok = (state >= 0) & (state < model.n_states) & jnp.all((context >= 0) & (context < model.n_states))
    return jnp.where(ok, jnp.log(p), -jnp.inf)


@jax.jit
def _probs_jit(model, context):
    rows, used = _find_rows(model, context)
    return _dense_probs(model, rows, used)


@jax.jit
def _transition_matrix_jit(model):
    return jax.vmap(lambda s: _dense_probs(model, *_find_rows(model, s[None])))(
        jnp.arange(model.n_states, dtype=jnp.int32))


def _check_model(model, name="model"):
    if not isinstance(model, MarkovChain):
        raise TypeError(f"`{name}` must be a MarkovChain (from jaxprob.markov.fit), "
                        f"got {type(model).__name__}")
    return model


def _check_context(context, model):
    ctx = context if (is_tracer(context) or isinstance(context, jax.Array)) else np.asarray(context)
    if ctx.size == 0:
        ctx = jnp.zeros((0,), jnp.int32)
    if not jnp.issubdtype(ctx.dtype, jnp.integer):
        raise TypeError(f"`context` must hold integer states, got {ctx.dtype}")
    if ctx.ndim == 0:
        ctx = ctx[None]
    if ctx.shape != (model.order,):
        raise ValueError(f"`context` must hold the last order={model.order} states, "
                         f"got shape {tuple(ctx.shape)}")
    if not is_tracer(ctx):
        arr = np.asarray(ctx)
        if np.any((arr < 0) | (arr >= model.n_states)):
            raise ValueError(f"`context` states must lie in [0, n_states={model.n_states}), "
                             f"got {arr.tolist()}")
    return jnp.asarray(ctx, jnp.int32)


def next_state_probs(model: MarkovChain, context: ArrayLike) -> jax.Array:
    """Distribution of the next state after `context` (backing off or interpolating as the method says).

    Args:
        model: a [MarkovChain][jaxprob.markov.MarkovChain].
        context: `(order,)` the last states, oldest first (a scalar for order 1).

    Returns:
        `(S,)` probabilities summing to one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1, 1, 2]]), None, 3, order=2, smoothing=0.0)
        >>> markov.next_state_probs(m, jnp.array([0, 1])).tolist()  # seen context (0, 1)
        [0.0, 1.0, 0.0]
        >>> markov.next_state_probs(m, jnp.array([2, 1])).tolist()  # unseen: backs off to (1,)
        [0.0, 0.5, 0.5]
    """
    _check_model(model)
    return _probs_jit(model, _check_context(context, model))


def transition_matrix(model: MarkovChain) -> jax.Array:
    """Dense `(S, S)` transition matrix of an order-1 chain (rows of unseen states back off to order 0).

    Args:
        model: an order-1 [MarkovChain][jaxprob.markov.MarkovChain].

    Returns:
        `(S, S)` row-stochastic matrix.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1, 1]]), None, 2, smoothing=1.0)
        >>> tuple(tuple(round(float(v), 4) for v in row) for row in markov.transition_matrix(m))
        ((0.3333, 0.6667), (0.3333, 0.6667))
    """
    _check_model(model)
    if model.order != 1:
        raise ValueError(f"transition_matrix needs an order-1 chain, got order {model.order}; "
                         "use next_state_probs for a given context")
    return _transition_matrix_jit(model)


def initial_distribution(model: MarkovChain) -> jax.Array:
    r"""Smoothed distribution of the first state, $(N^{(0)}_s + \alpha) / (\sum N^{(0)} + \alpha S)$.

    Kneser–Ney models have $\alpha = 0$ here (the maximum-likelihood distribution).

    Args:
        model: a [MarkovChain][jaxprob.markov.MarkovChain].

    Returns:
        `(S,)` probabilities (uniform if there is no count and no smoothing).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1], [0, 0]]), None, 2, smoothing=0.0)
        >>> markov.initial_distribution(m).tolist()
        [1.0, 0.0]
    """
    _check_model(model)
    c = model.initial_counts + model.smoothing
    total = jnp.sum(c)
    return jnp.where(total > 0, c / jnp.where(total > 0, total, 1.0), 1.0 / model.n_states)


# ----------------------------------------------------------------------------------------------------------
# likelihood
# ----------------------------------------------------------------------------------------------------------
def _windows(seq, level):
    """(B, T, level) the `level` states before each position (zeros where t < level)."""
    b, t = seq.shape
    if level == 0:
        return jnp.zeros((b, t, 0), seq.dtype)
    padded = jnp.concatenate([jnp.zeros((b, level), seq.dtype), seq], axis=1)
    return jnp.stack([padded[:, j : j + t] for j in range(level)], axis=-1)


@jax.jit
def _log_likelihood_jit(model, seq, lengths):
    b, t = seq.shape
    k = model.order
    win = _windows(seq, k)
    pos = jnp.arange(t)
    valid = (pos[None, :] >= k) & (pos[None, :] < lengths[:, None])
    lp = jax.vmap(lambda c, s: _log_prob(model, c, s))(win.reshape(b * t, k), seq.reshape(b * t))
    lp = jnp.where(valid, lp.reshape(b, t), 0.0)
    return jnp.sum(lp, axis=1), jnp.sum(valid, axis=1)


def log_likelihood(model: MarkovChain, sequences: ArrayLike, lengths: ArrayLike) -> jax.Array:
    r"""Per-sequence log-likelihood $\sum_{t=k}^{L-1} \log p(s_t \mid s_{t-k:t})$.

    Args:
        model: a [MarkovChain][jaxprob.markov.MarkovChain].
        sequences: `(B, T)` (or `(T,)`) integer states in `[0, n_states)` (concrete input is checked; under
            `jit` a transition touching a state outside the range gets log-probability `-inf`).
        lengths: `(B,)` valid lengths, or `None`.

    Returns:
        `(B,)` log-likelihoods (0 for sequences of length at most `order`; `-inf` for an unseen transition
        when additive `smoothing=0`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1, 0, 1, 1]]), None, 2, smoothing=0.0)
        >>> ll = markov.log_likelihood(m, jnp.array([[0, 1, 1], [1, 0, 0]]), None)
        >>> tuple(round(float(v), 4) for v in ll)
        (-0.6931, -inf)
    """
    _check_model(model)
    seq, lens = _check_sequences(sequences, lengths, model.n_states)
    return _log_likelihood_jit(model, seq, lens)[0]


def perplexity(model: MarkovChain, sequences: ArrayLike, lengths: ArrayLike) -> jax.Array:
    r"""Perplexity $\exp(-\sum \log p / \#\text{transitions})$ of held-out sequences.

    Args:
        model: a [MarkovChain][jaxprob.markov.MarkovChain].
        sequences: `(B, T)` integer states.
        lengths: `(B,)` valid lengths, or `None`.

    Returns:
        Scalar perplexity (`inf` if some transition has probability 0).

    Raises:
        ValueError: no sequence is longer than the model's order.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1, 0, 1, 1]]), None, 2, smoothing=0.0)
        >>> round(float(markov.perplexity(m, jnp.array([[0, 1, 1]]), None)), 4)  # probs 1 and 1/2
        1.4142
    """
    _check_model(model)
    seq, lens = _check_sequences(sequences, lengths, model.n_states)
    if not is_tracer(lens) and not np.any(np.asarray(lens) > model.order):
        raise ValueError(f"no sequence is longer than the model's order ({model.order}): "
                         "no transition to score")
    ll, n = _log_likelihood_jit(model, seq, lens)
    return jnp.exp(-jnp.sum(ll) / jnp.maximum(jnp.sum(n), 1))


# ----------------------------------------------------------------------------------------------------------
# stationary distribution
# ----------------------------------------------------------------------------------------------------------
@jax.jit
def _stationary_jit(p):
    s = p.shape[0]
    a = jnp.concatenate([p.T - jnp.eye(s, dtype=p.dtype), jnp.ones((1, s), p.dtype)], axis=0)
    b = jnp.zeros((s + 1,), p.dtype).at[-1].set(1.0)
    pi = jnp.linalg.lstsq(a, b)[0]
    pi = jnp.maximum(pi, 0.0)
    return pi / jnp.sum(pi)


def stationary_distribution(transition: ArrayLike) -> jax.Array:
    r"""Stationary distribution $\pi = \pi P$, $\sum_i \pi_i = 1$, of an order-1 chain.

    Solved as the least-squares solution of $[P^\top - I;\ \mathbf 1^\top]\,\pi = [0; 1]$ (unique when the
    chain is irreducible, e.g. with smoothing > 0).

    Args:
        transition: `(S, S)` row-stochastic matrix (e.g. [transition_matrix][jaxprob.markov.transition_matrix]).

    Returns:
        `(S,)` probabilities.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> pi = markov.stationary_distribution(jnp.array([[0.9, 0.1], [0.5, 0.5]]))
        >>> tuple(round(float(v), 4) for v in pi)
        (0.8333, 0.1667)
    """
    p = as_float_array(transition, "transition", 2)
    if p.shape[0] != p.shape[1] or p.shape[0] < 1:
        raise ValueError(f"`transition` must be a square (S, S) matrix, got {tuple(p.shape)}")
    if not is_tracer(p):
        check_finite(p, "transition")
        arr = np.asarray(p, np.float64)
        if np.any(arr < 0) or not np.allclose(arr.sum(axis=1), 1.0, atol=1e-4):
            raise ValueError("`transition` must be row-stochastic (non-negative rows summing to one)")
    return _stationary_jit(p)


# ----------------------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------------------
@jax.jit(static_argnames=("n_steps", "greedy"))
def _generate_jit(key, model, context, n_steps, greedy, temperature, stop_state, excluded):
    inv_t = 1.0 / temperature

    def step(carry, key_t):
        ctx, done = carry
        rows, used = _find_rows(model, ctx)
        p = jnp.where(excluded, 0.0, _dense_probs(model, rows, used))
        # every state of positive probability excluded: uniform over the states left
        p = jnp.where(jnp.sum(p) > 0, p, jnp.where(excluded, 0.0, 1.0))
        if greedy:
            choice = jnp.argmax(p)
        else:
            logits = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)) * inv_t, -jnp.inf)
            choice = jax.random.categorical(key_t, logits)
        choice = jnp.where(done, stop_state, choice).astype(jnp.int32)
        new_ctx = jnp.concatenate([ctx[1:], choice[None]]) if model.order > 0 else ctx
        return (new_ctx, done | (choice == stop_state)), (choice, used, done)

    keys = jax.random.split(key, n_steps)
    _, (states, levels, was_done) = jax.lax.scan(step, (context, jnp.asarray(False)), keys)
    length = jnp.sum(~was_done).astype(jnp.int32)
    return Generation(states, length, levels)


def generate(model: MarkovChain, context: ArrayLike, n_steps: int, *, key: jax.Array | None = None,
             greedy: bool = False, temperature: float = 1.0, stop_state: int | None = None,
             exclude: Sequence[int] | None = None) -> Generation:
    r"""Generate `n_steps` states after `context` with `lax.scan`.

    Greedy generation takes the most probable successor (deterministic; ties to the smallest state).
    Sampling draws from $p(s \mid c)^{1/\tau}$ renormalised (`temperature` $\tau$; lower is more
    conservative). The longest context found in the tables at each step is reported in `orders`. After
    `stop_state` is produced the remaining outputs repeat it. States in `exclude` (e.g. the unknown-word id of
    a text vocabulary) are never generated: their probability is set to zero and the rest renormalised.

    Args:
        model: a [MarkovChain][jaxprob.markov.MarkovChain].
        context: `(order,)` starting states, oldest first (a scalar start state for order 1).
        n_steps: number of states to generate.
        key: a JAX PRNG key, required unless `greedy`.
        greedy: argmax instead of sampling.
        temperature: $\tau > 0$ for sampling.
        stop_state: optional state that ends the generation (e.g. an end-of-sentence token).
        exclude: optional sequence of states never to generate (at least one state must remain).

    Returns:
        A [Generation][jaxprob.markov.Generation].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1, 2, 0, 1, 2, 0, 1]]), None, 3, smoothing=0.0)
        >>> markov.generate(m, 0, 5, greedy=True).states.tolist()
        [1, 2, 0, 1, 2]
        >>> g = markov.generate(m, 0, 5, key=jax.random.key(0), stop_state=0)
        >>> g.states.tolist(), int(g.length)
        ([1, 2, 0, 0, 0], 3)
        >>> # only 2 ever followed 1: with 2 excluded, the step after 1 is uniform over {0, 1} (argmax: 0)
        >>> markov.generate(m, 0, 4, greedy=True, exclude=[2]).states.tolist()
        [1, 0, 1, 0]
    """
    _check_model(model)
    ctx = _check_context(context, model)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    if not isinstance(greedy, bool):
        raise TypeError(f"`greedy` must be a bool, got {type(greedy).__name__}")
    if greedy:
        key = jax.random.key(0) if key is None else check_key(key)  # unused by the greedy path
    else:
        check_key(key)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)):
        if not is_tracer(temperature):
            raise TypeError(f"`temperature` must be a number, got {type(temperature).__name__}")
    elif not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"`temperature` must be positive and finite, got {temperature}")
    if stop_state is None:
        stop = -1
    else:
        stop = check_int(stop_state, "stop_state", minimum=0, maximum=model.n_states - 1)
    excluded = np.zeros(model.n_states, bool)
    if exclude is not None:
        ids = np.asarray(exclude).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"`exclude` must hold integer states, got {ids.dtype}")
        if np.any((ids < 0) | (ids >= model.n_states)):
            raise ValueError(f"`exclude` states must lie in [0, n_states={model.n_states}), got {ids.tolist()}")
        excluded[ids] = True
        if excluded.all():
            raise ValueError("`exclude` leaves no state to generate")
    dtype = model.pair_probs.dtype
    return _generate_jit(key, model, ctx, n_steps, greedy, jnp.asarray(temperature, dtype),
                         jnp.asarray(stop, jnp.int32), jnp.asarray(excluded))
