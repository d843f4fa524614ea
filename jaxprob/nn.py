r"""Neural building blocks: an Equinox MLP, one minibatch Optax training loop, a full-batch minimiser.

* [`MLP`][jaxprob.nn.MLP] — a multilayer perceptron as an `eqx.Module` acting on one sample `(d,)` or a batch
  `(n, d)` (weights stored as `(in, out)` matrices, so a batch is one matrix product per layer).
* [`train`][jaxprob.nn.train] — the generic training loop, model- and loss-agnostic: the loss is a function
  `loss_fn(model, batch) -> scalar` of a model and a tuple of arrays sharing their leading axis, so the same
  loop trains a classifier (`batch = (x, y)`) and an autoencoder (`batch = (x,)`). One epoch is one
  compiled program (`eqx.filter_jit` around a `lax.scan` of [`train_step`][jaxprob.nn.train_step] over shuffled
  minibatches drawn from an explicit key); the Python loop over epochs checks the validation loss for early stopping
  and prints progress.
* [`minimize`][jaxprob.nn.minimize] — full-batch optimisation of a smooth loss (L-BFGS by default) in one
  `lax.while_loop`, for convex problems solved to tolerance (linear-Gaussian likelihood, softmax regression).
* [`save_model`][jaxprob.nn.save_model] / [`load_model`][jaxprob.nn.load_model] — checkpoints: the leaves serialised by
  `eqx.tree_serialise_leaves` behind a small header (format version, payload length, SHA-256), written atomically.

The optional L2 penalty is $\lambda \sum_W \lVert W \rVert_F^2$ over the floating leaves of rank
$\ge 2$ (weight matrices; biases are not penalised).

Loss functions and optimizers are static to the compiled programs (hashed by identity): pass the same function
object and the same optimizer object on every call to reuse the compiled code. `optimizer=None` builds a
cached default, so repeated calls with defaults do not recompile either.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import secrets
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxprob import numerics
from jaxprob._validation import as_float_array, check_int, check_key, is_tracer

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "TrainInfo",
    "MinimizeInfo",
    "l2_penalty",
    "train_step",
    "train",
    "evaluate",
    "minimize",
    "CheckpointError",
    "CHECKPOINT_VERSION",
    "save_model",
    "load_model",
]

ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "identity": lambda x: x,
}
"""Activation functions of the MLPs, by name."""


# ----------------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------------
class MLP(eqx.Module):
    r"""Multilayer perceptron $f(x) = W_L\,\phi(\cdots \phi(x W_1 + b_1) \cdots) + b_L$.

    Attributes:
        weights: list of `(in, out)` matrices.
        biases: list of `(out,)` vectors.
        activation: name of the hidden activation (static), a key of `ACTIVATIONS`.
        final_activation: name of the output activation (static), `"identity"` for logits.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import nn
        >>> mlp = nn.MLP(3, 2, (8,), key=jax.random.key(0))
        >>> mlp(jnp.ones((5, 3))).shape, mlp(jnp.ones(3)).shape
        ((5, 2), (2,))
    """

    weights: list
    biases: list
    activation: str = eqx.field(static=True)
    final_activation: str = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, hidden: Sequence[int] = (32,), *, key,
                 activation: str = "tanh", final_activation: str = "identity", dtype=None):
        """Glorot-uniform weights and zero biases.

        Args:
            in_size: number of input features.
            out_size: number of outputs.
            hidden: widths of the hidden layers (empty for an affine map).
            key: a JAX PRNG key.
            activation: hidden activation, a key of `ACTIVATIONS`.
            final_activation: output activation, a key of `ACTIVATIONS`.
            dtype: floating dtype of the parameters (default: JAX's default float).
        """
        check_key(key)
        in_size = check_int(in_size, "in_size", minimum=1)
        out_size = check_int(out_size, "out_size", minimum=1)
        hidden = tuple(check_int(h, "hidden", minimum=1) for h in hidden)
        for name, value in (("activation", activation), ("final_activation", final_activation)):
            if value not in ACTIVATIONS:
                raise ValueError(f"`{name}` must be one of {sorted(ACTIVATIONS)}, got {value!r}")
        dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
        sizes = (in_size, *hidden, out_size)
        keys = jax.random.split(key, len(sizes) - 1)
        self.weights = [
            jax.random.uniform(k, (a, b), dtype, -1.0, 1.0) * math.sqrt(6.0 / (a + b))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]
        self.biases = [jnp.zeros((b,), dtype) for b in sizes[1:]]
        self.activation = activation
        self.final_activation = final_activation

    @property
    def in_size(self) -> int:
        """Number of input features `d` (the last axis of `x`)."""
        return self.weights[0].shape[0]

    @property
    def out_size(self) -> int:
        """Number of outputs."""
        return self.weights[-1].shape[1]

    def __call__(self, x):
        """Outputs for `x` of shape `(d,)` or `(n, d)` (same leading shape, last axis `out_size`).

        Raises:
            ValueError: when the last axis of `x` is not `in_size` (a shape, so checked under `jit` too).
        """
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.in_size:
            raise ValueError(
                f"this MLP expects inputs of shape ({self.in_size},) or (n, {self.in_size}) "
                f"({self.in_size} features), got shape {tuple(jnp.shape(x))}"
            )
        act = ACTIVATIONS[self.activation]
        h = x
        # every layer's product takes the library's precision policy (jaxprob.numerics): full float32 by default
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = act(numerics.matmul(h, w) + b)
        return ACTIVATIONS[self.final_activation](numerics.matmul(h, self.weights[-1]) + self.biases[-1])


# ----------------------------------------------------------------------------------------------------------
# penalty, step and epoch
# ----------------------------------------------------------------------------------------------------------
def l2_penalty(model: Any) -> jax.Array:
    r"""Sum of squares of the floating array leaves of rank $\ge 2$ (the weight matrices).

    Args:
        model: any pytree (an `eqx.Module`).

    Returns:
        Scalar $\sum_W \lVert W \rVert_F^2$.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import nn
        >>> float(nn.l2_penalty({"w": jnp.ones((2, 2)), "b": jnp.ones(3)}))
        4.0
    """
    leaves = [
        leaf for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)) if jnp.ndim(leaf) >= 2
    ]
    if not leaves:
        return jnp.zeros(())
    return sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)


def _loss(model, batch, loss_fn, key):
    # a stochastic loss (reparameterised draws, dropout) takes the key as a third argument
    return loss_fn(model, batch) if key is None else loss_fn(model, batch, key)


def _objective(model, batch, loss_fn, l2, key=None):
    return _loss(model, batch, loss_fn, key) + l2 * l2_penalty(model)


def _step(model, opt_state, batch, loss_fn, optimizer, l2, key=None):
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def obj(p):
        return _objective(eqx.combine(p, static), batch, loss_fn, l2, key)

    loss, grads = jax.value_and_grad(obj)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params, value=loss, grad=grads, value_fn=obj)
    params = optax.apply_updates(params, updates)
    return eqx.combine(params, static), opt_state, loss


@eqx.filter_jit
def train_step(model, opt_state, batch, loss_fn, optimizer, l2=0.0, *, key=None):
    r"""One optimisation step on one minibatch (compiled once per model structure, loss and optimizer).

    Args:
        model: the model (an `eqx.Module`); its inexact array leaves are trained.
        opt_state: `optimizer.init(eqx.filter(model, eqx.is_inexact_array))`.
        batch: tuple of arrays sharing their leading axis.
        loss_fn: `loss_fn(model, batch) -> scalar` (mean loss over the batch).
        optimizer: an Optax gradient transformation.
        l2: L2 penalty strength $\lambda$.
        key: for a stochastic loss `loss_fn(model, batch, key) -> scalar`, the JAX PRNG key of this step;
            `None` (the default) calls `loss_fn(model, batch)`.

    Returns:
        `(model, opt_state, loss)` where `loss` is the penalised loss before the step.

    Examples:
        >>> import jax, jax.numpy as jnp, optax, equinox as eqx
        >>> from jaxprob import nn
        >>> model = jnp.array([0.0])
        >>> def loss(m, batch):
        ...     return jnp.mean((batch[0] - m[0]) ** 2)
        >>> opt = optax.sgd(0.5)
        >>> state = opt.init(model)
        >>> model, state, l = nn.train_step(model, state, (jnp.array([2.0, 2.0]),), loss, opt)
        >>> float(l), model.tolist()
        (4.0, [2.0])
    """
    return _step(model, opt_state, batch, loss_fn, optimizer, l2, key)


@eqx.filter_jit
def _epoch(model, opt_state, data, key, loss_fn, optimizer, l2, batch_size, stochastic=False):
    n = data[0].shape[0]
    n_batches = -(-n // batch_size)
    step_keys = None
    if stochastic:  # one key per step for the loss, independent of the shuffling
        key, k_loss = jax.random.split(key)
        step_keys = jax.random.split(k_loss, n_batches)
    perm = jax.random.permutation(key, n)
    # the last partial batch is completed with the first samples of the same permutation
    idx = jnp.concatenate([perm, perm[: n_batches * batch_size - n]]).reshape(n_batches, batch_size)

    def body(carry, xs):
        m, s = carry
        ix, k = xs
        batch = tuple(a[ix] for a in data)
        m, s, loss = _step(m, s, batch, loss_fn, optimizer, l2, k)
        return (m, s), loss

    (model, opt_state), losses = jax.lax.scan(body, (model, opt_state), (idx, step_keys))
    return model, opt_state, losses


@eqx.filter_jit
def _evaluate(model, data, loss_fn, batch_size, key=None):
    n = data[0].shape[0]
    n_full = n // batch_size
    total = jnp.zeros(())
    if n_full:
        body_data = tuple(a[: n_full * batch_size].reshape(n_full, batch_size, *a.shape[1:]) for a in data)

        # chunk i of a stochastic loss gets fold_in(key, i)
        chunk_keys = None if key is None else jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n_full))

        def body(acc, xs):
            batch, k = xs
            return acc + _loss(model, batch, loss_fn, k) * batch_size, None

        total, _ = jax.lax.scan(body, total, (body_data, chunk_keys))
    rest = n - n_full * batch_size
    if rest:
        k = None if key is None else jax.random.fold_in(key, n_full)
        total = total + _loss(model, tuple(a[n_full * batch_size:] for a in data), loss_fn, k) * rest
    return total / n


def evaluate(model: Any, loss_fn: Callable, data: tuple[ArrayLike, ...], *, batch_size: int = 4096,
             key: jax.Array | None = None) -> jax.Array:
    """Mean of `loss_fn` over a data set, computed by chunks (exact when the loss is a per-sample mean).

    Args:
        model: the model.
        loss_fn: `loss_fn(model, batch) -> scalar` mean loss over a batch.
        data: tuple of arrays sharing their leading axis `n`.
        batch_size: chunk size (memory only; the result does not depend on it, except through the keys of a
            stochastic loss).
        key: for a stochastic loss `loss_fn(model, batch, key)`, a JAX PRNG key (chunk `i` gets
            `jax.random.fold_in(key, i)`); `None` calls `loss_fn(model, batch)`.

    Returns:
        Scalar mean loss (no penalty).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import nn
        >>> def loss(m, batch):
        ...     return jnp.mean((batch[0] - m) ** 2)
        >>> float(nn.evaluate(jnp.zeros(()), loss, (jnp.arange(5.0),), batch_size=2))
        6.0
    """
    data = _check_data(data, "data")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if key is not None:
        check_key(key)
    return _evaluate(model, data, loss_fn, min(batch_size, data[0].shape[0]), key)


def _check_data(data, name):
    if not isinstance(data, (tuple, list)) or len(data) == 0:
        raise TypeError(f"`{name}` must be a non-empty tuple of arrays sharing their leading axis")
    out = []
    for i, a in enumerate(data):
        a = a if isinstance(a, jax.Array) or is_tracer(a) else jnp.asarray(np.asarray(a))
        if a.ndim == 0:
            raise ValueError(f"`{name}[{i}]` must have a leading sample axis, got a scalar")
        if jnp.issubdtype(a.dtype, jnp.inexact) and not is_tracer(a):
            finite = np.isfinite(np.asarray(a)).reshape(a.shape[0], -1).all(axis=1)
            if not finite.all():
                bad = np.flatnonzero(~finite)
                raise ValueError(f"`{name}[{i}]` contains NaN or infinite values in {bad.size} sample(s), the "
                                 f"first at index {int(bad[0])}: every minibatch holding it would make the loss NaN")
        out.append(a)
    n = out[0].shape[0]
    for i, a in enumerate(out):
        if a.shape[0] != n:
            raise ValueError(f"`{name}[{i}]` has {a.shape[0]} samples but `{name}[0]` has {n}")
    if n == 0:
        raise ValueError(f"`{name}` has no samples")
    return tuple(out)


# ----------------------------------------------------------------------------------------------------------
# the training loop
# ----------------------------------------------------------------------------------------------------------
class TrainInfo(NamedTuple):
    """History of [`train`][jaxprob.nn.train].

    Attributes:
        train_loss: `(n_epochs,)` mean penalised minibatch loss of every epoch; NaN after `n_epochs_run`.
        val_loss: `(n_epochs,)` validation loss (unpenalised) after every epoch; all NaN without validation
            data.
        n_epochs_run: number of epochs run.
        best_epoch: epoch (0-based) of the returned model: lowest validation loss, or the last epoch.
        stopped_early: whether early stopping ended the training.
    """

    train_loss: np.ndarray
    val_loss: np.ndarray
    n_epochs_run: int
    best_epoch: int
    stopped_early: bool


@functools.lru_cache(maxsize=16)
def _adam(learning_rate: float):
    return optax.adam(learning_rate)


def _progress_line(epoch, n_epochs, loss, val, width=20):
    done = int(width * (epoch + 1) / n_epochs)
    bar = "#" * done + "." * (width - done)
    text = f"\repoch {epoch + 1:>{len(str(n_epochs))}}/{n_epochs} [{bar}] loss {loss:.4f}"
    if val is not None:
        text += f" val {val:.4f}"
    return text


def train(model: Any, loss_fn: Callable, data: tuple[ArrayLike, ...], *, key: jax.Array,
          optimizer: optax.GradientTransformation | None = None, learning_rate: float = 1e-3, n_epochs: int = 100,
          batch_size: int = 64, l2: float = 0.0, val_data: tuple[ArrayLike, ...] | None = None,
          patience: int | None = None, progress: bool | int = False, opt_state: optax.OptState | None = None,
          stochastic_loss: bool = False) -> tuple[Any, TrainInfo]:
    """Train a model by minibatch stochastic optimisation with Optax.

    Each epoch visits a fresh random permutation of the samples in minibatches of `batch_size` (the last
    partial batch is completed with samples from the start of the same permutation) and applies
    [`train_step`][jaxprob.nn.train_step] to each, inside one compiled `lax.scan`. After every epoch the validation loss
    is computed when `val_data` is given; with `patience` the training stops after `patience` epochs
    without improvement and the best model is returned.

    Args:
        model: an `eqx.Module` (or any pytree); its inexact array leaves are trained.
        loss_fn: `loss_fn(model, batch) -> scalar` mean loss over `batch`, a tuple of arrays sliced from
            `data`. Pass the same function object on every call to reuse the compiled epoch.
        data: tuple of training arrays sharing their leading axis `n` (e.g. `(x, y)` or `(x,)`).
        key: a JAX PRNG key for the shuffling.
        optimizer: an Optax gradient transformation; `None` means `optax.adam(learning_rate)` (cached).
        learning_rate: used only when `optimizer` is `None`.
        n_epochs: maximum number of epochs.
        batch_size: minibatch size (capped at `n`).
        l2: non-negative L2 penalty strength on the weight matrices (see [`l2_penalty`][jaxprob.nn.l2_penalty]).
        val_data: optional tuple of validation arrays, same structure as `data`.
        patience: stop after this many epochs without a lower validation loss (needs `val_data`).
        progress: `True` prints a progress bar with the losses after every epoch, an integer `k` every
            `k` epochs.
        opt_state: optional optimizer state to resume from (default: a fresh `optimizer.init`).
        stochastic_loss: the loss is random, `loss_fn(model, batch, key) -> scalar` (e.g. a variational bound
            estimated with reparameterised draws): every step gets its own key, drawn from `key` apart from the
            shuffling, and the validation loss of every epoch uses one fixed key, so that the epochs are compared
            on the same draws.

    Returns:
        `(model, info)`: the trained model (the best one on validation data when `val_data` is given) and
        a [`TrainInfo`][jaxprob.nn.TrainInfo].

    Raises:
        ValueError: naming the array and the first sample, when `data` or `val_data` holds NaN or
            infinite values (checked before training).
        FloatingPointError: naming the epoch and the step, when a minibatch loss becomes NaN or infinite during
            training (divergence); the training stops there.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import nn
        >>> x = jax.random.normal(jax.random.key(1), (256, 1))
        >>> def mse(model, batch):
        ...     return jnp.mean((model(batch[0])[:, 0] - 3.0 * batch[0][:, 0]) ** 2)
        >>> model = nn.MLP(1, 1, (), key=jax.random.key(0))
        >>> model, info = nn.train(model, mse, (x,), key=jax.random.key(2), learning_rate=0.1, n_epochs=30)
        >>> round(float(model.weights[0][0, 0]), 2)
        3.0
    """
    check_key(key)
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}")
    data = _check_data(data, "data")
    n = data[0].shape[0]
    n_epochs = check_int(n_epochs, "n_epochs", minimum=1)
    batch_size = min(check_int(batch_size, "batch_size", minimum=1), n)
    if not np.isfinite(float(l2)) or float(l2) < 0:
        raise ValueError(f"`l2` must be a finite non-negative number, got {l2}")
    if val_data is not None:
        val_data = _check_data(val_data, "val_data")
        if len(val_data) != len(data):
            raise ValueError(f"`val_data` has {len(val_data)} arrays but `data` has {len(data)}")
    if patience is not None:
        patience = check_int(patience, "patience", minimum=1)
        if val_data is None:
            raise ValueError("`patience` (early stopping) needs `val_data`")
    if isinstance(progress, bool):
        every = 1 if progress else 0
    else:
        every = check_int(progress, "progress", minimum=0)
    if optimizer is None:
        if not float(learning_rate) > 0:
            raise ValueError(f"`learning_rate` must be positive, got {learning_rate}")
        optimizer = _adam(float(learning_rate))
    if opt_state is None:
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    trainable = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    if not trainable:
        raise ValueError("`model` has no floating array leaves to train")
    dtype = jnp.result_type(*[leaf.dtype for leaf in trainable])
    l2 = jnp.asarray(l2, dtype)
    stochastic_loss = bool(stochastic_loss)
    val_key = None
    if stochastic_loss:
        key, val_key = jax.random.split(key)

    train_loss = np.full(n_epochs, np.nan)
    val_loss = np.full(n_epochs, np.nan)
    best_model, best_val, best_epoch, since_best = model, np.inf, 0, 0
    stopped_early = False
    epoch = -1
    n_batches = -(-n // batch_size)
    for epoch, k in enumerate(jax.random.split(key, n_epochs)):
        model, opt_state, losses = _epoch(model, opt_state, data, k, loss_fn, optimizer, l2, batch_size,
                                          stochastic_loss)
        losses = np.asarray(losses)
        if not np.all(np.isfinite(losses)):
            if every:
                print(file=sys.stdout, flush=True)
            step = int(np.flatnonzero(~np.isfinite(losses))[0])
            raise FloatingPointError(
                f"non-finite training loss ({losses[step]}) at epoch {epoch + 1}, step {step + 1} of {n_batches} "
                f"(global step {epoch * n_batches + step + 1}): the loss or its gradient overflowed on that "
                f"minibatch; lower the learning rate, rescale the data, or use a numerically stable loss"
            )
        train_loss[epoch] = float(np.mean(losses))
        val = None
        if val_data is not None:
            val = float(_evaluate(model, val_data, loss_fn, min(4096, val_data[0].shape[0]), val_key))
            val_loss[epoch] = val
            if val < best_val:
                best_model, best_val, best_epoch, since_best = model, val, epoch, 0
            else:
                since_best += 1
        if every and (epoch % every == 0 or epoch == n_epochs - 1):
            line = _progress_line(epoch, n_epochs, train_loss[epoch], val)
            print(line, end="", file=sys.stdout, flush=True)
        if patience is not None and since_best >= patience:
            stopped_early = True
            break
    if every:
        print(file=sys.stdout, flush=True)
    if val_data is None:
        best_model, best_epoch = model, epoch
    return best_model, TrainInfo(train_loss, val_loss, epoch + 1, best_epoch, stopped_early)


# ----------------------------------------------------------------------------------------------------------
# full-batch minimisation
# ----------------------------------------------------------------------------------------------------------
class MinimizeInfo(NamedTuple):
    """Diagnostics of [`minimize`][jaxprob.nn.minimize] (a pytree of arrays).

    Attributes:
        converged: bool, the gradient norm fell below `tol`.
        n_iter: number of iterations run.
        loss: final loss value.
        grad_norm: final Euclidean norm of the gradient.
        loss_trace: `(max_iter,)` loss before every iteration; NaN after `n_iter`.
        nonfinite: bool, a non-finite loss or gradient stopped the iterations (the last finite parameters are
            returned).
    """

    converged: jax.Array
    n_iter: jax.Array
    loss: jax.Array
    grad_norm: jax.Array
    loss_trace: jax.Array
    nonfinite: jax.Array


@functools.lru_cache(maxsize=1)
def _lbfgs():
    return optax.lbfgs()


@eqx.filter_jit
def _minimize(fun, params, args, optimizer, max_iter, tol):
    def value_fn(p):
        return fun(p, *args)

    vg = jax.value_and_grad(value_fn)
    value, grad = vg(params)
    dtype = value.dtype

    def cond(c):
        p, s, v, g, it, trace, bad = c
        return (it < max_iter) & (optax.tree.norm(g) > tol) & ~bad

    def body(c):
        p, s, v, g, it, trace, bad = c
        updates, s_new = optimizer.update(g, s, p, value=v, grad=g, value_fn=value_fn)
        p_new = optax.apply_updates(p, updates)
        v_new, g_new = vg(p_new)
        bad = ~jnp.isfinite(v_new) | ~jnp.isfinite(optax.tree.norm(g_new))
        keep = lambda a, b: jnp.where(bad, a, b)  # noqa: E731
        return (jax.tree.map(keep, p, p_new), jax.tree.map(keep, s, s_new), keep(v, v_new),
                jax.tree.map(keep, g, g_new), it + 1, trace.at[it].set(v), bad)

    init = (params, optimizer.init(params), value, grad, jnp.asarray(0, jnp.int32),
            jnp.full((max_iter,), jnp.nan, dtype), ~jnp.isfinite(value))
    p, s, v, g, it, trace, bad = jax.lax.while_loop(cond, body, init)
    gn = optax.tree.norm(g)
    return p, MinimizeInfo(gn <= tol, it, v, gn, trace, bad)


def minimize(fun: Callable, params: Any, *args: Any, optimizer: optax.GradientTransformation | None = None,
             max_iter: int = 500, tol: float = 1e-6) -> tuple[Any, MinimizeInfo]:
    """Minimise a smooth function of a pytree of parameters with a full-batch Optax optimizer.

    Runs `optimizer` (L-BFGS with a zoom line search by default) inside one `lax.while_loop` until the
    gradient norm is at most `tol` or `max_iter` iterations. Any Optax transformation works
    (`optax.adam`, `optax.sgd`...); the loss value, gradient and `value_fn` are passed to `update` as
    extra arguments, as line searches need.

    Args:
        fun: `fun(params, *args) -> scalar`. Pass the same function object on every call to reuse the
            compiled loop.
        params: initial parameters (a pytree of floating arrays).
        *args: data passed to `fun` (arrays).
        optimizer: an Optax gradient transformation; `None` means `optax.lbfgs()` (cached).
        max_iter: hard limit on iterations (static: the loss trace has this length).
        tol: stop when the Euclidean norm of the gradient is at most `tol`.

    Returns:
        `(params, info)`: the minimiser and a [`MinimizeInfo`][jaxprob.nn.MinimizeInfo].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import nn
        >>> def f(p, c):
        ...     return jnp.sum((p - c) ** 2)
        >>> p, info = nn.minimize(f, jnp.zeros(2), jnp.array([1.0, -2.0]))
        >>> p.round(4).tolist(), bool(info.converged)
        ([1.0, -2.0], True)
    """
    if not callable(fun):
        raise TypeError(f"`fun` must be callable, got {type(fun).__name__}")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if not is_tracer(tol) and (not np.isfinite(float(tol)) or float(tol) < 0):
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("`params` has no array leaves")
    for leaf in leaves:
        as_float_array(leaf, "params")
    if optimizer is None:
        optimizer = _lbfgs()
    dtype = jnp.result_type(*leaves)
    return _minimize(fun, params, tuple(args), optimizer, max_iter, jnp.asarray(tol, dtype))


# ----------------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------------
# A checkpoint is a fixed header followed by the payload (the leaves as `eqx.tree_serialise_leaves` writes them):
#   magic (8 bytes) | format version (uint32, little-endian) | payload length (uint64) | SHA-256 of the payload
# The length tells a truncated file from one with trailing data, the digest a corrupted payload, the magic a
# foreign file; the version lets a later format be told apart from this one.
_MAGIC = b"JXPCKPT\x00"
CHECKPOINT_VERSION = 1
"""The checkpoint format version that [save_model][jaxprob.nn.save_model] writes and
[load_model][jaxprob.nn.load_model] reads."""
_HEADER = struct.Struct("<8sIQ32s")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded: empty, truncated, corrupted, foreign, of an unknown format version,
    or not matching the structure it is loaded into. The message names the file and the reason."""


def save_model(path: str | os.PathLike, model: Any) -> None:
    """Save the array leaves of a model (or any pytree, e.g. an optimizer state) as a checkpoint, atomically.

    The file holds a header (format version [CHECKPOINT_VERSION][jaxprob.nn.CHECKPOINT_VERSION], payload length,
    SHA-256 of the payload) and the leaves serialised by `eqx.tree_serialise_leaves`. It is written to a
    temporary file in the same folder, flushed to disk (`fsync`) and renamed over `path` (`os.replace`, atomic on
    POSIX and Windows): an exception or a kill during the save leaves the previous checkpoint at `path` intact.

    Args:
        path: file path (`.eqx` by convention).
        model: the pytree to save.

    Examples:
        >>> import tempfile, os, jax.numpy as jnp
        >>> from jaxprob import nn
        >>> path = os.path.join(tempfile.mkdtemp(), "params.eqx")
        >>> nn.save_model(path, {"w": jnp.ones((2, 2))})
        >>> nn.load_model(path, {"w": jnp.zeros((2, 2))})["w"].tolist()
        [[1.0, 1.0], [1.0, 1.0]]
    """
    path = os.fspath(path)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, model)  # before touching the disk: a failure here writes nothing
    payload = buffer.getvalue()
    header = _HEADER.pack(_MAGIC, CHECKPOINT_VERSION, len(payload), hashlib.sha256(payload).digest())
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename durable: on POSIX a rename is on disk once its folder is synced (not possible on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_checkpoint(path: str) -> bytes:
    """The verified payload of a checkpoint file, or a CheckpointError saying what is wrong with it."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise CheckpointError(f"checkpoint {path!r} is empty (0 bytes)")
    if not data.startswith(_MAGIC[: len(data)]):
        raise CheckpointError(
            f"{path!r} is not a jaxprob checkpoint (no jaxprob header; a file written by "
            "`eqx.tree_serialise_leaves` itself loads with `eqx.tree_deserialise_leaves`)"
        )
    if len(data) < _HEADER.size:
        raise CheckpointError(
            f"checkpoint {path!r} is truncated: {len(data)} bytes, shorter than its {_HEADER.size}-byte header"
        )
    _, version, length, digest = _HEADER.unpack_from(data)
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path!r} has format version {version}; this jaxprob reads version {CHECKPOINT_VERSION}"
        )
    payload = data[_HEADER.size :]
    if len(payload) < length:
        raise CheckpointError(f"checkpoint {path!r} is truncated: {len(payload)} of {length} payload bytes")
    if len(payload) > length:
        raise CheckpointError(
            f"checkpoint {path!r} has {len(payload) - length} bytes of trailing data after its {length}-byte payload"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"checkpoint {path!r} is corrupted: the SHA-256 of its payload does not match its header")
    return payload


def load_model(path: str | os.PathLike, like: Any) -> Any:
    """Load a checkpoint written by [save_model][jaxprob.nn.save_model] into a pytree of the same structure.

    The file is verified before anything is deserialised: its header, length and SHA-256.

    Args:
        path: file written by [save_model][jaxprob.nn.save_model].
        like: a pytree with the same structure, shapes and dtypes (e.g. a freshly initialised model).

    Returns:
        `like` with its leaves replaced by the saved ones.

    Raises:
        CheckpointError: (a `ValueError`) naming the file, when it is empty, truncated, corrupted, followed by
            trailing data, not a jaxprob checkpoint, of another format version, or when its leaves do not match
            `like` (number, shapes or dtypes).
        FileNotFoundError: when there is no file at `path`.

    Examples:
        >>> import tempfile, os, jax, jax.numpy as jnp
        >>> from jaxprob import nn
        >>> mlp = nn.MLP(2, 1, (4,), key=jax.random.key(0))
        >>> path = os.path.join(tempfile.mkdtemp(), "mlp.eqx")
        >>> nn.save_model(path, mlp)
        >>> back = nn.load_model(path, nn.MLP(2, 1, (4,), key=jax.random.key(1)))
        >>> bool(jnp.all(back.weights[0] == mlp.weights[0]))
        True
    """
    path = os.fspath(path)
    payload = _read_checkpoint(path)
    f = io.BytesIO(payload)
    try:
        out = eqx.tree_deserialise_leaves(f, like)
    except Exception as e:  # a leaf of another shape or dtype, or fewer leaves saved than `like` holds
        raise CheckpointError(f"checkpoint {path!r} does not match the structure of `like`: {e}") from e
    if f.tell() != len(payload):
        raise CheckpointError(
            f"checkpoint {path!r} does not match the structure of `like`: it holds more leaves "
            f"({len(payload) - f.tell()} bytes left unread)"
        )
    return out
