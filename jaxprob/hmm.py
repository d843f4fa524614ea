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

Two methods compute the same numbers:

- `method="sequential"`: the textbook recursions under `lax.scan`, $O(T K^2)$ work and $T$ sequential steps.
  The right choice on CPUs.
- `method="parallel"`: `lax.associative_scan` over the elements
  $E_t(i, j) = \log A_{ij} + \log b_t(j)$ in the $(\operatorname{logsumexp}, +)$ semiring (the prefix products
  are the forward messages, the suffix products the backward ones; Särkkä and García-Fernández, 2021, and
  Hassan, Särkkä and García-Fernández, 2021). $O(T K^3)$ work but only $O(\log T)$ sequential steps: for long
  sequences on accelerators. Each element carries a max-normalised matrix and its log scale separately, so the
  products never grow with $T$.

**Viterbi.** The most probable path, by the max-product recursion with back-pointers (`"sequential"`) or by
max-plus prefix and suffix products (`"parallel"`: $z_t = \arg\max_k \delta_t(k) + \epsilon_t(k)$, the
max-marginals; the two agree whenever the most probable path is unique).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprob._validation import as_float_array, check_choice, check_int, check_key, is_tracer

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
]

METHODS = ("sequential", "parallel")


class Posterior(NamedTuple):
    """Output of [forward_backward][jaxprob.hmm.forward_backward]. Leading axis `B` only for a batch.

    Attributes:
        log_likelihood: `(B,)` $\\log p(x_{0:L})$ of each sequence.
        marginals: `(B, T, K)` posterior marginals $\\gamma_t(k) = p(z_t = k \\mid x)$, zero at padded steps.
        transition_counts: `(B, K, K)` expected number of transitions $\\sum_t \\xi_t(i, j)$.
        pairwise: `(B, T - 1, K, K)` the pairwise marginals $\\xi_t(i, j) = p(z_t = i, z_{t+1} = j \\mid x)$
            (zero where $t + 1$ is padded) when asked for with `pairwise=True`, else `None`.
    """

    log_likelihood: jax.Array
    marginals: jax.Array
    transition_counts: jax.Array
    pairwise: jax.Array | None = None


class Forward(NamedTuple):
    """Output of [forward][jaxprob.hmm.forward]. Leading axis `B` only for a batch.

    Attributes:
        log_likelihood: `(B,)` $\\log p(x_{0:L})$ of each sequence.
        log_filtered: `(B, T, K)` $\\log p(z_t = k \\mid x_{0:t})$; padded steps repeat the last valid one.
    """

    log_likelihood: jax.Array
    log_filtered: jax.Array


class ViterbiPath(NamedTuple):
    """Output of [viterbi][jaxprob.hmm.viterbi]. Leading axis `B` only for a batch.

    Attributes:
        path: `(B, T)` int32 most probable state sequence, `-1` at padded steps.
        log_prob: `(B,)` $\\log p(x_{0:L}, z_{0:L})$ of that path.
    """

    path: jax.Array
    log_prob: jax.Array


# ---- small numerical helpers --------------------------------------------------------------------------------
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
    """$(a \\otimes b)_{ij} = \\operatorname{logsumexp}_k(a_{ik} + b_{kj})$ on `(..., K, K)`."""
    return jax.nn.logsumexp(a[..., :, :, None] + b[..., None, :, :], axis=-2)


def _max_product(a, b):
    """$(a \\otimes b)_{ij} = \\max_k(a_{ik} + b_{kj})$ on `(..., K, K)`."""
    return jnp.max(a[..., :, :, None] + b[..., None, :, :], axis=-2)


def _scaled_combine(product):
    """The associative operator on (max-normalised matrix, log scale) pairs."""

    def combine(x, y):
        p, s = _maxnorm(product(x[0], y[0]))
        return p, x[1] + y[1] + s

    return combine


def _elements(lb, lA, length):
    """`(T, K, K)` elements $E_t(i, j) = \\log A_{ij} + \\log b_t(j)$, the identity at padded steps."""
    t = jnp.arange(lb.shape[0])
    e = lA[None] + lb[:, None, :]
    return jnp.where((t < length)[:, None, None], e, _log_identity(lA.shape[0], lb.dtype))


def _prefix(lb, li, lA, length, product):
    """Prefix products $E_0 \\otimes \\dots \\otimes E_t$ with $E_0$'s rows all $\\log\\pi + \\log b_0$.

    Every prefix then has identical rows: row 0 of prefix $t$ is the unnormalised forward message.
    Returns `(rows (T, K), log scales (T,))`.
    """
    e = _elements(lb, lA, length)
    e = e.at[0].set(jnp.broadcast_to(li + lb[0], e.shape[1:]))
    m, s = lax.associative_scan(_scaled_combine(product), _maxnorm(e))
    return m[:, 0, :], s


def _suffix(lb, lA, length, product):
    """Suffix products $E_{t+1} \\otimes \\dots \\otimes E_{T-1} \\otimes \\mathbf{0}$ (all-zero log matrix last).

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

    def step(a, inputs):
        lbt, t = inputs
        a_new, c = _lognorm(jax.nn.logsumexp(a[:, None] + lA, axis=0) + lbt)
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


def _posterior_one(lb, li, lA, length, method, pairwise):
    if method == "parallel":
        la, ll = _forward_parallel(lb, li, lA, length)
        lbeta = _backward_parallel(lb, lA, length)
    else:
        la, ll = _forward_sequential(lb, li, lA, length)
        lbeta = _backward_sequential(lb, lA, length)
    t = jnp.arange(lb.shape[0])
    lg, _ = _lognorm(la + lbeta)
    gamma = jnp.where((t < length)[:, None], jnp.exp(lg), jnp.zeros_like(lg))
    # xi_t(i, j) normalised per step t; XLA fuses the exp and the sum over t, so the (T - 1, K, K) array is
    # only materialised when the per-step marginals are asked for.
    lxi = la[:-1, :, None] + lA[None] + (lb[1:] + lbeta[1:])[:, None, :]
    z = _safe(jax.nn.logsumexp(lxi, axis=(1, 2)))
    valid = (t[1:] < length)[:, None, None]
    xi = jnp.where(valid, jnp.exp(lxi - z[:, None, None]), jnp.zeros_like(lxi))
    counts = jnp.sum(xi, axis=0)
    return Posterior(ll, gamma, counts, xi if pairwise else None)


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
    fn = _forward_parallel if method == "parallel" else _forward_sequential

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


def check_lengths(lengths, x, name: str = "lengths"):
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
def forward_backward(log_emissions, log_initial, log_transition, lengths=None, *, method: str = "sequential",
                     pairwise: bool = False) -> Posterior:
    r"""Posterior marginals, expected transition counts and log-likelihood of each sequence.

    Args:
        log_emissions: `(T, K)` $\log p(x_t \mid z_t = k)$ of one sequence, or `(B, T, K)` a padded batch.
        log_initial: `(K,)` $\log \pi$.
        log_transition: `(K, K)` $\log A$, rows indexed by the previous state.
        lengths: `(B,)` integer length of each sequence of a batch (default: all $T$); not for one sequence.
        method: `"sequential"` (`lax.scan`) or `"parallel"` (`lax.associative_scan`).
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
    """
    lb, li, lA, lengths = _check_inputs(log_emissions, log_initial, log_transition, lengths, method)
    return _forward_backward_jit(lb, li, lA, lengths, method, bool(pairwise))


def forward(log_emissions, log_initial, log_transition, lengths=None, *, method: str = "sequential") -> Forward:
    r"""Log-likelihood and filtered log-probabilities $\log p(z_t \mid x_{0:t})$ (the forward pass only).

    Args:
        log_emissions: `(T, K)` or `(B, T, K)` log emission probabilities.
        log_initial: `(K,)` $\log \pi$.
        log_transition: `(K, K)` $\log A$.
        lengths: `(B,)` lengths of a padded batch (default: all $T$).
        method: `"sequential"` or `"parallel"`.

    Returns:
        A [Forward][jaxprob.hmm.Forward].

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import hmm
        >>> out = hmm.forward(jnp.zeros((4, 3)), jnp.log(jnp.ones(3) / 3), jnp.log(jnp.ones((3, 3)) / 3))
        >>> round(float(out.log_likelihood), 6)  # every emission has probability one
        0.0
    """
    lb, li, lA, lengths = _check_inputs(log_emissions, log_initial, log_transition, lengths, method)
    return _forward_jit(lb, li, lA, lengths, method)


def viterbi(log_emissions, log_initial, log_transition, lengths=None, *, method: str = "sequential") -> ViterbiPath:
    r"""Most probable state sequence $\arg\max_z p(z, x)$ and its log joint probability.

    Ties go to the lowest state with `"sequential"`; `"parallel"` takes the arg max of the max-marginals at
    every step, which is the same path whenever the most probable path is unique.

    Args:
        log_emissions: `(T, K)` or `(B, T, K)` log emission probabilities.
        log_initial: `(K,)` $\log \pi$.
        log_transition: `(K, K)` $\log A$.
        lengths: `(B,)` lengths of a padded batch (default: all $T$).
        method: `"sequential"` or `"parallel"`.

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
    lb, li, lA, lengths = _check_inputs(log_emissions, log_initial, log_transition, lengths, method)
    return _viterbi_jit(lb, li, lA, lengths, method)


def posterior_decode(log_emissions, log_initial, log_transition, lengths=None, *,
                     method: str = "sequential") -> jax.Array:
    r"""The state of largest posterior marginal at each step, $\hat z_t = \arg\max_k \gamma_t(k)$.

    It maximises the expected number of correct states, not the probability of the whole path (the path
    may even use a transition of probability zero); see [viterbi][jaxprob.hmm.viterbi] for that.

    Args:
        log_emissions: `(T, K)` or `(B, T, K)` log emission probabilities.
        log_initial: `(K,)` $\log \pi$.
        log_transition: `(K, K)` $\log A$.
        lengths: `(B,)` lengths of a padded batch (default: all $T$).
        method: `"sequential"` or `"parallel"`.

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


def sample_states(log_initial, log_transition, n_steps: int, *, key) -> jax.Array:
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
