r"""Hidden Markov models: forward–backward, Viterbi and sampling on a matrix of log emission probabilities.

A hidden Markov model with $K$ states has an initial distribution $\pi_k = p(z_0 = k)$, a transition matrix
$A_{ij} = p(z_t = j \mid z_{t-1} = i)$ and emission densities $b_t(k) = p(x_t \mid z_t = k)$. The functions of
this module take their logarithms: `log_initial: (K,)`, `log_transition: (K, K)` and
`log_emissions: (T, K)` for one sequence or `(B, T, K)` for a batch padded to a common length $T$ with its
`lengths: (B,)`. Positions at or after a sequence's length are ignored: they change no result, and the
marginals there are zero. The batch is one `vmap`, so sequences of different lengths share one compiled program.

**Forward–backward.** With the filter $\hat\alpha_t(k) = p(z_t = k \mid x_{0:t})$ and the scaled backward
messages $\hat\beta_t(k) \propto p(x_{t+1:L} \mid z_t = k)$,

$$
\log \hat\alpha_t(j) = \log b_t(j) + \operatorname{logsumexp}_i \big(\log\hat\alpha_{t-1}(i) + \log A_{ij}\big)
- \log c_t, \qquad \log p(x_{0:L}) = \sum_t \log c_t,
$$

$\gamma_t(k) \propto \hat\alpha_t(k)\,\hat\beta_t(k)$ and
$\xi_t(i, j) \propto \hat\alpha_t(i) A_{ij} b_{t+1}(j) \hat\beta_{t+1}(j)$, each normalised at its own step so
that no quantity grows with $T$ (float32 stays accurate on long sequences). Everything is in log space, so
structural zeros ($\log A_{ij} = -\infty$) and emissions that differ by thousands of nats are exact. A sequence
of probability zero gets `log_likelihood = -inf` and all-zero marginals (never NaN).

Three methods compute the same numbers:

- `method="sequential"`: the textbook recursions under `lax.scan`, $O(T K^2)$ work and $T$ sequential steps.
- `method="parallel"`: `lax.associative_scan` over the elements
  $E_t(i, j) = \log A_{ij} + \log b_t(j)$ in the $(\operatorname{logsumexp}, +)$ semiring (the prefix products
  are the forward messages, the suffix products the backward ones; Särkkä and García-Fernández, 2021, and
  Hassan, Särkkä and García-Fernández, 2021). $O(T K^3)$ work but only $O(\log T)$ sequential steps: for long
  sequences on accelerators. Each element carries a max-normalised matrix and its log scale separately, so the
  products never grow with $T$.
- `method="blocked"` (the default of forward–backward, the E-step and the fits; [forward][jaxprob.hmm.forward] keeps
  `"sequential"`, whose log-space filter stays finite below the float's range): the $T - 1$ transitions are cut into $B$
  blocks of $L \approx \sqrt{T / 4}$ steps (static, from the shape). A scan over $L$ forms every block's product of the
  elements $A \operatorname{diag}(b_t / \max_j b_t)$ at once, a scan over the $B$ blocks carries the forward and
  backward messages across the block boundaries, and a scan over $L$ re-runs the recursions inside every block from its
  boundary messages: $O(T K^3)$ work, about $2L + B$ sequential steps per direction, every step vectorised over the
  blocks. With more than 16 states the block products cost more than the scan overhead they save, so there is one block
  ($O(T K^2)$ work, $T$ steps). The recursions run in probability space with per-step normalisation (small matrix
  products instead of log-sum-exps), which is as exact as log space when every transition probability is at least
  $\delta = (K\,\mathrm{tiny} / \epsilon)^{1/3}$ (about $10^{-10}$ in float32, $10^{-97}$ in float64). When some
  $A_{ij}$ is smaller (structural zeros, left-right chains) a `lax.cond` runs the sequential log-space method instead,
  so results match `"sequential"` to round-off in every case. The fastest method on CPUs at 4 and at 32 states
  (docs/benchmarks.md). Under a `vmap` over models (not over sequences) the `lax.cond` becomes a select that runs both
  forms, so [fit][jaxprob.hmm.fit] runs its restarts one after another with this method.

**Viterbi.** The most probable path, by the max-product recursion with back-pointers (`"sequential"`) or by
max-plus prefix and suffix products (`"parallel"`: $z_t = \arg\max_k \delta_t(k) + \epsilon_t(k)$, the
max-marginals; the two agree whenever the most probable path is unique). `"blocked"` is for forward–backward
only: Viterbi raises a `ValueError` for it.

**Models and Baum–Welch.** An [HMM][jaxprob.hmm.HMM] holds $\pi$, $A$ and the emission parameters of any family
of the EM engine ([jaxprob.families][]). [fit][jaxprob.hmm.fit] is EM on the engine's loop
([jaxprob.em.run][]): the E-step runs forward–backward on every sequence and reduces the posteriors to additive
[HMMStats][jaxprob.hmm.HMMStats] (the family's statistics weighted by $\gamma$, initial and transition counts),
the M-step updates each part that is learnt, and restarts are vmapped with the engine's best-restart rule.
Because the statistics add up, the same E-step serves the sharded ([fit_sharded][jaxprob.hmm.fit_sharded]) and
chunked ([fit_chunked][jaxprob.hmm.fit_chunked]) drivers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxprob import em
from jaxprob._validation import as_float_array, check_choice, check_finite, check_int, check_key, is_tracer
from jaxprob.em import Family, FitInfo
from jaxprob.families.gaussian import gaussian

__all__ = [
    "METHODS",
    "Posterior",
    "Forward",
    "ViterbiPath",
    "forward",
    "forward_backward",
    "viterbi",
    "posterior_decode",
    "sample_states",
    "check_lengths",
    "HMM",
    "HMMStats",
    "Sequences",
    "make_hmm",
    "pad_sequences",
    "prepare",
    "emission_log_probs",
    "e_step",
    "m_step",
    "step",
    "initial_models",
    "fit_from",
    "fit",
    "fit_sharded",
    "fit_chunked",
    "score",
    "predict",
    "predict_proba",
    "sample",
    "n_parameters",
    "bic",
]

METHODS = ("sequential", "parallel", "blocked")
"""Forward–backward methods: a sequential `lax.scan`, a parallel `lax.associative_scan`, or blocked scans (see the
module's introduction). Viterbi takes the first two."""

_VITERBI_METHODS = ("sequential", "parallel")


def _check_viterbi_method(method):
    if method == "blocked":
        raise ValueError("`method` 'blocked' is for forward–backward only; Viterbi takes 'sequential' or 'parallel'")
    check_choice(method, "method", _VITERBI_METHODS)


class Posterior(NamedTuple):
    r"""Output of [forward_backward][jaxprob.hmm.forward_backward]. Leading axis `B` only for a batch.

    Attributes:
        log_likelihood: `(B,)` $\log p(x_{0:L})$ of each sequence.
        marginals: `(B, T, K)` posterior marginals $\gamma_t(k) = p(z_t = k \mid x)$, zero at padded steps.
        transition_counts: `(B, K, K)` expected number of transitions $\sum_t \xi_t(i, j)$.
        pairwise: `(B, T - 1, K, K)` the pairwise marginals $\xi_t(i, j) = p(z_t = i, z_{t+1} = j \mid x)$
            (zero where $t + 1$ is padded) when asked for with `pairwise=True`, else `None`.
    """

    log_likelihood: jax.Array
    marginals: jax.Array
    transition_counts: jax.Array
    pairwise: jax.Array | None = None


class Forward(NamedTuple):
    r"""Output of [forward][jaxprob.hmm.forward]. Leading axis `B` only for a batch.

    Attributes:
        log_likelihood: `(B,)` $\log p(x_{0:L})$ of each sequence.
        log_filtered: `(B, T, K)` $\log p(z_t = k \mid x_{0:t})$; padded steps repeat the last valid one.
    """

    log_likelihood: jax.Array
    log_filtered: jax.Array


class ViterbiPath(NamedTuple):
    r"""Output of [viterbi][jaxprob.hmm.viterbi]. Leading axis `B` only for a batch.

    Attributes:
        path: `(B, T)` int32 most probable state sequence, `-1` at padded steps.
        log_prob: `(B,)` $\log p(x_{0:L}, z_{0:L})$ of that path.
    """

    path: jax.Array
    log_prob: jax.Array


# ---- small numerical helpers --------------------------------------------------------------------------------
_HIGHEST = lax.Precision.HIGHEST


def _safe(c):
    """`c` where finite, else 0: subtracting it from all -inf leaves -inf instead of NaN."""
    return jnp.where(jnp.isfinite(c), c, jnp.zeros_like(c))


def _lognorm(x, axis=-1):
    """Return `(x - logsumexp(x), logsumexp(x))` along `axis`; an all -inf slice stays -inf."""
    c = jax.nn.logsumexp(x, axis=axis, keepdims=True)
    return x - _safe(c), jnp.squeeze(c, axis)


def _maxnorm(m):
    """Split the `(..., K, K)` matrices into (m - max, max) with a finite max; -inf matrices keep scale 0."""
    s = _safe(jnp.max(m, axis=(-2, -1)))
    return m - s[..., None, None], s


def _log_identity(k, dtype):
    eye = jnp.eye(k, dtype=bool)
    return jnp.where(eye, jnp.zeros((k, k), dtype), jnp.full((k, k), -jnp.inf, dtype))


def _logsumexp_product(a, b):
    r"""$(a \otimes b)_{ij} = \operatorname{logsumexp}_k(a_{ik} + b_{kj})$ on `(..., K, K)`."""
    return jax.nn.logsumexp(a[..., :, :, None] + b[..., None, :, :], axis=-2)


def _max_product(a, b):
    r"""$(a \otimes b)_{ij} = \max_k(a_{ik} + b_{kj})$ on `(..., K, K)`."""
    return jnp.max(a[..., :, :, None] + b[..., None, :, :], axis=-2)


def _scaled_combine(product):
    """The associative operator on (max-normalised matrix, log scale) pairs."""

    def combine(x, y):
        p, s = _maxnorm(product(x[0], y[0]))
        return p, x[1] + y[1] + s

    return combine


def _elements(lb, lA, length):
    r"""`(T, K, K)` elements $E_t(i, j) = \log A_{ij} + \log b_t(j)$, the identity at padded steps."""
    t = jnp.arange(lb.shape[0])
    e = lA[None] + lb[:, None, :]
    return jnp.where((t < length)[:, None, None], e, _log_identity(lA.shape[0], lb.dtype))


def _prefix(lb, li, lA, length, product):
    r"""Prefix products $E_0 \otimes \dots \otimes E_t$ with $E_0$'s rows all $\log\pi + \log b_0$.

    Every prefix then has identical rows: row 0 of prefix $t$ is the unnormalised forward message.
    Returns `(rows (T, K), log scales (T,))`.
    """
    e = _elements(lb, lA, length)
    e = e.at[0].set(jnp.broadcast_to(li + lb[0], e.shape[1:]))
    m, s = lax.associative_scan(_scaled_combine(product), _maxnorm(e))
    return m[:, 0, :], s


def _suffix(lb, lA, length, product):
    r"""Suffix products $E_{t+1} \otimes \dots \otimes E_{T-1} \otimes \mathbf{0}$ (all-zero log matrix last).

    Every suffix has identical columns: column 0 of suffix $t$ is the unnormalised backward message at $t$.
    Returns `(columns (T, K), log scales (T,))`.
    """
    k = lA.shape[0]
    e = _elements(lb, lA, length)
    f = jnp.concatenate([e[1:], jnp.zeros((1, k, k), lb.dtype)])
    # reverse=True folds from the end with the operator's arguments swapped: combine(later, earlier).
    m, s = lax.associative_scan(lambda x, y: _scaled_combine(product)(y, x), _maxnorm(f), reverse=True)
    return m[:, :, 0], s


# ---- forward and backward messages, one sequence ---------------------------------------------------------------
def _forward_sequential(lb, li, lA, length):
    a0, c0 = _lognorm(li + lb[0])
    lAT = lA.T  # reductions along the contiguous axis are the fast ones on CPUs

    def step(a, inputs):
        lbt, t = inputs
        a_new, c = _lognorm(jax.nn.logsumexp(a[None, :] + lAT, axis=1) + lbt)
        valid = t < length
        a_new = jnp.where(valid, a_new, a)
        return a_new, (a_new, jnp.where(valid, c, jnp.zeros_like(c)))

    _, (la, lc) = lax.scan(step, a0, (lb[1:], jnp.arange(1, lb.shape[0])))
    return jnp.concatenate([a0[None], la]), c0 + jnp.sum(lc)


def _forward_parallel(lb, li, lA, length):
    rows, s = _prefix(lb, li, lA, length, _logsumexp_product)
    la, c = _lognorm(rows)
    return la, s[-1] + c[-1]


def _backward_sequential(lb, lA, length):
    k = lA.shape[0]

    def step(b_next, inputs):
        lbt1, t = inputs  # b_{t+1} and t
        b, _ = _lognorm(jax.nn.logsumexp(lA + (lbt1 + b_next)[None, :], axis=1))
        b = jnp.where(t + 1 < length, b, jnp.zeros_like(b))
        return b, b

    zero = jnp.zeros((k,), lb.dtype)
    _, lbeta = lax.scan(step, zero, (lb[1:], jnp.arange(lb.shape[0] - 1)), reverse=True)
    return jnp.concatenate([lbeta, zero[None]])


def _backward_parallel(lb, lA, length):
    cols, _ = _suffix(lb, lA, length, _logsumexp_product)
    return cols  # any per-step scale will do: the marginals are normalised per step


def _exact_pairwise(la_t, lA, lg_next):
    r"""$\xi_t(i, j) = \exp(\log\hat\alpha_t(i) + \log A_{ij} - \log \hat p_{t+1}(j) + \log\gamma_{t+1}(j))$,
    every term in log space, with the predictive $\hat p_{t+1}(j) = \sum_i \hat\alpha_t(i) A_{ij}$."""
    joint = la_t[:, None] + lA
    lpred = jax.nn.logsumexp(joint, axis=0)
    return jnp.exp(joint - _safe(lpred)[None, :] + lg_next[None, :])


def _pair_counts(la, lg, lA, valid_next, pairwise):
    r"""Expected transition counts $\sum_t \xi_t(i, j)$ from the filter and the marginals.

    $\xi_t(i, j) = \hat\alpha_t(i) A_{ij} \gamma_{t+1}(j) / \hat p_{t+1}(j)$, with the one-step predictive
    $\hat p_{t+1} = \hat\alpha_t A$: its sum over $t$ is $A \odot (U^\top V)$ with $U_t = \hat\alpha_t$ and
    $V_t = \gamma_{t+1} / \hat p_{t+1}$, two matrix products instead of $T K^2$ exponentials. The products drop
    terms below the float's smallest normal number; the steps where that could change a count by more than the
    float's resolution (a state entered almost only from states of negligible filtered probability) are
    recomputed term by term in log space, in a loop over those steps only.
    """
    k = lA.shape[0]
    dtype = la.dtype
    a = jnp.exp(lA)
    u = jnp.exp(la[:-1])
    g1 = jnp.where(valid_next[:, None], jnp.exp(lg[1:]), jnp.zeros_like(lg[1:]))
    pred = jnp.matmul(u, a, precision=_HIGHEST)
    ok = pred > 0
    v = jnp.where(ok, g1 / jnp.where(ok, pred, jnp.ones_like(pred)), jnp.zeros_like(pred))
    counts = a * jnp.matmul(u.T, v, precision=_HIGHEST)
    fi = jnp.finfo(dtype)
    # the dropped terms of column j add at most K * tiny * gamma / pred to that column's counts
    risky = jnp.any((g1 > 0) & (pred * fi.eps < k * fi.tiny * g1), axis=1)
    lg1 = jnp.where(valid_next[:, None], lg[1:], jnp.full_like(lg[1:], -jnp.inf))
    if pairwise:
        fast = u[:, :, None] * a[None] * v[:, None, :]
        exact = jax.vmap(_exact_pairwise, in_axes=(0, None, 0))(la[:-1], lA, lg1)
        xi = jnp.where(risky[:, None, None], exact, fast)
        return jnp.sum(xi, axis=0), xi
    if risky.shape[0] == 0:  # a single step: no transition, and nothing to index
        return counts, None
    steps = jnp.nonzero(risky, size=risky.shape[0], fill_value=0)[0]

    def fix(i, c):
        t = steps[i]
        return c + _exact_pairwise(la[t], lA, lg1[t]) - a * (u[t][:, None] * v[t][None, :])

    return lax.fori_loop(0, jnp.sum(risky.astype(jnp.int32)), fix, counts), None


def _posterior_one(lb, li, lA, length, method, pairwise):
    if method == "blocked":
        return _posterior_blocked(lb, li, lA, length, pairwise)
    return _posterior_logspace(lb, li, lA, length, method, pairwise)


def _posterior_logspace(lb, li, lA, length, method, pairwise):
    if method == "parallel":
        la, ll = _forward_parallel(lb, li, lA, length)
        lbeta = _backward_parallel(lb, lA, length)
    else:
        la, ll = _forward_sequential(lb, li, lA, length)
        lbeta = _backward_sequential(lb, lA, length)
    t = jnp.arange(lb.shape[0])
    lg, _ = _lognorm(la + lbeta)
    gamma = jnp.where((t < length)[:, None], jnp.exp(lg), jnp.zeros_like(lg))
    counts, xi = _pair_counts(la, lg, lA, t[1:] < length, pairwise)
    return Posterior(ll, gamma, counts, xi)


# ---- blocked forward–backward, one sequence ------------------------------------------------------------------
def _block_shape(n, k):
    r"""`(B, L)` with `B * L >= n`: `B` blocks of `L` elements, `L` about $\sqrt{n / 4}$ (the scans over `L` do
    more per step than the one over `B`). With more than `_BLOCK_MAX_STATES` states one block: the block products
    cost $K^3$ per step, more than the per-step overhead of a plain scan that they save."""
    if k > _BLOCK_MAX_STATES:
        return 1, max(n, 1)
    length = max(1, math.ceil(math.sqrt(max(n, 1) * _BLOCK_RATIO)))
    return max(1, -(-n // length)), length


_BLOCK_RATIO = 0.25
_BLOCK_MAX_STATES = 16


def _dense_threshold(k, dtype):
    r"""Smallest transition probability $\delta$ for which the probability-space recursions are as exact as the
    log-space ones. With every $A_{ij} \ge \delta$ every state receives at least $\delta$ of each step's mass and
    the backward messages of any two states stay within a factor $1 / \delta$: a normalised quantity is never
    smaller than $\delta$ times the largest one it is compared with, a term lost below the float's smallest
    normal number before the normalisation stands for at most $\mathrm{tiny} / \delta$ after it, and it changes
    the terms kept by at most $K \cdot \mathrm{tiny} / \delta^3 \le \epsilon$ relative, the round-off of the
    log-space recursions. Below $\delta$ (structural zeros, or emissions that differ by more than the float's
    range along a path the transitions barely allow) terms that matter can be lost, so the log-space method
    runs instead. (An error analysis, not a proof: the tests check it against the log-space method just above
    the threshold, with emissions thousands of nats apart; the square root of the same ratio is not enough.)"""
    fi = jnp.finfo(dtype)
    return float(np.cbrt(k * float(fi.tiny) / float(fi.eps)))


def _to_blocks(x, nb, nl, fill):
    """`(n, ...)` -> `(L, B, ...)`: element `b * L + l` at `[l, b]`, padded with `fill`."""
    pad = nb * nl - x.shape[0]
    x = jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], fill, x.dtype)])
    return jnp.swapaxes(x.reshape((nb, nl) + x.shape[1:]), 0, 1)


def _from_blocks(x, n):
    """Inverse of `_to_blocks`: `(L, B, ...)` -> `(n, ...)`."""
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape((-1,) + x.shape[2:])[:n]


def _normalise(v):
    """`v / sum(v)` along the last axis, and the sum; an all-zero `v` stays zero."""
    c = jnp.sum(v, axis=-1, keepdims=True)
    return v / jnp.where(c > 0, c, jnp.ones_like(c)), c[..., 0]


class _Blocked(NamedTuple):
    """Messages of `_blocked_prob` in the block layout `(L, B, ...)`: entry `[l, b]` belongs to element
    `k = b * L + l`, i.e. to the step $t = k + 1$ (`alpha`, `pred`, `valid`) or $t = k$ (`beta`)."""

    alpha0: jax.Array  # (K,) filter at t = 0
    f: jax.Array  # (B, K) filter at the start of each block, t = b * L
    alpha: jax.Array  # (L, B, K) filter at t = k + 1
    pred: jax.Array  # (L, B, K) one-step predictive alpha_k @ A of step k + 1
    beta: jax.Array | None  # (L, B, K) backward message at t = k
    g: jax.Array | None  # (B, K) backward message at the end of each block, t = (b + 1) * L
    valid: jax.Array  # (L, B) step k + 1 lies before the sequence's length
    log_likelihood: jax.Array


def _blocked_prob(lb, li, lA, length, backward):
    r"""Forward (and backward) recursions in probability space on blocks of steps; exact where `_dense` holds.

    The elements $G_k = A \operatorname{diag}(\tilde b_{k+1})$, $k < T - 1$, with the emissions scaled to a maximum
    of one per step, $\tilde b_t = \exp(\log b_t - \max_j \log b_t)$, map $\hat\alpha_k$ to $\hat\alpha_{k+1}$ and
    $\hat\beta_{k+1}$ to $\hat\beta_k$ (the identity where $k + 1$ is padded). They are cut into `B` blocks of `L`:
    one scan over `L` forms every block's product (max-normalised, log scale kept), a scan over `B` carries the
    filter forwards (and one the backward message backwards) across the blocks, and a scan over `L` re-runs each
    recursion inside every block from its boundary messages. Every step of the scans over `L` works on all blocks
    at once, so the sequential depth is about $2L + B$ per direction instead of $T$. The messages are normalised
    to sum one at every step (an all-zero message stays zero). Returns a `_Blocked`.
    """
    k = lA.shape[0]
    dtype = lb.dtype
    a = jnp.exp(lA)
    la0, c0 = _lognorm(li + lb[0])
    alpha0 = jnp.exp(la0)
    nb, nl = _block_shape(lb.shape[0] - 1, k)
    lbb = _to_blocks(lb[1:], nb, nl, 0.0)  # (L, B, K)
    m = _safe(jnp.max(lbb, axis=-1))
    e = jnp.exp(lbb - m[..., None])
    valid = 1 + jnp.arange(nb)[None, :] * nl + jnp.arange(nl)[:, None] < length  # padding lies at t >= T

    def mm(x, y):
        return jnp.matmul(x, y, precision=_HIGHEST)

    def products(p, inputs):
        el, vl = inputs
        q = mm(p, a) * el[:, None, :]
        mx = jnp.max(q, axis=(1, 2))
        q = q / jnp.where(mx > 0, mx, jnp.ones_like(mx))[:, None, None]
        return jnp.where(vl[:, None, None], q, p), None

    if nb > 1:
        prods, _ = lax.scan(products, jnp.broadcast_to(jnp.eye(k, dtype=dtype), (nb, k, k)), (e, valid))

        def across(f, p):
            return _normalise(mm(f, p))[0], f

        _, f = lax.scan(across, alpha0, prods)
    else:
        f = alpha0[None]

    def forward_step(f, inputs):
        el, vl = inputs
        pred = mm(f, a)
        f_new, c = _normalise(pred * el)
        return jnp.where(vl[:, None], f_new, f), (jnp.where(vl[:, None], f_new, f), pred, c)

    _, (alpha, pred, c) = lax.scan(forward_step, f, (e, valid))
    # the normalisers of the steps telescope across the blocks, whose start messages sum to one
    ll = c0 + jnp.sum(jnp.where(valid, m + jnp.log(c), jnp.zeros_like(m)))
    beta = g = None
    if backward:
        def back_across(g, p):
            return _normalise(mm(p, g))[0], g

        if nb > 1:
            _, g = lax.scan(back_across, jnp.ones((k,), dtype), prods, reverse=True)
        else:
            g = jnp.ones((1, k), dtype)

        def backward_step(g, inputs):
            el, vl = inputs
            g = jnp.where(vl[:, None], _normalise(mm(el * g, a.T))[0], g)
            return g, g

        _, beta = lax.scan(backward_step, g, (e, valid), reverse=True)
    return _Blocked(alpha0, f, alpha, pred, beta, g, valid, ll)


def _dense(lA):
    """Whether every transition probability passes `_dense_threshold` (a traced bool)."""
    return jnp.all(lA >= math.log(_dense_threshold(lA.shape[0], lA.dtype)))


def _posterior_blocked(lb, li, lA, length, pairwise):
    def fast(lb, li, lA, length):
        r = _blocked_prob(lb, li, lA, length, True)
        n = lb.shape[0] - 1
        # the backward message at step k + 1 is the next entry of the block, or the block's end message
        beta_next = jnp.concatenate([r.beta[1:], r.g[None]])
        gamma, _ = _normalise(r.alpha * beta_next)
        gamma = jnp.where(r.valid[..., None], gamma, jnp.zeros_like(gamma))
        gamma0 = jnp.where(length > 0, _normalise(r.alpha0 * r.beta[0, 0])[0], jnp.zeros_like(r.alpha0))
        # xi_k(i, j) = alpha_k(i) A_ij gamma_{k+1}(j) / pred_{k+1}(j); the predictive is at least the smallest
        # transition probability, so nothing here underflows
        a = jnp.exp(lA)
        u = jnp.concatenate([r.f[None], r.alpha[:-1]])  # the filter at step k
        ok = r.pred > 0
        v = jnp.where(ok, gamma / jnp.where(ok, r.pred, jnp.ones_like(r.pred)), jnp.zeros_like(gamma))
        counts = a * jnp.einsum("lbi,lbj->ij", u, v, precision=_HIGHEST)
        xi = _from_blocks(u[..., :, None] * a * v[..., None, :], n) if pairwise else None
        return Posterior(r.log_likelihood, jnp.concatenate([gamma0[None], _from_blocks(gamma, n)]), counts, xi)

    def exact(lb, li, lA, length):
        return _posterior_logspace(lb, li, lA, length, "sequential", pairwise)

    return lax.cond(_dense(lA), fast, exact, lb, li, lA, length)


def _forward_blocked(lb, li, lA, length):
    def fast(lb, li, lA, length):
        r = _blocked_prob(lb, li, lA, length, False)
        alpha = jnp.concatenate([r.alpha0[None], _from_blocks(r.alpha, lb.shape[0] - 1)])
        return jnp.log(alpha), r.log_likelihood

    return lax.cond(_dense(lA), fast, _forward_sequential, lb, li, lA, length)


# ---- Viterbi, one sequence -------------------------------------------------------------------------------------
def _viterbi_sequential(lb, li, lA, length):
    k = lA.shape[0]
    d0 = li + lb[0]
    s0 = _safe(jnp.max(d0))

    def step(carry, inputs):
        d, s = carry
        lbt, t = inputs
        scores = d[:, None] + lA
        back = jnp.argmax(scores, axis=0).astype(jnp.int32)
        d_new = jnp.max(scores, axis=0) + lbt
        m = _safe(jnp.max(d_new))
        valid = t < length
        d_new = jnp.where(valid, d_new - m, d)
        back = jnp.where(valid, back, jnp.arange(k, dtype=jnp.int32))
        return (d_new, s + jnp.where(valid, m, jnp.zeros_like(m))), back

    (d, s), backs = lax.scan(step, (d0 - s0, s0), (lb[1:], jnp.arange(1, lb.shape[0])))
    last = jnp.argmax(d).astype(jnp.int32)

    def trace(z, back):
        prev = back[z]
        return prev, prev

    _, path = lax.scan(trace, last, backs, reverse=True)
    path = jnp.concatenate([path, last[None]])
    path = jnp.where(jnp.arange(lb.shape[0]) < length, path, -1)
    return ViterbiPath(path, s + jnp.max(d))


def _viterbi_parallel(lb, li, lA, length):
    rows, s = _prefix(lb, li, lA, length, _max_product)
    cols, _ = _suffix(lb, lA, length, _max_product)
    path = jnp.argmax(rows + cols, axis=-1).astype(jnp.int32)
    path = jnp.where(jnp.arange(lb.shape[0]) < length, path, -1)
    return ViterbiPath(path, s[-1] + jnp.max(rows[-1]))


_FORWARD = {"sequential": _forward_sequential, "parallel": _forward_parallel, "blocked": _forward_blocked}


# ---- jitted batch programs -------------------------------------------------------------------------------------
def _batched(fn, lb, li, lA, lengths):
    if lengths is None:
        return fn(lb, li, lA, lb.shape[0])
    return jax.vmap(fn, in_axes=(0, None, None, 0))(lb, li, lA, lengths)


@jax.jit(static_argnames=("method", "pairwise"))
def _forward_backward_jit(lb, li, lA, lengths, method, pairwise):
    def one(b, i, a, n):
        return _posterior_one(b, i, a, n, method, pairwise)

    return _batched(one, lb, li, lA, lengths)


@jax.jit(static_argnames=("method",))
def _forward_jit(lb, li, lA, lengths, method):
    fn = _FORWARD[method]

    def one(b, i, a, n):
        la, ll = fn(b, i, a, n)
        return Forward(ll, la)

    return _batched(one, lb, li, lA, lengths)


@jax.jit(static_argnames=("method",))
def _viterbi_jit(lb, li, lA, lengths, method):
    fn = _viterbi_parallel if method == "parallel" else _viterbi_sequential
    return _batched(fn, lb, li, lA, lengths)


# ---- validation ------------------------------------------------------------------------------------------------
def _check_no_nan(x, name):
    if is_tracer(x):
        return
    arr = np.asarray(x)
    if np.any(np.isnan(arr)) or np.any(arr == np.inf):
        raise ValueError(f"`{name}` must hold log-probabilities (finite or -inf), found NaN or +inf")


def _check_inputs(log_emissions, log_initial, log_transition, lengths, method):
    check_choice(method, "method", METHODS)
    lb = as_float_array(log_emissions, "log_emissions", (2, 3))
    k = lb.shape[-1]
    if lb.shape[-2] < 1 or k < 1:
        raise ValueError(f"`log_emissions` needs at least one step and one state, got shape {tuple(lb.shape)}")
    li = as_float_array(log_initial, "log_initial", 1, dtype=lb.dtype)
    lA = as_float_array(log_transition, "log_transition", 2, dtype=lb.dtype)
    if li.shape != (k,):
        raise ValueError(f"`log_initial` must have shape ({k},) to match log_emissions, got {tuple(li.shape)}")
    if lA.shape != (k, k):
        raise ValueError(f"`log_transition` must have shape ({k}, {k}), got {tuple(lA.shape)}")
    for arr, name in ((lb, "log_emissions"), (li, "log_initial"), (lA, "log_transition")):
        _check_no_nan(arr, name)
    lengths = check_lengths(lengths, lb)
    return lb, li, lA, lengths


def check_lengths(lengths: ArrayLike, x: ArrayLike, name: str = "lengths") -> jax.Array | None:
    """Check `lengths: (B,)` against a padded batch `x: (B, T, ...)` and return it as an int32 array.

    `None` means every sequence has the full length $T$ (and returns `None` for a single sequence, `x` of rank 2
    for the kernels). Lengths must be integers in $[1, T]$.

    Args:
        lengths: `(B,)` integer lengths, or `None`.
        x: `(T, K)` one sequence (then `lengths` must be `None`) or `(B, T, ...)` a padded batch.
        name: the argument's name in error messages.

    Returns:
        `(B,)` int32 array, or `None` for a single sequence.

    Example:
        >>> import numpy as np
        >>> from jaxprob import hmm
        >>> hmm.check_lengths([3, 1], np.zeros((2, 4, 2))).tolist()
        [3, 1]
    """
    if x.ndim == 2:
        if lengths is not None:
            raise ValueError(f"`{name}` is only for a batch of sequences (B, T, K); got a single sequence")
        return None
    b, t = x.shape[0], x.shape[1]
    if lengths is None:
        return jnp.full((b,), t, jnp.int32)
    if not is_tracer(lengths):
        arr = np.asarray(lengths)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"`{name}` must hold integers, got {arr.dtype}")
        if arr.shape != (b,):
            raise ValueError(f"`{name}` must have shape ({b},) to match the batch, got {arr.shape}")
        if np.any(arr < 1) or np.any(arr > t):
            raise ValueError(f"`{name}` must lie in [1, {t}] (the padded length), got {arr.min()}..{arr.max()}")
    return jnp.asarray(lengths, jnp.int32)


# ---- public kernels --------------------------------------------------------------------------------------------
def forward_backward(log_emissions: ArrayLike, log_initial: ArrayLike, log_transition: ArrayLike,
                     lengths: ArrayLike | None = None, *, method: str = "blocked",
                     pairwise: bool = False) -> Posterior:
    r"""Posterior marginals, expected transition counts and log-likelihood of each sequence.

    Args:
        log_emissions: `(T, K)` $\log p(x_t \mid z_t = k)$ of one sequence, or `(B, T, K)` a padded batch.
        log_initial: `(K,)` $\log \pi$.
        log_transition: `(K, K)` $\log A$, rows indexed by the previous state.
        lengths: `(B,)` integer length of each sequence of a batch (default: all $T$); not for one sequence.
        method: `"blocked"` (blocks of `lax.scan`s, the fastest on CPUs), `"sequential"` (`lax.scan`) or
            `"parallel"` (`lax.associative_scan`); see the module's introduction.
        pairwise: also return the per-step pairwise marginals `(B, T - 1, K, K)`.

    Returns:
        A [Posterior][jaxprob.hmm.Posterior]; without the `B` axis for one sequence.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import hmm
        >>> log_a = jnp.log(jnp.array([[0.9, 0.1], [0.2, 0.8]]))
        >>> log_b = jnp.log(jnp.array([[0.9, 0.1], [0.8, 0.3], [0.1, 0.7]]))
        >>> post = hmm.forward_backward(log_b, jnp.log(jnp.array([0.5, 0.5])), log_a)
        >>> post.marginals.shape, post.marginals.sum(-1).round(6).tolist()
        ((3, 2), [1.0, 1.0, 1.0])
        >>> float(post.transition_counts.sum().round(6))  # T - 1 transitions
        2.0
        >>> seq = hmm.forward_backward(log_b, jnp.log(jnp.array([0.5, 0.5])), log_a, method="sequential")
        >>> bool(jnp.allclose(seq.marginals, post.marginals, atol=1e-6))  # the default "blocked" agrees
        True
    """
    lb, li, lA, lengths = _check_inputs(log_emissions, log_initial, log_transition, lengths, method)
    return _forward_backward_jit(lb, li, lA, lengths, method, bool(pairwise))


def forward(log_emissions: ArrayLike, log_initial: ArrayLike, log_transition: ArrayLike,
            lengths: ArrayLike | None = None, *, method: str = "sequential") -> Forward:
    r"""Log-likelihood and filtered log-probabilities $\log p(z_t \mid x_{0:t})$ (the forward pass only).

    The default is the log-space `"sequential"` method, because the filter is returned in log space: with
    `"blocked"` it is computed in probability space, and filtered probabilities below the float's smallest normal
    number come out as `-inf` where the log-space methods give their (finite) logarithm.

    Args:
        log_emissions: `(T, K)` or `(B, T, K)` log emission probabilities.
        log_initial: `(K,)` $\log \pi$.
        log_transition: `(K, K)` $\log A$.
        lengths: `(B,)` lengths of a padded batch (default: all $T$).
        method: `"sequential"`, `"blocked"` or `"parallel"` (see the module's introduction).

    Returns:
        A [Forward][jaxprob.hmm.Forward].

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import hmm
        >>> out = hmm.forward(jnp.zeros((4, 3)), jnp.log(jnp.ones(3) / 3), jnp.log(jnp.ones((3, 3)) / 3))
        >>> abs(round(float(out.log_likelihood), 6))  # every emission has probability one
        0.0
    """
    lb, li, lA, lengths = _check_inputs(log_emissions, log_initial, log_transition, lengths, method)
    return _forward_jit(lb, li, lA, lengths, method)


def viterbi(log_emissions: ArrayLike, log_initial: ArrayLike, log_transition: ArrayLike,
            lengths: ArrayLike | None = None, *, method: str = "sequential") -> ViterbiPath:
    r"""Most probable state sequence $\arg\max_z p(z, x)$ and its log joint probability.

    Ties go to the lowest state with `"sequential"`; `"parallel"` takes the arg max of the max-marginals at
    every step, which is the same path whenever the most probable path is unique.

    Args:
        log_emissions: `(T, K)` or `(B, T, K)` log emission probabilities.
        log_initial: `(K,)` $\log \pi$.
        log_transition: `(K, K)` $\log A$.
        lengths: `(B,)` lengths of a padded batch (default: all $T$).
        method: `"sequential"` or `"parallel"` (`"blocked"` is for forward–backward only: `ValueError`).

    Returns:
        A [ViterbiPath][jaxprob.hmm.ViterbiPath] (`path` is `-1` at padded steps).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import hmm
        >>> log_a = jnp.log(jnp.array([[0.9, 0.1], [0.1, 0.9]]))
        >>> log_b = jnp.log(jnp.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]]))
        >>> hmm.viterbi(log_b, jnp.log(jnp.array([0.5, 0.5])), log_a).path.tolist()
        [0, 0, 1, 1]
    """
    _check_viterbi_method(method)
    lb, li, lA, lengths = _check_inputs(log_emissions, log_initial, log_transition, lengths, method)
    return _viterbi_jit(lb, li, lA, lengths, method)


def posterior_decode(log_emissions: ArrayLike, log_initial: ArrayLike, log_transition: ArrayLike,
                     lengths: ArrayLike | None = None, *, method: str = "blocked") -> jax.Array:
    r"""The state of largest posterior marginal at each step, $\hat z_t = \arg\max_k \gamma_t(k)$.

    It maximises the expected number of correct states, not the probability of the whole path (the path
    may even use a transition of probability zero); see [viterbi][jaxprob.hmm.viterbi] for that.

    Args:
        log_emissions: `(T, K)` or `(B, T, K)` log emission probabilities.
        log_initial: `(K,)` $\log \pi$.
        log_transition: `(K, K)` $\log A$.
        lengths: `(B,)` lengths of a padded batch (default: all $T$).
        method: `"blocked"`, `"sequential"` or `"parallel"` (see the module's introduction).

    Returns:
        `(T,)` or `(B, T)` int32 states, `-1` at padded steps.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import hmm
        >>> log_b = jnp.log(jnp.array([[0.9, 0.1], [0.2, 0.8]]))
        >>> hmm.posterior_decode(log_b, jnp.log(jnp.array([0.5, 0.5])), jnp.log(jnp.full((2, 2), 0.5))).tolist()
        [0, 1]
    """
    post = forward_backward(log_emissions, log_initial, log_transition, lengths, method=method)
    return _argmax_marginals(post.marginals)


@jax.jit
def _argmax_marginals(gamma):
    return jnp.where(jnp.sum(gamma, axis=-1) > 0, jnp.argmax(gamma, axis=-1), -1).astype(jnp.int32)


@jax.jit(static_argnames=("n_steps",))
def _sample_states_jit(key, li, lA, n_steps):
    k0, key = jax.random.split(key)
    z0 = jax.random.categorical(k0, li).astype(jnp.int32)

    def step(z, k):
        nxt = jax.random.categorical(k, lA[z]).astype(jnp.int32)
        return nxt, nxt

    _, rest = lax.scan(step, z0, jax.random.split(key, n_steps - 1))
    return jnp.concatenate([z0[None], rest])


def sample_states(log_initial: ArrayLike, log_transition: ArrayLike, n_steps: int, *, key: jax.Array) -> jax.Array:
    r"""Draw one state sequence $z_0 \sim \pi$, $z_t \sim A_{z_{t-1}, \cdot}$ (a `lax.scan`).

    For several sequences, `jax.vmap` over keys.

    Args:
        log_initial: `(K,)` $\log \pi$ (need not be normalised).
        log_transition: `(K, K)` $\log A$ (rows need not be normalised).
        n_steps: length $T \ge 1$ of the sequence.
        key: a JAX PRNG key.

    Returns:
        `(n_steps,)` int32 states.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import hmm
        >>> z = hmm.sample_states(jnp.log(jnp.array([1.0, 0.0])), jnp.log(jnp.array([[0.0, 1.0], [1.0, 0.0]])),
        ...                       5, key=jax.random.key(0))
        >>> z.tolist()
        [0, 1, 0, 1, 0]
    """
    check_key(key)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    li = as_float_array(log_initial, "log_initial", 1)
    lA = as_float_array(log_transition, "log_transition", 2, dtype=li.dtype)
    k = li.shape[0]
    if lA.shape != (k, k):
        raise ValueError(f"`log_transition` must have shape ({k}, {k}), got {tuple(lA.shape)}")
    _check_no_nan(li, "log_initial")
    _check_no_nan(lA, "log_transition")
    return _sample_states_jit(key, li, lA, n_steps)


# =============================================================================================================
# models: any family of the EM engine as emissions, Baum–Welch on the engine's loop
# =============================================================================================================
class HMM(eqx.Module):
    r"""A hidden Markov model whose emissions are components of one [Family][jaxprob.em.Family] (a pytree).

    Attributes:
        initial: `(K,)` initial distribution $\pi$.
        transition: `(K, K)` transition matrix $A$, rows summing to one.
        components: the family's parameters of the $K$ emission distributions (leading axis `K`).
        family: the [Family][jaxprob.em.Family].

    The components' attributes read through: `model.means` is `model.components.means` for Gaussian emissions.
    """

    initial: jax.Array
    transition: jax.Array
    components: Any
    family: Family

    @property
    def n_states(self) -> int:
        return self.initial.shape[-1]

    def __getattr__(self, name):
        if name.startswith("__") or name in ("initial", "transition", "components", "family"):
            raise AttributeError(name)
        comps = self.__dict__.get("components")
        if comps is not None and hasattr(comps, name):
            return getattr(comps, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class HMMStats(NamedTuple):
    r"""Expected sufficient statistics of a batch of sequences under an HMM: additive in every leaf.

    Statistics of disjoint sets of sequences (chunks, devices) add up with `jax.tree.map(jnp.add, ...)`.

    Attributes:
        emissions: [Stats][jaxprob.em.Stats] of the emissions: `counts` $\sum_t \gamma_t(k)$ over valid
            steps, the family's statistics weighted by $\gamma$, the total log-likelihood of the sequences,
            `total_weight` the number of valid steps.
        initial: `(K,)` $\sum_b \gamma^{(b)}_0(k)$.
        transitions: `(K, K)` $\sum_b \sum_t \xi^{(b)}_t(i, j)$, the expected transition counts.
        n_sequences: number of (non-empty) sequences.
    """

    emissions: em.Stats
    initial: jax.Array
    transitions: jax.Array
    n_sequences: jax.Array


class Sequences(eqx.Module):
    """A padded batch of sequences prepared once for a family ([prepare][jaxprob.hmm.prepare]).

    Attributes:
        prepared: the [Prepared][jaxprob.em.Prepared] rows of all steps, row `b * T + t`; weight 1 on valid
            steps and 0 on padding.
        lengths: `(B,)` int32 lengths (0 for a sequence that only pads the batch).
        n_steps: $T$, the padded length (static).
    """

    prepared: em.Prepared
    lengths: jax.Array
    n_steps: int = eqx.field(static=True)


def make_hmm(initial: ArrayLike, transition: ArrayLike, components: Any, family: Family) -> HMM:
    """An HMM from its initial distribution, transition matrix and emission parameters (checked eagerly).

    Args:
        initial: `(K,)` non-negative, summing to one.
        transition: `(K, K)` non-negative rows summing to one (zeros are kept by Baum–Welch).
        components: the family's parameters of $K$ components.
        family: a [Family][jaxprob.em.Family].

    Returns:
        An [HMM][jaxprob.hmm.HMM].

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import families, hmm
        >>> from jaxprob.families.gaussian import make_params
        >>> comps = make_params(jnp.array([[0.0], [3.0]]), jnp.ones((2, 1)), "diag")
        >>> model = hmm.make_hmm(jnp.array([0.5, 0.5]), jnp.array([[0.9, 0.1], [0.2, 0.8]]), comps,
        ...                      families.gaussian("diag"))
        >>> model.n_states, model.means.shape
        (2, (2, 1))
    """
    if not isinstance(family, Family):
        raise TypeError(f"`family` must be a jaxprob.em.Family (see jaxprob.families), got {type(family).__name__}")
    family.check_params(components)
    k = family.n_components(components)
    floats = [a for a in jax.tree.leaves(components) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
    dtype = floats[0].dtype if floats else None
    initial = as_float_array(initial, "initial", 1, dtype=dtype)
    transition = as_float_array(transition, "transition", 2, dtype=initial.dtype)
    if initial.shape != (k,):
        raise ValueError(f"`initial` must have shape ({k},) to match the {k} components, got {tuple(initial.shape)}")
    if transition.shape != (k, k):
        raise ValueError(f"`transition` must have shape ({k}, {k}), got {tuple(transition.shape)}")
    for arr, name in ((initial, "initial"), (transition, "transition")):
        check_finite(arr, name)
        if not is_tracer(arr):
            a = np.asarray(arr, np.float64)
            if np.any(a < 0) or np.any(np.abs(a.sum(-1) - 1.0) > 1e-4):
                raise ValueError(f"`{name}` must be non-negative with {'rows ' if a.ndim == 2 else ''}summing to one")
    return HMM(initial, transition, components, family)


def _check_model(model, name="model"):
    if not isinstance(model, HMM):
        raise TypeError(f"`{name}` must be a jaxprob.hmm.HMM (see make_hmm / fit), got {type(model).__name__}")
    return model


def pad_sequences(sequences: Sequence[ArrayLike], *, pad_value: Any = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stack sequences of different lengths into a padded batch.

    Args:
        sequences: a list of arrays `(T_b, ...)` with the same trailing shape and dtype.
        pad_value: value of the padded steps (any valid observation; it changes no result).

    Returns:
        `(x, lengths)`: `(B, max T_b, ...)` NumPy array and `(B,)` int32 lengths.

    Example:
        >>> import numpy as np
        >>> from jaxprob import hmm
        >>> x, lengths = hmm.pad_sequences([np.ones((3, 2)), np.ones((1, 2))])
        >>> x.shape, lengths.tolist()
        ((2, 3, 2), [3, 1])
    """
    seqs = [np.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError("`sequences` is empty")
    tail = seqs[0].shape[1:]
    for i, s in enumerate(seqs):
        if s.ndim < 1 or s.shape[1:] != tail or s.shape[0] < 1:
            raise ValueError(f"`sequences[{i}]` has shape {s.shape}; every sequence needs at least one step and "
                             f"the trailing shape {tail}")
    lengths = np.array([s.shape[0] for s in seqs], np.int32)
    dtype = np.result_type(*seqs)
    x = np.full((len(seqs), int(lengths.max())) + tail, pad_value, dtype)
    for i, s in enumerate(seqs):
        x[i, : s.shape[0]] = s
    return x, lengths


def _flat(x, lengths):
    """`(B, T, ...)` and `(B,)` -> `(B * T, ...)` rows with padded rows replaced by the sequence's first step
    (a valid observation for every family), and the `(B * T,)` 0/1 weights."""
    b, t = x.shape[0], x.shape[1]
    mask = jnp.arange(t)[None, :] < lengths[:, None]
    clean = jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 2)), x, x[:, :1])
    return clean.reshape((b * t,) + x.shape[2:]), mask.reshape(-1).astype(_float_dtype(x))


def _float_dtype(x):
    return x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)


def prepare(x: Any, family: Family, lengths: ArrayLike | None = None, *, center: Any = None) -> Sequences:
    """Prepare sequences for Baum–Welch with `family` (traceable; no validation).

    Args:
        x: `(T, ...)` one sequence, or with `lengths` a padded batch `(B, T, ...)`.
        family: a [Family][jaxprob.em.Family].
        lengths: `(B,)` lengths of a padded batch (0 marks a sequence that only pads the batch).
        center: the reference of the family's statistics (default: the mean of the valid steps); give the same one
            to every chunk whose statistics you add.

    Returns:
        [Sequences][jaxprob.hmm.Sequences].

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import families, hmm
        >>> data = hmm.prepare(jnp.zeros((2, 5, 3)), families.gaussian("diag"), jnp.array([5, 2]))
        >>> data.prepared.weights.sum().tolist(), data.n_steps
        (7.0, 5)
    """
    if lengths is None:
        x = jnp.asarray(x)[None]
        lengths = jnp.full((1,), x.shape[1], jnp.int32)
    else:
        x = jnp.asarray(x)
        lengths = jnp.asarray(lengths, jnp.int32)
    flat, w = _flat(x, lengths)
    return Sequences(em.prepare(flat, family, w, center), lengths, x.shape[1])


def emission_log_probs(data: Sequences, model: HMM) -> jax.Array:
    r"""`(B, T, K)` emission log-likelihoods $\log p(x_t \mid z_t = k)$ of prepared sequences (traceable).

    Args:
        data: [Sequences][jaxprob.hmm.Sequences] prepared for `model.family`.
        model: an [HMM][jaxprob.hmm.HMM].

    Returns:
        `(B, T, K)` array (padded steps hold the values of the sequence's first step).
    """
    lp = model.family.log_prob(data.prepared.data, model.components, data.prepared.center)
    return lp.reshape((data.lengths.shape[0], data.n_steps, lp.shape[-1]))


def e_step(data: Sequences, model: HMM, *, method: str = "blocked") -> HMMStats:
    """E-step of Baum–Welch: forward–backward on every sequence, reduced to additive statistics (traceable).

    Args:
        data: [Sequences][jaxprob.hmm.Sequences] prepared for `model.family`.
        model: an [HMM][jaxprob.hmm.HMM].
        method: `"blocked"`, `"sequential"` or `"parallel"` (static), as
            [forward_backward][jaxprob.hmm.forward_backward].

    Returns:
        [HMMStats][jaxprob.hmm.HMMStats] (`stats.emissions.log_likelihood` under the input model).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import families, hmm
        >>> from jaxprob.families.gaussian import make_params
        >>> fam = families.gaussian("diag")
        >>> model = hmm.make_hmm(jnp.array([0.5, 0.5]), jnp.full((2, 2), 0.5),
        ...                      make_params(jnp.array([[0.0], [3.0]]), jnp.ones((2, 1)), "diag"), fam)
        >>> stats = hmm.e_step(hmm.prepare(jnp.array([[0.0], [3.0], [3.1]]), fam), model)
        >>> float(stats.transitions.sum().round(5)), float(stats.emissions.total_weight)
        (2.0, 3.0)
    """
    lb = emission_log_probs(data, model)
    li, lA = jnp.log(model.initial), jnp.log(model.transition)
    lengths = data.lengths
    post = jax.vmap(lambda b, n: _posterior_one(b, li, lA, n, method, False))(lb, lengths)
    k = lb.shape[-1]
    w = data.prepared.weights
    resp = post.marginals.reshape((-1, k))  # zero at padded steps
    fam, counts = model.family.statistics_and_counts(data.prepared.data, resp, model.components,
                                                      data.prepared.center)
    nonempty = lengths > 0
    ll = jnp.sum(jnp.where(nonempty, post.log_likelihood, jnp.zeros_like(post.log_likelihood)))
    emissions = em.Stats(counts, fam, ll, jnp.sum(w), jnp.sum((w > 0).astype(w.dtype)))
    initial = jnp.sum(post.marginals[:, 0], axis=0)  # all-zero rows for empty sequences
    return HMMStats(emissions, initial, jnp.sum(post.transition_counts, axis=0),
                    jnp.sum(nonempty.astype(w.dtype)))


def m_step(stats: HMMStats, center: Any, previous: HMM, *, learn_initial: bool = True, learn_transition: bool = True,
           learn_emissions: bool = True, use_previous: bool | jax.Array = True) -> tuple[HMM, jax.Array, jax.Array]:
    r"""M-step of Baum–Welch: $\pi$, $A$ and the emissions from summed statistics (traceable).

    $\pi_k = \sum_b \gamma^{(b)}_0(k) / B$ and $A_{ij} = \sum_t \xi_t(i, j) / \sum_{t, j'} \xi_t(i, j')$ (a
    row with no expected transition keeps its previous values, and zeros stay zeros); the emissions come from the
    family's M-step on the $\gamma$-weighted statistics, with the engine's rule for collapsed components
    ([jaxprob.em.m_step][]). Parts that are not learnt are copied from `previous`.

    Args:
        stats: summed [HMMStats][jaxprob.hmm.HMMStats].
        center: the reference of the prepared data (`data.prepared.center`).
        previous: the [HMM][jaxprob.hmm.HMM] of the E-step (supplies the family and the fixed parts).
        learn_initial: update $\pi$ (static).
        learn_transition: update $A$ (static).
        learn_emissions: update the emission parameters (static).
        use_previous: traced bool; False ignores `previous` for collapsed components.

    Returns:
        `(model, collapsed, regularized)`: the new [HMM][jaxprob.hmm.HMM] and two `(K,)` bool flags.
    """
    family = previous.family
    k = stats.initial.shape[0]
    initial = stats.initial / jnp.maximum(stats.n_sequences, 1) if learn_initial else previous.initial
    if learn_transition:
        rows = jnp.sum(stats.transitions, axis=1, keepdims=True)
        transition = jnp.where(rows > 0, stats.transitions / jnp.where(rows > 0, rows, 1), previous.transition)
    else:
        transition = previous.transition
    if learn_emissions:
        prev = em.Mixture(jnp.full((k,), 1.0 / k, stats.initial.dtype), previous.components, family)
        mix, collapsed, regularized = em.m_step(family, stats.emissions, center, prev, use_previous)
        components = mix.components
    else:
        components = previous.components
        collapsed = regularized = jnp.zeros((k,), bool)
    return HMM(initial, transition, components, family), collapsed, regularized


def step(data: Sequences, model: HMM, *, method: str = "blocked") -> tuple[HMM, jax.Array]:
    """One Baum–Welch iteration on prepared sequences (traceable; cheap inside the caller's `jit`).

    Args:
        data: [Sequences][jaxprob.hmm.Sequences].
        model: the current [HMM][jaxprob.hmm.HMM].
        method: `"blocked"`, `"sequential"` or `"parallel"` (static).

    Returns:
        `(new_model, mean_log_likelihood)`, the latter per valid step under the *input* model.
    """
    stats = e_step(data, model, method=method)
    new, _, _ = m_step(stats, data.prepared.center, model)
    return new, stats.emissions.log_likelihood / stats.emissions.total_weight


_LEARN = ("learn_initial", "learn_transition", "learn_emissions")


def initial_models(data: Sequences, x_flat: Any, family: Family, n_states: int, *, key: jax.Array,
                   init_method: str = "kmeans++", n_init: int = 1, initial: ArrayLike | None = None,
                   transition: ArrayLike | None = None) -> HMM:
    r"""Starting models of the `n_init` restarts, stacked on a leading axis (traceable).

    The emissions are those of the engine's mixture initialisation on the pooled valid steps
    ([jaxprob.em.initial_models][]); $\pi$ and $A$ are `initial` and `transition`, uniform by default.

    Args:
        data: the [Sequences][jaxprob.hmm.Sequences].
        x_flat: `(B * T, ...)` the raw rows of `data` (padded rows weigh nothing).
        family: a [Family][jaxprob.em.Family].
        n_states: $K$ (static).
        key: a PRNG key.
        init_method: one of [INIT_METHODS][jaxprob.em.INIT_METHODS] (static).
        n_init: number of restarts (static).
        initial: optional `(K,)` starting $\pi$.
        transition: optional `(K, K)` starting $A$.

    Returns:
        An [HMM][jaxprob.hmm.HMM] whose leaves have a leading `(n_init,)` axis.
    """
    w = data.prepared.weights
    mix = em.initial_models(x_flat, family, n_states, key=key, sample_weight=w, init_method=init_method,
                            n_init=n_init)
    k = n_states
    if initial is None:
        initial = jnp.full((k,), 1.0 / k, w.dtype)
    if transition is None:
        transition = jnp.full((k, k), 1.0 / k, w.dtype)
    stack = lambda a: jnp.broadcast_to(a, (n_init,) + jnp.shape(a))  # noqa: E731
    return HMM(stack(initial), stack(transition), mix.components, jax.tree.map(stack, family))


def fit_from(data: Sequences, models: HMM, *, max_iter: int, tol: float, learn_initial: bool = True,
             learn_transition: bool = True, learn_emissions: bool = True, method: str = "blocked",
             e_step_fn: Callable | None = None, callback: Callable | None = None) -> tuple[HMM, FitInfo]:
    r"""Baum–Welch from stacked starting models on the engine's loop ([jaxprob.em.run][]), best restart kept.

    Traceable; every restart is one `lax.while_loop` and the restarts are vmapped. `e_step_fn` replaces the
    E-step (`model -> HMMStats`), e.g. to `psum` statistics over devices.

    Args:
        data: [Sequences][jaxprob.hmm.Sequences].
        models: an [HMM][jaxprob.hmm.HMM] with a leading `(n_init,)` axis on every leaf.
        max_iter: hard limit on iterations (static).
        tol: threshold on the change of the mean log-likelihood per valid step.
        learn_initial: update $\pi$ (static).
        learn_transition: update $A$ (static).
        learn_emissions: update the emissions (static).
        method: forward–backward method (static).
        e_step_fn: optional replacement E-step.
        callback: optional `callback(n_iter, mean_log_likelihood)` (see [jaxprob.em.run][]).

    Returns:
        `(model, info)`: an [HMM][jaxprob.hmm.HMM] and a [FitInfo][jaxprob.em.FitInfo].
    """
    center = data.prepared.center
    learn = dict(learn_initial=learn_initial, learn_transition=learn_transition, learn_emissions=learn_emissions)

    def e_fn(model):
        return e_step(data, model, method=method)

    if e_step_fn is not None:
        e_fn = e_step_fn

    def m_fn(stats, previous, use_previous):
        return m_step(stats, center, previous, use_previous=use_previous, **learn)

    def one(model):
        return em.run(model, None, lambda m: _as_loop_stats(e_fn(m)), lambda st, p, u: m_fn(st.hmm, p, u),
                      max_iter=max_iter, tol=tol, given=True, n_flags=model.initial.shape[-1], callback=callback)

    if models.initial.shape[0] == 1:
        states = jax.tree.map(lambda a: a[None], one(jax.tree.map(lambda a: a[0], models)))
    elif method == "blocked":
        # the blocked E-step picks its probability-space or log-space form by a `lax.cond` on the transition
        # matrix; vmapped over restarts that cond would run both forms, so the restarts run one after another
        states = lax.map(one, models)
    else:
        states = jax.vmap(one)(models)
    model, info = em.best_restart(states)
    return model, info


class _LoopStats(NamedTuple):
    """The loop reads `log_likelihood` and `total_weight` from the E-step's output."""

    hmm: HMMStats
    log_likelihood: jax.Array
    total_weight: jax.Array


def _as_loop_stats(stats: HMMStats) -> _LoopStats:
    return _LoopStats(stats, stats.emissions.log_likelihood, stats.emissions.total_weight)


# ---- the public fit ------------------------------------------------------------------------------------------
def _check_sequences(x, lengths, family: Family, name="x"):
    """Eager checks; returns `(x (B, T, ...), lengths (B,) int32, flat rows (B*T, ...) validated by the family)`."""
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None")
    if not is_tracer(x) and not isinstance(x, jax.Array):
        x = np.asarray(x)
    if lengths is None:
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(f"`{name}` must hold at least one step, got shape {tuple(x.shape)}")
        x = x[None]
    if x.ndim < 2:
        raise ValueError(f"`{name}` must be a padded batch (B, T, ...) when `lengths` is given, got shape "
                         f"{tuple(x.shape)}")
    b, t = x.shape[0], x.shape[1]
    if b < 1 or t < 1:
        raise ValueError(f"`{name}` must hold at least one sequence of one step, got shape {tuple(x.shape)}")
    if lengths is None:
        lengths = np.full((b,), t, np.int32)
    else:
        lengths = check_lengths(lengths, np.broadcast_to(np.zeros((), bool), (b, t, 1)))
    if is_tracer(x) or is_tracer(lengths):
        flat, _ = _flat(jnp.asarray(x), jnp.asarray(lengths))
    else:
        ln = np.asarray(lengths)
        mask = np.arange(t)[None, :] < ln[:, None]
        xa = np.asarray(x)
        flat = np.where(mask.reshape(mask.shape + (1,) * (xa.ndim - 2)), xa, xa[:, :1]).reshape((b * t,) + xa.shape[2:])
    flat = family.validate(flat, name)
    x = jnp.asarray(flat).reshape((b, t) + tuple(jnp.shape(flat)[1:]))
    return x, jnp.asarray(lengths, jnp.int32), flat


def _family_of(family, covariance_type):
    if family is None:
        return gaussian(covariance_type)
    if not isinstance(family, Family):
        raise TypeError(f"`family` must be a jaxprob.em.Family (see jaxprob.families), got {type(family).__name__}")
    return family


@jax.jit(static_argnames=("n_states", "init_method", "n_init"))
def _starts_jit(key, x, lengths, family, initial, transition, n_states, init_method, n_init):
    flat, w = _flat(x, lengths)
    data = Sequences(em.prepare(flat, family, w), lengths, x.shape[1])
    return initial_models(data, flat, family, n_states, key=key, init_method=init_method, n_init=n_init,
                          initial=initial, transition=transition)


@jax.jit(static_argnames=("max_iter", "method", "callback") + _LEARN)
def _fit_from_jit(models, x, lengths, tol, max_iter, method, callback, learn_initial, learn_transition,
                  learn_emissions):
    family = jax.tree.map(lambda a: a[0], models.family)
    data = prepare(x, family, lengths)
    return fit_from(data, models, max_iter=max_iter, tol=tol, method=method, callback=callback,
                    learn_initial=learn_initial, learn_transition=learn_transition, learn_emissions=learn_emissions)


def _fit_setup(x, n_states, key, lengths, family, covariance_type, n_init, init_method, init_model, initial,
               transition, learn_initial, learn_transition, learn_emissions, max_iter, tol, method, callback):
    """Eager checks of the fit arguments; returns `(x, lengths, starting models stacked on n_init, tol, learn,
    max_iter)`."""
    check_choice(method, "method", METHODS)
    check_choice(init_method, "init_method", em.INIT_METHODS)
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if not is_tracer(tol) and (not np.isfinite(float(tol)) or float(tol) < 0):
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable, got {type(callback).__name__}")
    learn = dict(learn_initial=bool(learn_initial), learn_transition=bool(learn_transition),
                 learn_emissions=bool(learn_emissions))
    if init_model is not None:
        _check_model(init_model, "init_model")
        if family is not None and family != init_model.family:
            raise ValueError("`family` differs from the family of `init_model`; give one of them")
        if initial is not None or transition is not None:
            raise ValueError("give `initial` / `transition` through `init_model` when it is given")
        family = init_model.family
    family = _family_of(family, covariance_type)
    x, lengths, flat = _check_sequences(x, lengths, family)
    n_states = check_int(n_states, "n_states", minimum=1)
    dtype = _float_dtype(jax.tree.leaves(flat)[0])
    tol = tol if is_tracer(tol) else np.asarray(tol, dtype)
    if init_model is not None:
        if init_model.n_states != n_states:
            raise ValueError(f"`init_model` has {init_model.n_states} states, not {n_states}")
        family.check_params(init_model.components, _n_features(flat))
        start = jax.tree.map(lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                             else a, init_model)
        models = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_init,) + jnp.shape(a)), start)
        return x, lengths, models, tol, learn, max_iter
    check_key(key)
    n_valid = int(np.sum(np.asarray(lengths))) if not is_tracer(lengths) else None
    if n_valid is not None and n_states > n_valid:
        raise ValueError(f"`n_states` must be at most the number of observed steps ({n_valid}), got {n_states}")
    initial = None if initial is None else _check_simplex(initial, "initial", (n_states,), dtype)
    transition = None if transition is None else _check_simplex(transition, "transition", (n_states, n_states),
                                                                dtype)
    models = _starts_jit(key, x, lengths, family, initial, transition, n_states, init_method, n_init)
    return x, lengths, models, tol, learn, max_iter


def fit(x: Any, n_states: int, *, key: jax.Array | None = None, lengths: ArrayLike | None = None,
        family: Family | None = None, covariance_type: str = "full", n_init: int = 1, init_method: str = "kmeans++",
        init_model: HMM | None = None, initial: ArrayLike | None = None, transition: ArrayLike | None = None,
        learn_initial: bool = True, learn_transition: bool = True, learn_emissions: bool = True, max_iter: int = 100,
        tol: float = 1e-4, method: str = "blocked", callback: Callable | None = None) -> tuple[HMM, FitInfo]:
    r"""Fit an HMM by Baum–Welch (EM) on the engine's loop, `n_init` restarts vmapped, the best one kept.

    Each iteration runs forward–backward on every sequence (one `vmap` over the padded batch), adds the
    statistics, and updates $\pi$, $A$ and the emissions (see [m_step][jaxprob.hmm.m_step]). Iterations stop
    when the mean log-likelihood per valid step changes by less than `tol`, after `max_iter` iterations, or on a
    non-finite log-likelihood (`info.nonfinite`, the last finite model returned). `info.trace` holds the mean
    log-likelihood per valid step before each M-step; times the number of valid steps it is the total
    log-likelihood of hmmlearn's `monitor_.history`.

    Args:
        x: `(T, ...)` one sequence, or with `lengths` a padded batch `(B, T, ...)` (see
            [pad_sequences][jaxprob.hmm.pad_sequences]); its values as the family takes them (`(…, D)` floats for
            a Gaussian).
        n_states: $K \ge 1$.
        key: a JAX PRNG key (required unless `init_model` is given).
        lengths: `(B,)` lengths of a padded batch.
        family: the emissions' [Family][jaxprob.em.Family] (default: Gaussian with `covariance_type`).
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"` (default family).
        n_init: number of restarts.
        init_method: how restarts start the emissions, one of [INIT_METHODS][jaxprob.em.INIT_METHODS].
        init_model: optional starting [HMM][jaxprob.hmm.HMM] (every restart starts there; its family is used).
        initial: optional `(K,)` starting $\pi$ when `init_model` is not given (default uniform).
        transition: optional `(K, K)` starting $A$ when `init_model` is not given (default uniform).
        learn_initial: update $\pi$ (else it stays at its starting value).
        learn_transition: update $A$.
        learn_emissions: update the emission parameters.
        max_iter: hard limit on iterations.
        tol: threshold on the change of the mean log-likelihood per valid step.
        method: forward–backward method, `"blocked"`, `"sequential"` or `"parallel"` (with `"blocked"` the
            restarts run one after another instead of vmapped; see the module's introduction).
        callback: optional `callback(n_iter, mean_log_likelihood)` called on the host after every iteration.

    Returns:
        `(model, info)`: the fitted [HMM][jaxprob.hmm.HMM] and a [FitInfo][jaxprob.em.FitInfo].

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import hmm
        >>> x = jnp.concatenate([jnp.zeros(50), jnp.full(50, 5.0), jnp.zeros(50)])[:, None]
        >>> x = x + 0.3 * jax.random.normal(jax.random.key(1), x.shape)
        >>> model, info = hmm.fit(x, 2, key=jax.random.key(0), covariance_type="diag")
        >>> sorted(model.means[:, 0].round(0).tolist()), [round(p, 2) for p in model.transition.diagonal().tolist()]
        ([0.0, 5.0], [0.99, 0.98])
    """
    x, lengths, models, tol, learn, max_iter = _fit_setup(
        x, n_states, key, lengths, family, covariance_type, n_init, init_method, init_model, initial, transition,
        learn_initial, learn_transition, learn_emissions, max_iter, tol, method, callback)
    return _fit_from_jit(models, x, lengths, tol, max_iter, method, callback, **learn)


# ---- data over several devices, data read chunk by chunk -----------------------------------------------------
_SHARDED: dict = {}


def _sharded_program(mesh, max_iter, method, learn_items):
    """One compiled `shard_map` program per mesh and static settings: every device holds a slice of the sequences,
    the statistics are the only values summed across devices (`psum`, once per iteration)."""
    from jax.sharding import PartitionSpec as P

    cache_key = (mesh, max_iter, method, learn_items)
    if cache_key in _SHARDED:
        return _SHARDED[cache_key]
    axis = mesh.axis_names[0]
    learn = dict(learn_items)

    def local(x, lengths, models, center, tol):
        family = jax.tree.map(lambda a: a[0], models.family)
        data = prepare(x, family, lengths, center=center)

        def e_step_fn(model):
            return jax.lax.psum(e_step(data, model, method=method), axis)

        return fit_from(data, models, max_iter=max_iter, tol=tol, method=method, e_step_fn=e_step_fn, **learn)

    # the scans' carries start replicated and become device-varying: no replication typing inside the program (the
    # outputs are replicated by construction: every device runs the same M-step on the same summed statistics)
    program = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(axis), P(axis), P(), P(), P()), out_specs=P(),
                                    check_vma=False))
    _SHARDED[cache_key] = program
    return program


@jax.jit(static_argnums=2)
def _pad_batch(x, lengths, n_pad):
    """Pad the batch with `n_pad` sequences of length 0 (copies of the first one): they contribute nothing."""
    extra = jnp.broadcast_to(x[:1], (n_pad,) + x.shape[1:])
    return jnp.concatenate([x, extra]), jnp.concatenate([lengths, jnp.zeros((n_pad,), lengths.dtype)])


@jax.jit
def _center_jit(x, lengths, family):
    flat, w = _flat(x, lengths)
    return em.weighted_center(flat, w)


def fit_sharded(x: Any, n_states: int, *, mesh: jax.sharding.Mesh, key: jax.Array | None = None,
                lengths: ArrayLike | None = None, family: Family | None = None, covariance_type: str = "full",
                n_init: int = 1, init_method: str = "kmeans++", init_model: HMM | None = None,
                initial: ArrayLike | None = None, transition: ArrayLike | None = None, learn_initial: bool = True,
                learn_transition: bool = True, learn_emissions: bool = True, max_iter: int = 100, tol: float = 1e-4,
                method: str = "blocked") -> tuple[HMM, FitInfo]:
    r"""Baum–Welch with the sequences split over the devices of a 1-D mesh (`shard_map`, statistics `psum`).

    Same model, starts, iterations and outputs as [fit][jaxprob.hmm.fit] with the same arguments: every device
    runs forward–backward on its sequences, the [HMMStats][jaxprob.hmm.HMMStats] are summed across devices, and
    every device runs the same M-step. The batch is padded with empty sequences (length 0, contributing nothing)
    to a multiple of the number of devices. The result depends on the number of devices only through the
    rounding of the sums.

    Args:
        x: `(T, ...)` one sequence, or with `lengths` a padded batch `(B, T, ...)`.
        n_states: $K \ge 1$.
        mesh: a 1-D `jax.sharding.Mesh` (e.g. [jaxprob.scale.sample_mesh][]).
        key: a JAX PRNG key (required unless `init_model` is given).
        lengths: `(B,)` lengths of a padded batch.
        family: the emissions' family (default: Gaussian with `covariance_type`).
        covariance_type: covariance type of the default family.
        n_init: number of restarts.
        init_method: one of [INIT_METHODS][jaxprob.em.INIT_METHODS].
        init_model: optional starting [HMM][jaxprob.hmm.HMM].
        initial: optional starting $\pi$.
        transition: optional starting $A$.
        learn_initial: update $\pi$.
        learn_transition: update $A$.
        learn_emissions: update the emissions.
        max_iter: hard limit on iterations.
        tol: threshold on the change of the mean log-likelihood per valid step.
        method: forward–backward method.

    Returns:
        `(model, info)` as [fit][jaxprob.hmm.fit] (replicated on the mesh).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import hmm, scale
        >>> x = jnp.concatenate([jnp.zeros((2, 30)), jnp.full((2, 30), 5.0)], axis=1)[..., None]
        >>> x = x + 0.3 * jax.random.normal(jax.random.key(1), x.shape)
        >>> model, info = hmm.fit_sharded(x, 2, lengths=jnp.array([60, 45]), mesh=scale.sample_mesh(),
        ...                               key=jax.random.key(0), covariance_type="diag")
        >>> sorted(round(m) for m in model.means[:, 0].tolist())
        [0, 5]
    """
    if not isinstance(mesh, jax.sharding.Mesh) or len(mesh.axis_names) != 1:
        raise TypeError("`mesh` must be a 1-D jax.sharding.Mesh (see jaxprob.scale.sample_mesh)")
    x, lengths, models, tol, learn, max_iter = _fit_setup(
        x, n_states, key, lengths, family, covariance_type, n_init, init_method, init_model, initial, transition,
        learn_initial, learn_transition, learn_emissions, max_iter, tol, method, None)
    fam = jax.tree.map(lambda a: a[0], models.family)
    center = _center_jit(x, lengths, fam)
    n_pad = -(-x.shape[0] // mesh.size) * mesh.size - x.shape[0]
    if n_pad:
        x, lengths = _pad_batch(x, lengths, n_pad)
    program = _sharded_program(mesh, max_iter, method, tuple(sorted(learn.items())))
    return program(x, lengths, models, center, tol)


@jax.jit(static_argnames=("method",))
def _chunk_stats_jit(acc, x, lengths, center, model, method):
    stats = e_step(prepare(x, model.family, lengths, center=center), model, method=method)
    return stats if acc is None else jax.tree.map(jnp.add, acc, stats)


@jax.jit
def _chunk_center_jit(acc, x, lengths):
    flat, w = _flat(x, lengths)
    return acc[0] + jnp.sum(w), acc[1] + w @ flat.reshape(flat.shape[0], -1).astype(w.dtype)


@jax.jit(static_argnames=_LEARN)
def _m_step_jit(stats, center, model, learn_initial, learn_transition, learn_emissions):
    return m_step(stats, center, model, learn_initial=learn_initial, learn_transition=learn_transition,
                  learn_emissions=learn_emissions)


def fit_chunked(x: Any, init_model: HMM, *, lengths: ArrayLike | None = None, chunk_size: int = 256,
                learn_initial: bool = True, learn_transition: bool = True, learn_emissions: bool = True,
                max_iter: int = 100, tol: float = 1e-4, method: str = "blocked") -> tuple[HMM, FitInfo]:
    r"""Exact Baum–Welch over a batch of sequences read `chunk_size` sequences at a time (larger than memory).

    One pass over the chunks is one iteration: the [HMMStats][jaxprob.hmm.HMMStats] of the chunks are added
    (one compiled function; the last chunk is padded with empty sequences), then the M-step runs on the sums, so
    the iterations are those of [fit][jaxprob.hmm.fit] from `init_model` up to the rounding of the sums. A first
    pass computes the mean of the valid steps, the reference of the statistics. `x` may be a NumPy array or a
    `np.memmap`: only one chunk is in memory at a time. Stops as `fit` (change of the mean log-likelihood per valid
    step below `tol`, `max_iter`, or a non-finite log-likelihood).

    Args:
        x: `(B, T, ...)` padded batch (NumPy, memory map or JAX), or `(T, ...)` one sequence without `lengths`.
        init_model: the starting [HMM][jaxprob.hmm.HMM] (its family is used).
        lengths: `(B,)` lengths (default: all $T$).
        chunk_size: sequences per chunk.
        learn_initial: update $\pi$.
        learn_transition: update $A$.
        learn_emissions: update the emissions.
        max_iter: hard limit on iterations.
        tol: threshold on the change of the mean log-likelihood per valid step.
        method: forward–backward method.

    Returns:
        `(model, info)`: an [HMM][jaxprob.hmm.HMM] and a [FitInfo][jaxprob.em.FitInfo] (one restart).

    Example:
        >>> import jax, numpy as np
        >>> from jaxprob import hmm
        >>> rng = np.random.default_rng(0)
        >>> x = np.concatenate([rng.normal(0, 1, (8, 20, 1)), rng.normal(5, 1, (8, 20, 1))], axis=1)
        >>> start, _ = hmm.fit(x[:2], 2, lengths=np.full(2, 40), key=jax.random.key(0), covariance_type="diag")
        >>> model, info = hmm.fit_chunked(x.astype(np.float32), start, lengths=np.full(8, 40), chunk_size=3)
        >>> bool(info.converged), sorted(model.means[:, 0].round(0).tolist())
        (True, [0.0, 5.0])
    """
    _check_model(init_model, "init_model")
    check_choice(method, "method", METHODS)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if not np.isfinite(float(tol)) or float(tol) < 0:
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")
    learn = dict(learn_initial=bool(learn_initial), learn_transition=bool(learn_transition),
                 learn_emissions=bool(learn_emissions))
    family = init_model.family
    if lengths is None and not (hasattr(x, "ndim") and x.ndim >= 2 and x.shape[0] >= 1):
        raise ValueError("`x` must be an array")
    if lengths is None:
        x = np.asarray(x)[None]
        lengths = np.full((1,), x.shape[1], np.int32)
    lengths = np.asarray(check_lengths(lengths, np.broadcast_to(np.zeros((), bool), (x.shape[0], x.shape[1], 1))))
    b = x.shape[0]
    size = min(chunk_size, b)

    def chunks():
        for i in range(0, b, size):
            xc, lc = np.asarray(x[i : i + size]), lengths[i : i + size]
            xc, lc, _ = _check_sequences(xc, lc, family)
            if xc.shape[0] < size:  # one compiled shape: pad with empty sequences
                xc, lc = _pad_batch(xc, lc, size - xc.shape[0])
            yield xc, lc

    first = next(chunks())[0]
    dtype = _float_dtype(first)
    family.check_params(init_model.components, first.shape[-1] if first.ndim == 3 else None)
    model = jax.tree.map(lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                         else a, init_model)
    k = model.n_states
    width = int(np.prod(first.shape[2:], dtype=np.int64))
    acc = (jnp.zeros((), dtype), jnp.zeros((width,), dtype))
    for xc, lc in chunks():
        acc = _chunk_center_jit(acc, xc, lc)
    center = (acc[1] / acc[0]).reshape(first.shape[2:])

    prev, n_iter, converged, nonfinite = -np.inf, 0, False, False
    trace = np.full(max_iter, np.nan)
    collapsed, regularized = np.zeros(k, bool), np.zeros(k, bool)
    good, good_ll = model, np.nan
    while True:
        stats = None
        for xc, lc in chunks():
            stats = _chunk_stats_jit(stats, xc, lc, center, model, method)
        ll = float(stats.emissions.log_likelihood / stats.emissions.total_weight)
        nonfinite = not np.isfinite(ll)
        if nonfinite:  # the last model whose likelihood was finite
            if n_iter > 0:
                model, ll = good, good_ll
            converged = False
            break
        good, good_ll = model, ll
        if converged or n_iter >= max_iter:
            break
        model, col, regd = _m_step_jit(stats, center, model, **learn)
        trace[n_iter] = ll
        n_iter += 1
        converged = abs(ll - prev) < tol
        prev = ll
        collapsed = np.asarray(col)
        regularized |= np.asarray(regd)
    info = em.info_of_one_run(converged=converged, n_iter=n_iter, log_likelihood=ll, trace=trace,
                              collapsed=collapsed, regularized=regularized, nonfinite=nonfinite, dtype=dtype)
    return model, info


def _n_features(flat):
    leaf = jax.tree.leaves(flat)[0]
    return leaf.shape[-1] if leaf.ndim == 2 else None


def _check_simplex(p, name, shape, dtype):
    p = as_float_array(p, name, len(shape), dtype=dtype)
    if p.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {tuple(p.shape)}")
    check_finite(p, name)
    if not is_tracer(p):
        a = np.asarray(p, np.float64)
        if np.any(a < 0) or np.any(np.abs(a.sum(-1) - 1) > 1e-4):
            raise ValueError(f"`{name}` must be non-negative and sum to one along its last axis")
    return p


# ---- evaluation ------------------------------------------------------------------------------------------------
def _eval_inputs(x, model, lengths):
    _check_model(model)
    single = lengths is None
    x, lengths, flat = _check_sequences(x, lengths, model.family)
    model.family.check_params(model.components, _n_features(flat))
    return x, lengths, single


@jax.jit(static_argnames=("what", "method"))
def _evaluate_jit(x, lengths, model, what, method):
    """Emission log-likelihoods and one kernel, in one program (no eager operations between them)."""
    b, t = x.shape[0], x.shape[1]
    flat, _ = _flat(x, lengths)
    lp = model.family.component_log_prob(flat, model.components)
    lb = lp.reshape((b, t, lp.shape[-1]))
    li, lA = jnp.log(model.initial).astype(lb.dtype), jnp.log(model.transition).astype(lb.dtype)
    if what == "score":
        fn = _FORWARD[method]
        return jax.vmap(lambda e, n: fn(e, li, lA, n)[1])(lb, lengths)
    if what == "viterbi":
        fn = _viterbi_parallel if method == "parallel" else _viterbi_sequential
        return jax.vmap(lambda e, n: fn(e, li, lA, n).path)(lb, lengths)
    gamma = jax.vmap(lambda e, n: _posterior_one(e, li, lA, n, method, False).marginals)(lb, lengths)
    return gamma if what == "proba" else _argmax_marginals(gamma)


def _evaluate(x, model, lengths, what, method):
    check_choice(method, "method", METHODS)
    x, lengths, single = _eval_inputs(x, model, lengths)
    out = _evaluate_jit(x, lengths, model, what, method)
    return out[0] if single else out


def score(x: Any, model: HMM, lengths: ArrayLike | None = None, *, method: str = "blocked") -> jax.Array:
    r"""Log-likelihood $\log p(x_{0:L})$ of each sequence.

    Args:
        x: `(T, ...)` one sequence, or with `lengths` a padded batch `(B, T, ...)`.
        model: an [HMM][jaxprob.hmm.HMM].
        lengths: `(B,)` lengths of a padded batch.
        method: `"blocked"`, `"sequential"` or `"parallel"` (see the module's introduction).

    Returns:
        A scalar for one sequence, else `(B,)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import families, hmm
        >>> from jaxprob.families.gaussian import make_params
        >>> model = hmm.make_hmm(jnp.array([1.0]), jnp.array([[1.0]]),
        ...                      make_params(jnp.zeros((1, 1)), jnp.ones((1, 1)), "diag"), families.gaussian("diag"))
        >>> round(float(hmm.score(jnp.zeros((2, 1)), model)), 4)  # two standard normal densities at 0
        -1.8379
    """
    return _evaluate(x, model, lengths, "score", method)


def predict_proba(x: Any, model: HMM, lengths: ArrayLike | None = None, *, method: str = "blocked") -> jax.Array:
    r"""Posterior marginals $\gamma_t(k) = p(z_t = k \mid x)$.

    Args:
        x: `(T, ...)` one sequence, or with `lengths` a padded batch `(B, T, ...)`.
        model: an [HMM][jaxprob.hmm.HMM].
        lengths: `(B,)` lengths of a padded batch.
        method: `"blocked"`, `"sequential"` or `"parallel"` (see the module's introduction).

    Returns:
        `(T, K)` or `(B, T, K)`, zero at padded steps.
    """
    return _evaluate(x, model, lengths, "proba", method)


def predict(x: Any, model: HMM, lengths: ArrayLike | None = None, *, algorithm: str = "viterbi",
            method: str = "sequential") -> jax.Array:
    r"""Decoded states: the Viterbi path (default) or the posterior mode at each step.

    Args:
        x: `(T, ...)` one sequence, or with `lengths` a padded batch `(B, T, ...)`.
        model: an [HMM][jaxprob.hmm.HMM].
        lengths: `(B,)` lengths of a padded batch.
        algorithm: `"viterbi"` (most probable path) or `"posterior"` ($\arg\max_k \gamma_t(k)$).
        method: `"sequential"` or `"parallel"`; `"blocked"` too with `algorithm="posterior"`.

    Returns:
        `(T,)` or `(B, T)` int32 states, `-1` at padded steps.
    """
    check_choice(algorithm, "algorithm", ("viterbi", "posterior"))
    if algorithm == "viterbi":
        _check_viterbi_method(method)
    return _evaluate(x, model, lengths, algorithm, method)


@jax.jit(static_argnames=("n_steps",))
def _sample_jit(key, model, n_steps):
    k_states, k_x = jax.random.split(key)
    states = _sample_states_jit(k_states, jnp.log(model.initial), jnp.log(model.transition), n_steps)
    return model.family.sample(k_x, model.components, states), states


def sample(model: HMM, n_steps: int, *, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Draw one sequence: states by [sample_states][jaxprob.hmm.sample_states], then $x_t \sim p(x \mid z_t)$.

    For several sequences, `jax.vmap` over keys.

    Args:
        model: an [HMM][jaxprob.hmm.HMM].
        n_steps: length $T \ge 1$.
        key: a JAX PRNG key.

    Returns:
        `(x, states)`: `(T, ...)` observations and `(T,)` int32 states.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import families, hmm
        >>> from jaxprob.families.gaussian import make_params
        >>> model = hmm.make_hmm(jnp.array([1.0, 0.0]), jnp.array([[0.0, 1.0], [1.0, 0.0]]),
        ...                      make_params(jnp.array([[-5.0], [5.0]]), jnp.ones((2, 1)) * 1e-4, "diag"),
        ...                      families.gaussian("diag"))
        >>> x, z = hmm.sample(model, 4, key=jax.random.key(0))
        >>> z.tolist(), x[:, 0].round(0).tolist()
        ([0, 1, 0, 1], [-5.0, 5.0, -5.0, 5.0])
    """
    _check_model(model)
    check_key(key)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    return _sample_jit(key, model, n_steps)


def n_parameters(model: HMM) -> int:
    r"""Free parameters: $(K - 1)$ for $\pi$, $K(K - 1)$ for $A$, and the family's emission parameters.

    Args:
        model: an [HMM][jaxprob.hmm.HMM].

    Returns:
        The count (a Python int).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import families, hmm
        >>> from jaxprob.families.gaussian import make_params
        >>> model = hmm.make_hmm(jnp.array([0.5, 0.5]), jnp.full((2, 2), 0.5),
        ...                      make_params(jnp.zeros((2, 3)), jnp.ones((2, 3)), "diag"), families.gaussian("diag"))
        >>> hmm.n_parameters(model)  # 1 + 2 + 2 * (3 means + 3 variances)
        15
    """
    _check_model(model)
    k = model.n_states
    return (k - 1) + k * (k - 1) + int(model.family.n_parameters(model.components))


def bic(x: Any, model: HMM, lengths: ArrayLike | None = None) -> jax.Array:
    r"""Bayesian information criterion $-2 \log p(x) + p \log n$ ($n$ valid steps; lower is better).

    Args:
        x: `(T, ...)` one sequence, or with `lengths` a padded batch `(B, T, ...)`.
        model: an [HMM][jaxprob.hmm.HMM].
        lengths: `(B,)` lengths of a padded batch.

    Returns:
        Scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import families, hmm
        >>> from jaxprob.families.gaussian import make_params
        >>> model = hmm.make_hmm(jnp.array([1.0]), jnp.array([[1.0]]),
        ...                      make_params(jnp.zeros((1, 1)), jnp.ones((1, 1)), "diag"), families.gaussian("diag"))
        >>> round(float(hmm.bic(jnp.zeros((4, 1)), model)), 4)  # 2 * 4 * 0.9189 + 2 * log 4
        10.1241
    """
    ll = score(x, model, lengths)
    n = np.shape(x)[0] if lengths is None else int(np.sum(np.asarray(lengths)))
    return -2.0 * jnp.sum(ll) + n_parameters(model) * np.log(n)
