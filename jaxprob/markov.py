r"""Markov chains on integer-coded sequences: counting, order-k models with back-off, generation.

Sequences are integer arrays padded into a batch ``(B, T)`` with their ``lengths`` ``(B,)``: positions at or
after a sequence's length are ignored, so variable-length sequences share one compiled program
(:func:`pad_sequences` builds the batch from a list).

**Order-1 counts** (:func:`count_transitions`) are one ``jax.ops.segment_sum`` of the pair indices
:math:`s_{t-1} S + s_t` over the valid positions; the maximum-likelihood transition matrix is
:math:`P_{ij} = N_{ij} / \sum_j N_{ij}`.

**Order-k chains** (:func:`fit`): the context of position :math:`t` is the last :math:`k` states encoded as
one index :math:`c_t = \sum_{j=1}^{k} s_{t-j} S^{j-1}` (base :math:`S`). Only contexts that occur are stored:
the sorted unique context ids and, per context, the sorted successors with their counts (a CSR table). Unique
ids are found eagerly with NumPy (their number depends on the data); the counts are a jitted ``segment_sum``
whose shapes depend only on ``(B, T)``. A vocabulary of 10,000 words at order 2 thus stores at most one row
per distinct word pair seen, never :math:`S^3` numbers. The one-index encoding needs :math:`S^k` below the
integer range (:math:`2^{31}` without x64, :math:`2^{63}` with it).

**Smoothing.** With additive (Laplace) smoothing :math:`\alpha` and context counts :math:`N_c`,

.. math::

    p(s \mid c) = \frac{N_{c,s} + \alpha}{N_c + \alpha S}.

**Unseen contexts: back-off.** The model keeps the tables of every order :math:`0, 1, \dots, k`; at a context
never seen in training it uses the longest suffix of the context that was seen (down to the unigram
distribution of order 0, always defined). Every conditional distribution is normalised, so probabilities are
never NaN; with ``smoothing=0`` an unseen successor of a seen context has probability 0
(log-probability ``-inf``).

**Likelihood.** :func:`log_likelihood` sums :math:`\log p(s_t \mid s_{t-k:t})` over :math:`t = k, \dots, L-1`
(conditioned on the first :math:`k` states); :func:`perplexity` is
:math:`\exp(-\sum \log p / \#\text{transitions})`.

**Generation** (:func:`generate`) is a ``lax.scan``: greedy (argmax, deterministic; ties go to the smallest
state) or sampled from :math:`p(s\mid c)^{1/\tau}` at temperature :math:`\tau`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxprob._validation import check_int, check_key, is_tracer

__all__ = [
    "MarkovChain",
    "Generation",
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


class MarkovChain(eqx.Module):
    """A fitted order-k Markov chain with the tables of every lower order for back-off (a pytree).

    Level :math:`\\ell \\in \\{0,\\dots,k\\}` (context length :math:`\\ell`) owns the rows
    ``level_offsets[l]:level_offsets[l+1]`` of the context table. Row ``r`` owns the successors
    ``row_ptr[r]:row_ptr[r+1]``.

    Attributes:
        context_ids: ``(C,)`` sorted context ids within each level (base-``n_states`` encoding).
        context_counts: ``(C,)`` number of transitions out of each context.
        row_ptr: ``(C + 1,)`` offsets of each context's successors.
        next_states: ``(P,)`` successors, sorted within each row.
        pair_counts: ``(P,)`` counts of (context, successor) pairs.
        initial_counts: ``(S,)`` counts of the first state of each sequence.
        smoothing: scalar additive smoothing :math:`\\alpha`.
        n_states: static, :math:`S`.
        order: static, :math:`k`.
        level_offsets: static tuple of ``k + 2`` row offsets.
        max_row: static, the largest number of distinct successors of a context.
    """

    context_ids: jax.Array
    context_counts: jax.Array
    row_ptr: jax.Array
    next_states: jax.Array
    pair_counts: jax.Array
    initial_counts: jax.Array
    smoothing: jax.Array
    n_states: int = eqx.field(static=True)
    order: int = eqx.field(static=True)
    level_offsets: tuple = eqx.field(static=True)
    max_row: int = eqx.field(static=True)

    @property
    def n_contexts(self) -> int:
        """Number of stored contexts at the model's own order."""
        return self.level_offsets[-1] - self.level_offsets[-2]


class Generation(NamedTuple):
    """Output of :func:`generate`.

    Attributes:
        states: ``(n_steps,)`` generated states (after ``stop_state`` is emitted, the rest repeat it).
        length: number of states generated up to and including the first ``stop_state`` (``n_steps`` if none).
        orders: ``(n_steps,)`` the context length actually used at each step (below the model's order where
            the context was unseen and the model backed off).
    """

    states: jax.Array
    length: jax.Array
    orders: jax.Array


# ----------------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------------
def _id_dtype():
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def pad_sequences(sequences, *, pad_value: int = 0):
    """Pad a list of 1-D integer sequences into a batch.

    Args:
        sequences: a non-empty list of 1-D integer sequences (lists or arrays), possibly of length zero.
        pad_value: value written after each sequence's end (ignored by every function here).

    Returns:
        ``(batch, lengths)``: ``(B, T)`` int32 with ``T`` the longest length (at least 1), and ``(B,)`` int32.

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
    mask = pos[None, :] < lengths[:, None]
    pair = seq[:, :-1] * n_states + seq[:, 1:]
    pair = jnp.where(mask, pair, 0)
    return jax.ops.segment_sum(mask.astype(jnp.int32).ravel(), pair.ravel(), num_segments=n_states * n_states,
                               indices_are_sorted=False).reshape(n_states, n_states)


def count_transitions(sequences, lengths, n_states: int):
    r"""Order-1 transition counts :math:`N_{ij} = \#\{t : s_{t-1} = i, s_t = j\}` of a padded batch.

    One ``segment_sum`` of the pair indices :math:`iS + j` over the valid positions; the compiled program
    depends only on ``(B, T)`` and ``n_states``.

    Args:
        sequences: ``(B, T)`` (or ``(T,)``) integer states in ``[0, n_states)`` (checked on valid positions).
        lengths: ``(B,)`` valid lengths in ``[0, T]``, or ``None`` for full rows.
        n_states: :math:`S` (dense output; at most 46,340 so that :math:`S^2` fits int32 -- use :func:`fit`
            for large vocabularies).

    Returns:
        ``(S, S)`` int32 counts.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> markov.count_transitions(jnp.array([[0, 1, 1, 0], [1, 0, 9, 9]]), jnp.array([4, 2]), 2).tolist()
        [[0, 1], [2, 1]]
    """
    n_states = _check_n_states(n_states)
    if n_states > 46340:
        raise ValueError(f"`n_states`={n_states} is too large for a dense count matrix; use markov.fit")
    seq, lens = _check_sequences(sequences, lengths, n_states)
    if seq.shape[1] < 2:
        return jnp.zeros((n_states, n_states), jnp.int32)
    return _count_transitions_jit(seq, lens, n_states)


@jax.jit(static_argnames=("n_states",))
def _count_initial_jit(seq, lengths, n_states):
    return jax.ops.segment_sum((lengths > 0).astype(jnp.int32), seq[:, 0], num_segments=n_states)


def count_initial(sequences, lengths, n_states: int):
    """Counts of the first state of each non-empty sequence.

    Args:
        sequences: ``(B, T)`` integer states.
        lengths: ``(B,)`` valid lengths, or ``None``.
        n_states: :math:`S`.

    Returns:
        ``(S,)`` int32 counts.

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
# order-k fitting (sparse)
# ----------------------------------------------------------------------------------------------------------
def _encode(windows, n_states, dtype):
    """Context id of the last axis (oldest state most significant)."""
    ids = jnp.zeros(windows.shape[:-1], dtype)
    for j in range(windows.shape[-1]):
        ids = ids * n_states + windows[..., j].astype(dtype)
    return ids


def _windows(seq, level):
    """(B, T, level) the `level` states before each position (zeros where t < level)."""
    b, t = seq.shape
    if level == 0:
        return jnp.zeros((b, t, 0), seq.dtype)
    padded = jnp.concatenate([jnp.zeros((b, level), seq.dtype), seq], axis=1)
    return jnp.stack([padded[:, j : j + t] for j in range(level)], axis=-1)


@jax.jit(static_argnames=("level", "n_states"))
def _context_ids_jit(seq, lengths, level, n_states):
    t = seq.shape[1]
    pos = jnp.arange(t)
    valid = (pos[None, :] >= level) & (pos[None, :] < lengths[:, None])
    ids = _encode(_windows(seq, level), n_states, _id_dtype())
    return jnp.where(valid, ids, 0), valid


@jax.jit(static_argnames=("num_segments",))
def _segment_counts_jit(pair_index, valid, num_segments):
    return jax.ops.segment_sum(valid.astype(jnp.int32).ravel(), pair_index.ravel(), num_segments=num_segments)


def _check_smoothing(smoothing):
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float, np.integer, np.floating)):
        raise TypeError(f"`smoothing` must be a number, got {type(smoothing).__name__}")
    if not (math.isfinite(smoothing) and smoothing >= 0):
        raise ValueError(f"`smoothing` must be finite and >= 0, got {smoothing}")
    return float(smoothing)


def fit(sequences, lengths, n_states: int, *, order: int = 1, smoothing: float = 1.0) -> MarkovChain:
    r"""Estimate an order-k chain (with its lower orders for back-off) by counting.

    Sequences of length at most ``order`` contribute no order-k transition (they still count for the lower
    orders and the initial distribution); empty sequences (length 0) contribute nothing.

    Args:
        sequences: ``(B, T)`` (or ``(T,)``) integer states in ``[0, n_states)``.
        lengths: ``(B,)`` valid lengths in ``[0, T]``, or ``None`` for full rows.
        n_states: :math:`S`.
        order: :math:`k \ge 0` (0 is the unigram model).
        smoothing: additive smoothing :math:`\alpha \ge 0` (1 is Laplace smoothing).

    Returns:
        A :class:`MarkovChain`.

    Raises:
        ValueError: bad states or lengths, no sequence longer than ``order``, or :math:`S^k` beyond the
            integer range.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1, 0, 1, 1]]), None, 2, smoothing=0.0)
        >>> markov.transition_matrix(m).tolist()
        [[0.0, 1.0], [0.5, 0.5]]
    """
    n_states = _check_n_states(n_states)
    order = check_int(order, "order", minimum=0)
    smoothing = _check_smoothing(smoothing)
    seq, lens = _check_sequences(sequences, lengths, n_states)
    if is_tracer(seq) or is_tracer(lens):
        raise TypeError("markov.fit needs concrete `sequences` and `lengths` "
                        "(the table sizes depend on the data)")
    id_dtype = _id_dtype()
    if n_states**order > np.iinfo(np.dtype(id_dtype)).max:
        raise ValueError(
            f"contexts of order {order} over {n_states} states need ids up to {n_states}**{order}, beyond "
            f"{np.dtype(id_dtype).name}; enable x64 (`with jax.enable_x64(True):`) or use a smaller order"
        )
    lens_np = np.asarray(lens)
    if not np.any(lens_np > order):
        raise ValueError(
            f"no sequence is longer than order={order} (longest has length {int(lens_np.max())}): "
            "there is no transition to count"
        )
    b, t = seq.shape
    seq_np = np.asarray(seq)
    ctx_ids, ctx_counts, row_ptr, next_states, pair_counts = [], [], [0], [], []
    offsets = [0]
    max_row = 1
    for level in range(order + 1):
        ids, valid = _context_ids_jit(seq, lens, level, n_states)
        ids_np, valid_np = np.asarray(ids), np.asarray(valid)
        uniq_ctx, ctx_inv = np.unique(ids_np[valid_np], return_inverse=True)
        pair_key = ctx_inv.astype(np.int64) * n_states + seq_np[valid_np]
        uniq_pair, pair_inv = np.unique(pair_key, return_inverse=True)
        index = np.full((b, t), b * t, np.int32)  # out of range: dropped by segment_sum
        index[valid_np] = pair_inv
        counts = np.asarray(_segment_counts_jit(jnp.asarray(index), valid, b * t))[: uniq_pair.shape[0]]
        rows = uniq_pair // n_states
        per_row = np.bincount(rows, minlength=uniq_ctx.shape[0])
        max_row = max(max_row, int(per_row.max()))
        ctx_ids.append(uniq_ctx)
        ctx_counts.append(np.bincount(rows, weights=counts, minlength=uniq_ctx.shape[0]))
        row_ptr.extend((row_ptr[-1] + np.cumsum(per_row)).tolist())
        next_states.append(uniq_pair % n_states)
        pair_counts.append(counts)
        offsets.append(offsets[-1] + uniq_ctx.shape[0])
    fdtype = jnp.zeros(()).dtype
    return MarkovChain(
        context_ids=jnp.asarray(np.concatenate(ctx_ids), id_dtype),
        context_counts=jnp.asarray(np.concatenate(ctx_counts), fdtype),
        row_ptr=jnp.asarray(np.asarray(row_ptr), jnp.int32),
        next_states=jnp.asarray(np.concatenate(next_states), jnp.int32),
        pair_counts=jnp.asarray(np.concatenate(pair_counts), fdtype),
        initial_counts=count_initial(seq, lens, n_states).astype(fdtype),
        smoothing=jnp.asarray(smoothing, fdtype),
        n_states=n_states,
        order=order,
        level_offsets=tuple(int(o) for o in offsets),
        max_row=max_row,
    )


# ----------------------------------------------------------------------------------------------------------
# lookups (inside jit)
# ----------------------------------------------------------------------------------------------------------
def _find_row(model: MarkovChain, context):
    """Global row and level of the longest seen suffix of ``context`` ((order,) ints)."""
    k = model.order
    row = jnp.asarray(model.level_offsets[0], jnp.int32)  # level 0: always present
    level_used = jnp.asarray(0, jnp.int32)
    for level in range(1, k + 1):
        lo, hi = model.level_offsets[level], model.level_offsets[level + 1]
        table = model.context_ids[lo:hi]
        cid = _encode(context[k - level :], model.n_states, model.context_ids.dtype)
        pos = jnp.searchsorted(table, cid)
        posc = jnp.minimum(pos, hi - lo - 1)
        found = (pos < hi - lo) & (table[posc] == cid)
        row = jnp.where(found, lo + posc, row).astype(jnp.int32)
        level_used = jnp.where(found, level, level_used)
    return row, level_used


def _pair_count(model: MarkovChain, row, state):
    """Count of (row, state), 0 if unseen, by binary search within the row."""
    lo0, hi0 = model.row_ptr[row], model.row_ptr[row + 1]
    last = model.next_states.shape[0] - 1

    def body(_, lh):
        lo, hi = lh
        mid = (lo + hi) // 2
        less = model.next_states[jnp.minimum(mid, last)] < state
        active = lo < hi
        return jnp.where(active & less, mid + 1, lo), jnp.where(active & ~less, mid, hi)

    lo, _ = jax.lax.fori_loop(0, max(1, model.max_row.bit_length() + 1), body, (lo0, hi0))
    loc = jnp.minimum(lo, last)
    found = (lo < hi0) & (model.next_states[loc] == state)
    return jnp.where(found, model.pair_counts[loc], 0.0)


def _row_slice(model: MarkovChain, row):
    """(max_row,) successors, counts and validity mask of a row."""
    pad = model.max_row
    nxt = jnp.concatenate([model.next_states, jnp.zeros((pad,), jnp.int32)])
    cnt = jnp.concatenate([model.pair_counts, jnp.zeros((pad,), model.pair_counts.dtype)])
    start = model.row_ptr[row]
    size = model.row_ptr[row + 1] - start
    nxt = jax.lax.dynamic_slice(nxt, (start,), (pad,))
    cnt = jax.lax.dynamic_slice(cnt, (start,), (pad,))
    valid = jnp.arange(pad) < size
    return nxt, jnp.where(valid, cnt, 0.0), valid


def _probs_at(model: MarkovChain, context):
    row, _ = _find_row(model, context)
    nxt, cnt, _ = _row_slice(model, row)
    alpha = model.smoothing
    denom = model.context_counts[row] + alpha * model.n_states
    base = jnp.full((model.n_states,), alpha / denom, cnt.dtype)
    return base.at[nxt].add(cnt / denom)


@jax.jit
def _probs_jit(model, context):
    return _probs_at(model, context)


@jax.jit
def _transition_matrix_jit(model):
    return jax.vmap(lambda s: _probs_at(model, s[None]))(jnp.arange(model.n_states, dtype=jnp.int32))


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


def next_state_probs(model: MarkovChain, context):
    """Distribution of the next state after ``context`` (backing off at unseen contexts).

    Args:
        model: a :class:`MarkovChain`.
        context: ``(order,)`` the last states, oldest first (a scalar for order 1).

    Returns:
        ``(S,)`` probabilities summing to one.

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


def transition_matrix(model: MarkovChain):
    """Dense ``(S, S)`` transition matrix of an order-1 chain (rows of unseen states back off to order 0).

    Args:
        model: an order-1 :class:`MarkovChain`.

    Returns:
        ``(S, S)`` row-stochastic matrix.

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


def initial_distribution(model: MarkovChain):
    r"""Smoothed distribution of the first state, :math:`(N^{(0)}_s + \alpha) / (\sum N^{(0)} + \alpha S)`.

    Args:
        model: a :class:`MarkovChain`.

    Returns:
        ``(S,)`` probabilities (uniform if there is no count and no smoothing).

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
@jax.jit
def _log_likelihood_jit(model, seq, lengths):
    b, t = seq.shape
    k = model.order
    win = _windows(seq, k)
    pos = jnp.arange(t)
    valid = (pos[None, :] >= k) & (pos[None, :] < lengths[:, None])

    def one(ctx, s):
        row, _ = _find_row(model, ctx)
        c = _pair_count(model, row, s)
        alpha = model.smoothing
        return jnp.log(c + alpha) - jnp.log(model.context_counts[row] + alpha * model.n_states)

    lp = jax.vmap(one)(win.reshape(b * t, k), seq.reshape(b * t)).reshape(b, t)
    lp = jnp.where(valid, lp, 0.0)
    return jnp.sum(lp, axis=1), jnp.sum(valid, axis=1)


def log_likelihood(model: MarkovChain, sequences, lengths):
    r"""Per-sequence log-likelihood :math:`\sum_{t=k}^{L-1} \log p(s_t \mid s_{t-k:t})`.

    Args:
        model: a :class:`MarkovChain`.
        sequences: ``(B, T)`` (or ``(T,)``) integer states in ``[0, n_states)``.
        lengths: ``(B,)`` valid lengths, or ``None``.

    Returns:
        ``(B,)`` log-likelihoods (0 for sequences of length at most ``order``; ``-inf`` for an unseen
        transition when ``smoothing=0``).

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


def perplexity(model: MarkovChain, sequences, lengths):
    r"""Perplexity :math:`\exp(-\sum \log p / \#\text{transitions})` of held-out sequences.

    Args:
        model: a :class:`MarkovChain`.
        sequences: ``(B, T)`` integer states.
        lengths: ``(B,)`` valid lengths, or ``None``.

    Returns:
        Scalar perplexity (``inf`` if some transition has probability 0).

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


def stationary_distribution(transition):
    r"""Stationary distribution :math:`\pi = \pi P`, :math:`\sum_i \pi_i = 1`, of an order-1 chain.

    Solved as the least-squares solution of :math:`[P^\top - I;\ \mathbf 1^\top]\,\pi = [0; 1]` (unique when
    the chain is irreducible, e.g. with smoothing > 0).

    Args:
        transition: ``(S, S)`` row-stochastic matrix (e.g. :func:`transition_matrix`).

    Returns:
        ``(S,)`` probabilities.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import markov
        >>> pi = markov.stationary_distribution(jnp.array([[0.9, 0.1], [0.5, 0.5]]))
        >>> tuple(round(float(v), 4) for v in pi)
        (0.8333, 0.1667)
    """
    from jaxprob._validation import as_float_array, check_finite

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
def _generate_jit(key, model, context, n_steps, greedy, temperature, stop_state):
    alpha = model.smoothing
    s_total = model.n_states
    inv_t = 1.0 / temperature

    def step(carry, key_t):
        ctx, done = carry
        row, level = _find_row(model, ctx)
        nxt, cnt, valid = _row_slice(model, row)
        if greedy:
            choice = nxt[jnp.argmax(jnp.where(valid, cnt, -1.0))]
        else:
            k_mix, k_seen, k_unif = jax.random.split(key_t, 3)
            # p(s)^(1/T) prop. to (c_s + a)^(1/T) = [(c_s + a)^(1/T) - a^(1/T)] (seen part)
            #                                       + a^(1/T) (uniform part)
            log_ca = jnp.log(cnt + alpha)
            log_seen = inv_t * log_ca + jnp.log1p(-jnp.exp(inv_t * (jnp.log(alpha) - log_ca)))
            log_seen = jnp.where(valid, log_seen, -jnp.inf)
            log_unif = jnp.log(jnp.asarray(s_total, cnt.dtype)) + inv_t * jnp.log(alpha)
            comp = jax.random.categorical(k_mix, jnp.stack([jax.nn.logsumexp(log_seen), log_unif]))
            seen_choice = nxt[jax.random.categorical(k_seen, log_seen)]
            unif_choice = jax.random.randint(k_unif, (), 0, s_total, jnp.int32)
            choice = jnp.where(comp == 0, seen_choice, unif_choice)
        choice = jnp.where(done, stop_state, choice).astype(jnp.int32)
        new_ctx = jnp.concatenate([ctx[1:], choice[None]]) if model.order > 0 else ctx
        return (new_ctx, done | (choice == stop_state)), (choice, level, done)

    keys = jax.random.split(key, n_steps)
    _, (states, levels, was_done) = jax.lax.scan(step, (context, jnp.asarray(False)), keys)
    length = jnp.sum(~was_done).astype(jnp.int32)
    return Generation(states, length, levels)


def generate(model: MarkovChain, context, n_steps: int, *, key=None, greedy: bool = False,
             temperature: float = 1.0, stop_state: int | None = None) -> Generation:
    r"""Generate ``n_steps`` states after ``context`` with ``lax.scan``.

    Greedy generation takes the most frequent successor (deterministic; ties to the smallest state). Sampling
    draws from :math:`p(s \mid c)^{1/\tau}` renormalised (``temperature`` :math:`\tau`; lower is more
    conservative). At a context never seen in training the model backs off to the longest seen suffix
    (reported in ``orders``). After ``stop_state`` is produced the remaining outputs repeat it.

    Args:
        model: a :class:`MarkovChain`.
        context: ``(order,)`` starting states, oldest first (a scalar start state for order 1).
        n_steps: number of states to generate.
        key: a JAX PRNG key, required unless ``greedy``.
        greedy: argmax instead of sampling.
        temperature: :math:`\tau > 0` for sampling.
        stop_state: optional state that ends the generation (e.g. an end-of-sentence token).

    Returns:
        A :class:`Generation`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import markov
        >>> m = markov.fit(jnp.array([[0, 1, 2, 0, 1, 2, 0, 1]]), None, 3, smoothing=0.0)
        >>> markov.generate(m, 0, 5, greedy=True).states.tolist()
        [1, 2, 0, 1, 2]
        >>> g = markov.generate(m, 0, 5, key=jax.random.key(0), stop_state=0)
        >>> g.states.tolist(), int(g.length)
        ([1, 2, 0, 0, 0], 3)
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
    dtype = model.pair_counts.dtype
    return _generate_jit(key, model, ctx, n_steps, greedy, jnp.asarray(temperature, dtype),
                         jnp.asarray(stop, jnp.int32))
