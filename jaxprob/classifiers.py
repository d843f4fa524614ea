r"""Discriminative classifiers: cross-entropy on logits, softmax regression, MLP, decision boundaries.

A classifier maps features to logits $z = f_\theta(x) \in \mathbb R^C$; class probabilities are
$p(c \mid x) = \operatorname{softmax}(z)_c$ ([`jaxprob.softmax`][jaxprob.densities.softmax],
[`jaxprob.log_softmax`][jaxprob.densities.log_softmax]) and the model is trained by minimising the cross-entropy (the
negative log-likelihood of the labels)

$$
\mathcal L(\theta) = -\frac1n \sum_i \log \operatorname{softmax}(f_\theta(x_i))_{y_i}
+ \lambda \sum_W \lVert W \rVert_F^2 .
$$

* [`SoftmaxRegression`][jaxprob.classifiers.SoftmaxRegression] (multinomial logistic regression), $f(x) = x W + b$:
  linear decision boundaries. The loss is convex; [`fit_softmax_regression`][jaxprob.classifiers.fit_softmax_regression]
  solves it to tolerance with full-batch L-BFGS.
* an MLP ([`mlp_classifier`][jaxprob.classifiers.mlp_classifier], a [`jaxprob.nn.MLP`][jaxprob.nn.MLP]): curved
  boundaries, trained by minibatches.
* [`fit`][jaxprob.classifiers.fit] trains any classifier module with the generic loop
  [`jaxprob.nn.train`][jaxprob.nn.train] (minibatches from an explicit key, a compiled step, optional L2 penalty, early
  stopping on validation loss, progress bar).

Features in float16 or bfloat16 are computed in float32 (the library's policy). A model checks the number of
features it is given: `x` with another number raises a `ValueError` that says how many it expects.

The generative Bayes classifier lives in [`jaxprob.bayes`][jaxprob.bayes]; the metrics in
[`jaxprob.metrics`][jaxprob.metrics].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike, DTypeLike

from jaxprob import nn
from jaxprob._validation import as_float_array, as_labels, check_finite, check_int, check_key, check_labels

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "SoftmaxRegression",
    "softmax_cross_entropy",
    "mlp_classifier",
    "fit",
    "fit_softmax_regression",
    "predict_logits",
    "predict_log_proba",
    "predict_proba",
    "predict",
    "decision_boundary_grid",
    "plot_decision_boundary",
]


class SoftmaxRegression(eqx.Module):
    """Multinomial logistic regression, logits $z = x W + b$.

    Attributes:
        weight: `(d, C)`.
        bias: `(C,)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> model = classifiers.SoftmaxRegression.zeros(3, 2)
        >>> model(jnp.ones((4, 3))).shape
        (4, 2)
    """

    weight: jax.Array
    bias: jax.Array

    @staticmethod
    def zeros(n_features: int, n_classes: int, dtype=None) -> SoftmaxRegression:
        """All-zero parameters (uniform class probabilities).

        Args:
            n_features: `d`.
            n_classes: `C`.
            dtype: floating dtype (default: JAX's default float).

        Returns:
            A [`SoftmaxRegression`][jaxprob.classifiers.SoftmaxRegression].
        """
        d = check_int(n_features, "n_features", minimum=1)
        c = check_int(n_classes, "n_classes", minimum=2)
        dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
        return SoftmaxRegression(jnp.zeros((d, c), dtype), jnp.zeros((c,), dtype))

    @property
    def n_features(self) -> int:
        """Number of input features `d`."""
        return self.weight.shape[0]

    def __call__(self, x):
        """Logits for `x` of shape `(d,)` or `(n, d)`.

        Raises:
            ValueError: when the last axis of `x` is not `n_features` (a shape, so checked under `jit` too).
        """
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.n_features:
            raise ValueError(
                f"this SoftmaxRegression expects inputs of shape ({self.n_features},) or (n, {self.n_features}) "
                f"({self.n_features} features), got shape {tuple(jnp.shape(x))}"
            )
        return x @ self.weight + self.bias


# ----------------------------------------------------------------------------------------------------------
# loss
# ----------------------------------------------------------------------------------------------------------
def _xent(logits, labels):
    logp = jax.nn.log_softmax(logits, axis=-1)
    if labels.ndim == logits.ndim:  # one-hot or soft labels
        return -jnp.sum(labels * logp, axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Per-sample cross-entropy $-\sum_c q_c \log \operatorname{softmax}(z)_c$ computed from logits.

    Computed with a log-sum-exp (no overflow for large logits, no `log(0)`).

    Args:
        logits: `(n, C)` (or `(C,)`) unnormalised log-probabilities.
        labels: `(n,)` integer labels in `[0, C)`, or `(n, C)` one-hot / probability rows $q$.

    Returns:
        `(n,)` losses (a scalar for one sample).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> z = jnp.array([[0.0, jnp.log(3.0)], [0.0, 1000.0]])
        >>> [round(float(v), 4) for v in classifiers.softmax_cross_entropy(z, jnp.array([1, 0]))]
        [0.2877, 1000.0]
        >>> onehot = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> [round(float(v), 4) for v in classifiers.softmax_cross_entropy(z, onehot)]
        [0.2877, 1000.0]
    """
    logits = as_float_array(logits, "logits", (1, 2))
    check_finite(logits, "logits")
    c = logits.shape[-1]
    labels = labels if isinstance(labels, jax.Array) else jnp.asarray(np.asarray(labels))
    if jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape != logits.shape:
            raise ValueError(
                f"one-hot `labels` must have the shape of `logits` {tuple(logits.shape)}, "
                f"got {tuple(labels.shape)}"
            )
        check_finite(labels, "labels")
        return _xent(logits, labels.astype(logits.dtype))
    if labels.ndim != logits.ndim - 1 or labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"integer `labels` must have shape {tuple(logits.shape[:-1])} to match `logits`, "
            f"got {tuple(labels.shape)}"
        )
    if labels.ndim == 0:
        check_labels(labels[None], "labels", c)
    else:
        check_labels(labels, "labels", c)
    return _xent(logits, labels)


def _ce_loss(model, batch):
    x, y = batch
    return jnp.mean(_xent(model(x), y))


def _ce_objective(params, x, y, l2):
    model = SoftmaxRegression(*params)
    return jnp.mean(_xent(model(x), y)) + l2 * jnp.sum(jnp.square(params[0]))


# ----------------------------------------------------------------------------------------------------------
# construction and training
# ----------------------------------------------------------------------------------------------------------
def mlp_classifier(n_features: int, n_classes: int, hidden: Sequence[int] = (32,), *, key: jax.Array,
                   activation: str = "tanh", dtype: DTypeLike | None = None) -> nn.MLP:
    """An MLP that outputs `n_classes` logits (a [`jaxprob.nn.MLP`][jaxprob.nn.MLP] with an identity output layer).

    Args:
        n_features: `d`.
        n_classes: `C`, at least 2.
        hidden: hidden layer widths.
        key: a JAX PRNG key for the initial weights.
        activation: hidden activation (see `jaxprob.nn.ACTIVATIONS`).
        dtype: floating dtype of the parameters.

    Returns:
        A [`jaxprob.nn.MLP`][jaxprob.nn.MLP].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> mlp = classifiers.mlp_classifier(2, 3, (16,), key=jax.random.key(0))
        >>> mlp(jnp.zeros((5, 2))).shape
        (5, 3)
    """
    check_int(n_classes, "n_classes", minimum=2)
    return nn.MLP(n_features, n_classes, hidden, key=key, activation=activation, dtype=dtype)


def _n_outputs(model, x):
    if not callable(model):
        raise TypeError(
            f"`model` must be a callable classifier (e.g. an eqx.Module), got {type(model).__name__}"
        )
    try:
        out = eqx.filter_eval_shape(model, jax.ShapeDtypeStruct(x.shape, x.dtype))
    except (TypeError, ValueError) as e:  # e.g. a model built for another number of features
        raise ValueError(f"`model` cannot be applied to `x` of shape {tuple(x.shape)}: {e}") from e
    if out.shape != (x.shape[0], out.shape[-1]) or out.shape[-1] < 2:
        raise ValueError(
            f"`model` must map `x` {tuple(x.shape)} to (n, C >= 2) logits, got {tuple(out.shape)}"
        )
    return out.shape[-1]


def _check_xy(x, y, n_classes=None, name_x="x", name_y="y"):
    x = as_float_array(x, name_x, 2)
    check_finite(x, name_x)
    y = as_labels(y, name_y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"`{name_y}` has {y.shape[0]} labels but `{name_x}` has {x.shape[0]} samples")
    y, n_classes = check_labels(y, name_y, n_classes)
    return x, y, n_classes


def _check_two_classes(y, name="y"):
    arr = np.asarray(y)
    if np.unique(arr).size < 2:
        raise ValueError(f"`{name}` holds a single class ({int(arr[0])}): a classifier needs at least two")


def fit(model: eqx.Module, x: ArrayLike, y: ArrayLike, *, key: jax.Array,
        optimizer: optax.GradientTransformation | None = None, learning_rate: float = 1e-2, n_epochs: int = 100,
        batch_size: int = 64, l2: float = 0.0, val_data: tuple[ArrayLike, ArrayLike] | None = None,
        patience: int | None = None, progress: bool | int = False) -> tuple[eqx.Module, nn.TrainInfo]:
    """Train a classifier (any module mapping `(n, d)` to `(n, C)` logits) by minibatch cross-entropy.

    A thin layer over [`jaxprob.nn.train`][jaxprob.nn.train] with the mean cross-entropy as loss.

    Args:
        model: the initial classifier, e.g. [`SoftmaxRegression.zeros`][jaxprob.classifiers.SoftmaxRegression.zeros] or
            [`mlp_classifier`][jaxprob.classifiers.mlp_classifier].
        x: `(n, d)` features.
        y: `(n,)` integer labels in `[0, C)`, at least two classes present.
        key: a JAX PRNG key for the minibatch shuffling.
        optimizer: an Optax gradient transformation; `None` means `optax.adam(learning_rate)`.
        learning_rate: used when `optimizer` is `None`.
        n_epochs: maximum number of epochs.
        batch_size: minibatch size.
        l2: L2 penalty strength on the weight matrices.
        val_data: optional `(x_val, y_val)` for the validation loss and early stopping.
        patience: early-stopping patience in epochs (needs `val_data`).
        progress: print a progress bar with the losses (`True` or every `k` epochs).

    Returns:
        `(model, info)`: the trained classifier and a [`jaxprob.nn.TrainInfo`][jaxprob.nn.TrainInfo].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (100, 2)) - 2,
        ...                      jax.random.normal(jax.random.key(2), (100, 2)) + 2])
        >>> y = jnp.repeat(jnp.arange(2), 100)
        >>> model, info = classifiers.fit(classifiers.SoftmaxRegression.zeros(2, 2), x, y,
        ...                               key=jax.random.key(0), n_epochs=20)
        >>> float(jnp.mean(classifiers.predict(x, model) == y)) > 0.95
        True
    """
    check_key(key)
    x = as_float_array(x, "x", 2)
    c = _n_outputs(model, x)
    x, y, _ = _check_xy(x, y, c)
    _check_two_classes(y)
    if val_data is not None:
        if not isinstance(val_data, (tuple, list)) or len(val_data) != 2:
            raise TypeError("`val_data` must be a pair (x_val, y_val)")
        xv, yv, _ = _check_xy(val_data[0], val_data[1], c, "val_data[0]", "val_data[1]")
        if xv.shape[1] != x.shape[1]:
            raise ValueError(f"`val_data[0]` has {xv.shape[1]} features but `x` has {x.shape[1]}")
        val_data = (xv, yv)
    return nn.train(model, _ce_loss, (x, y), key=key, optimizer=optimizer, learning_rate=learning_rate,
                    n_epochs=n_epochs, batch_size=batch_size, l2=l2, val_data=val_data, patience=patience,
                    progress=progress)


def fit_softmax_regression(x: ArrayLike, y: ArrayLike, *, n_classes: int | None = None, l2: float = 0.0,
                           optimizer: optax.GradientTransformation | None = None, max_iter: int = 1000,
                           tol: float = 1e-6) -> tuple[SoftmaxRegression, nn.MinimizeInfo]:
    r"""Softmax regression fitted to tolerance by full-batch optimisation (L-BFGS by default).

    Minimises $-\frac1n\sum_i \log\operatorname{softmax}(x_i W + b)_{y_i} + \lambda\lVert W\rVert_F^2$
    from $W = 0, b = 0$. Without penalty the logits are defined up to a common shift; starting from zero
    the iterates keep $\sum_c W_{:c} = 0$ (the gradient has that property), the convention of
    scikit-learn's multinomial `LogisticRegression(penalty=None)`. Separable classes have no finite optimum
    without a penalty (`info.converged` stays false).

    Args:
        x: `(n, d)` features.
        y: `(n,)` integer labels, at least two classes present.
        n_classes: `C`; default `max(y) + 1`.
        l2: non-negative $\lambda$.
        optimizer: an Optax gradient transformation (`None`: `optax.lbfgs()`).
        max_iter: iteration limit.
        tol: stop when the gradient norm of the mean loss is at most `tol`.

    Returns:
        `(model, info)`: a [`SoftmaxRegression`][jaxprob.classifiers.SoftmaxRegression] and a
        [`jaxprob.nn.MinimizeInfo`][jaxprob.nn.MinimizeInfo].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> x = jax.random.normal(jax.random.key(1), (300, 2))
        >>> y = (x[:, 0] + 0.5 * jax.random.normal(jax.random.key(2), (300,)) > 0).astype(jnp.int32)
        >>> model, info = classifiers.fit_softmax_regression(x, y, tol=1e-4)
        >>> bool(info.converged), model.weight.shape
        (True, (2, 2))
    """
    x, y, c = _check_xy(x, y, n_classes)
    _check_two_classes(y)
    c = check_int(c, "n_classes", minimum=2)
    if not np.isfinite(float(l2)) or float(l2) < 0:
        raise ValueError(f"`l2` must be a finite non-negative number, got {l2}")
    init = (jnp.zeros((x.shape[1], c), x.dtype), jnp.zeros((c,), x.dtype))
    params, info = nn.minimize(_ce_objective, init, x, y, jnp.asarray(l2, x.dtype), optimizer=optimizer,
                               max_iter=max_iter, tol=tol)
    return SoftmaxRegression(*params), info


# ----------------------------------------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------------------------------------
@eqx.filter_jit
def _logits(model, x):
    return model(x)


def predict_logits(x: ArrayLike, model: eqx.Module) -> jax.Array:
    """Logits `model(x)`, validated and compiled.

    Args:
        x: `(n, d)` features.
        model: a classifier module.

    Returns:
        `(n, C)` logits.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> classifiers.predict_logits(jnp.ones((1, 2)), classifiers.SoftmaxRegression.zeros(2, 3)).tolist()
        [[0.0, 0.0, 0.0]]
    """
    x = as_float_array(x, "x", 2)
    check_finite(x, "x")
    _n_outputs(model, x)
    return _logits(model, x)


def predict_log_proba(x: ArrayLike, model: eqx.Module) -> jax.Array:
    r"""Log class probabilities $\log p(c \mid x)$.

    Args:
        x: `(n, d)` features.
        model: a classifier module.

    Returns:
        `(n, C)` log-probabilities.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> lp = classifiers.predict_log_proba(jnp.ones((1, 2)), classifiers.SoftmaxRegression.zeros(2, 2))
        >>> [round(float(v), 4) for v in lp[0]]
        [-0.6931, -0.6931]
    """
    return jax.nn.log_softmax(predict_logits(x, model), axis=-1)


def predict_proba(x: ArrayLike, model: eqx.Module) -> jax.Array:
    r"""Class probabilities $p(c \mid x) = \operatorname{softmax}(f(x))_c$.

    Args:
        x: `(n, d)` features.
        model: a classifier module.

    Returns:
        `(n, C)` probabilities, rows summing to one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> classifiers.predict_proba(jnp.ones((1, 2)), classifiers.SoftmaxRegression.zeros(2, 2)).tolist()
        [[0.5, 0.5]]
    """
    return jax.nn.softmax(predict_logits(x, model), axis=-1)


def predict(x: ArrayLike, model: eqx.Module) -> jax.Array:
    r"""Most probable class $\arg\max_c f(x)_c$.

    Args:
        x: `(n, d)` features.
        model: a classifier module.

    Returns:
        `(n,)` int32 labels.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> m = classifiers.SoftmaxRegression(jnp.array([[-1.0, 1.0]]), jnp.zeros(2))
        >>> classifiers.predict(jnp.array([[-2.0], [3.0]]), m).tolist()
        [0, 1]
    """
    return jnp.argmax(predict_logits(x, model), axis=-1).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------------------
# decision boundaries in 2-D
# ----------------------------------------------------------------------------------------------------------
def decision_boundary_grid(predict_fn: Callable, x: ArrayLike, *, resolution: int = 200,
                           margin: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a classifier on a regular grid covering 2-D data.

    Args:
        predict_fn: maps `(m, 2)` points to `(m,)` labels (or any per-point value), e.g.
            `lambda g: classifiers.predict(g, model)`.
        x: `(n, 2)` data fixing the extent of the grid.
        resolution: grid points per axis.
        margin: extra space around the data, in data units.

    Returns:
        `(xx, yy, zz)`: `(resolution, resolution)` NumPy arrays of grid coordinates and predictions.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import classifiers
        >>> xx, yy, zz = classifiers.decision_boundary_grid(lambda g: g[:, 0] > 0, jnp.array([[-1.0, 0.0],
        ...                                                 [1.0, 1.0]]), resolution=4, margin=0.0)
        >>> zz.astype(int).tolist()[0]
        [0, 0, 1, 1]
    """
    x = np.asarray(as_float_array(x, "x", 2))
    if x.shape[1] != 2:
        raise ValueError(f"`x` must have 2 features for a decision-boundary grid, got {x.shape[1]}")
    check_finite(x, "x")
    resolution = check_int(resolution, "resolution", minimum=2)
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=1), dtype=jnp.asarray(x).dtype)
    zz = np.asarray(predict_fn(grid)).reshape(xx.shape)
    return xx, yy, zz


def plot_decision_boundary(predict_fn: Callable, x: ArrayLike, y: ArrayLike | None = None, *, ax: Axes | None = None,
                           resolution: int = 200, margin: float = 0.5, cmap: str = "coolwarm", title: str | None = None,
                           xlabel: str = "$x_1$", ylabel: str = "$x_2$") -> Axes:
    """Plot the predicted class regions of a 2-D classifier (filled contours) with the data on top.

    Args:
        predict_fn: maps `(m, 2)` points to `(m,)` integer labels.
        x: `(n, 2)` data.
        y: optional `(n,)` labels colouring the points.
        ax: a matplotlib axes (default: a new figure).
        resolution: grid points per axis.
        margin: extra space around the data.
        cmap: matplotlib colormap name.
        title: optional axes title.
        xlabel: label of the horizontal axis (first feature).
        ylabel: label of the vertical axis (second feature).

    Returns:
        The matplotlib axes.
    """
    import matplotlib.pyplot as plt

    xx, yy, zz = decision_boundary_grid(predict_fn, x, resolution=resolution, margin=margin)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    x = np.asarray(x)
    n_levels = int(max(zz.max(), 0 if y is None else np.max(y))) + 1
    levels = np.arange(n_levels + 1) - 0.5
    ax.contourf(xx, yy, zz, levels=levels, cmap=cmap, alpha=0.3)
    ax.contour(xx, yy, zz, levels=levels, colors="k", linewidths=0.8)
    ax.scatter(x[:, 0], x[:, 1], c=None if y is None else np.asarray(y), cmap=cmap, s=10, edgecolors="k",
               linewidths=0.3, vmin=-0.5, vmax=n_levels - 0.5)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title)
    return ax
