"""Classification metrics: confusion matrix, accuracy, precision / recall / F1, ROC and PR curves.

All metrics are jittable and vmappable: the public functions check concrete inputs eagerly (lengths, label
ranges, NaN scores, a single class where a curve needs two) and then call module-level jitted cores whose
only static arguments are the number of classes and the averaging mode.

Conventions (those of scikit-learn): the confusion matrix has true classes in rows and predicted classes in
columns; precision $= TP/(TP+FP)$, recall $= TP/(TP+FN)$, $F_1 = 2TP/(2TP+FP+FN)$, and a
ratio whose denominator is zero is 0. A sample is predicted positive when its score is **at least**
the threshold.

Curves have a fixed length so that they can be computed under `jit`: points are the samples sorted by
decreasing score, and samples with tied scores all carry the values reached at the end of their tie group, so
a tie contributes one diagonal segment (half credit in the AUC) and the repeated points add zero area.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob._validation import (
    as_float_array,
    as_labels,
    check_choice,
    check_finite,
    check_int,
    check_labels,
    is_tracer,
)

__all__ = [
    "AVERAGES",
    "THRESHOLD_CRITERIA",
    "confusion_matrix",
    "accuracy",
    "precision_recall_f1",
    "f1_score",
    "roc_curve",
    "auc",
    "roc_auc_score",
    "precision_recall_curve",
    "average_precision",
    "best_threshold",
]

AVERAGES = ("binary", "macro", "micro", "none")
"""Ways to average per-class scores: `binary` (the positive class), `macro`, `micro`, `none` (per class)."""
THRESHOLD_CRITERIA = ("f1", "youden", "accuracy")
"""Criteria to choose a decision threshold on scores: F1, Youden's J, accuracy."""


# ----------------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------------
def _check_pair(y_true, y_pred, n_classes):
    t = as_labels(y_true, "y_true")
    p = as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"`y_true` and `y_pred` have different lengths: {t.shape[0]} and {p.shape[0]}")
    if n_classes is None and not (is_tracer(t) or is_tracer(p)):
        n_classes = int(max(np.asarray(t).max(), np.asarray(p).max())) + 1
    t, n_classes = check_labels(t, "y_true", n_classes)
    p, n_classes = check_labels(p, "y_pred", n_classes)
    return t, p, n_classes


def _check_binary(y_true, y_score):
    y = as_labels(y_true, "y_true")
    s = as_float_array(y_score, "y_score", 1)
    if s.shape != y.shape:
        raise ValueError(f"`y_true` and `y_score` have different lengths: {y.shape[0]} and {s.shape[0]}")
    check_finite(s, "y_score")
    if not is_tracer(y):
        arr = np.asarray(y)
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError("`y_true` must hold binary labels 0/1 (or booleans)")
        if arr.min() == arr.max():
            raise ValueError(
                f"`y_true` holds a single class ({int(arr[0])}): the curve needs both positives and negatives"
            )
    return y, s


# ----------------------------------------------------------------------------------------------------------
# confusion matrix and scores from it
# ----------------------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=(2,))
def _confusion(y_true, y_pred, n_classes):
    flat = y_true.astype(jnp.int32) * n_classes + y_pred.astype(jnp.int32)
    return jnp.bincount(flat, length=n_classes * n_classes).reshape(n_classes, n_classes).astype(jnp.int32)


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, *, n_classes: int | None = None) -> jax.Array:
    """Counts $C_{ij}$ of samples of true class `i` predicted as class `j`.

    Args:
        y_true: `(n,)` integer labels in `[0, n_classes)`.
        y_pred: `(n,)` integer predictions.
        n_classes: number of classes (static); default `max(y_true, y_pred) + 1`; required under `jit`.

    Returns:
        `(n_classes, n_classes)` int32 counts, rows true, columns predicted.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> metrics.confusion_matrix(jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 1, 1])).tolist()
        [[1, 1], [0, 2]]
    """
    t, p, n_classes = _check_pair(y_true, y_pred, n_classes)
    return _confusion(t, p, n_classes)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Fraction of correct predictions.

    Args:
        y_true: `(n,)` integer labels.
        y_pred: `(n,)` integer predictions.

    Returns:
        Scalar in `[0, 1]`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> float(metrics.accuracy(jnp.array([0, 1, 2, 2]), jnp.array([0, 1, 1, 2])))
        0.75
    """
    t = as_labels(y_true, "y_true")
    p = as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"`y_true` and `y_pred` have different lengths: {t.shape[0]} and {p.shape[0]}")
    return jnp.mean((t == p).astype(jnp.float32))


def _safe_div(a, b):
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1), 0.0)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _prf(y_true, y_pred, n_classes, average, pos_label):
    cm = _confusion(y_true, y_pred, n_classes).astype(jnp.float32)
    tp = jnp.diagonal(cm)
    fp = jnp.sum(cm, axis=0) - tp
    fn = jnp.sum(cm, axis=1) - tp
    if average == "micro":
        tp, fp, fn = jnp.sum(tp), jnp.sum(fp), jnp.sum(fn)
    elif average == "binary":
        tp, fp, fn = tp[pos_label], fp[pos_label], fn[pos_label]
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    if average == "macro":
        return jnp.mean(precision), jnp.mean(recall), jnp.mean(f1)
    return precision, recall, f1


def precision_recall_f1(y_true: ArrayLike, y_pred: ArrayLike, *, average: str = "binary", n_classes: int | None = None,
                        pos_label: int = 1) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Precision, recall and $F_1$ score, binary or averaged over classes.

    $$
    P = \frac{TP}{TP+FP}, \quad R = \frac{TP}{TP+FN}, \quad F_1 = \frac{2PR}{P+R} =
    \frac{2TP}{2TP+FP+FN}
    $$

    Args:
        y_true: `(n,)` integer labels.
        y_pred: `(n,)` integer predictions.
        average: `"binary"` (the class `pos_label` only; the labels must be 0/1, a third class raises a
            `ValueError` as in scikit-learn), `"macro"` (unweighted mean of the per-class scores),
            `"micro"` (from the counts summed over classes; equal to the accuracy) or `"none"` (per-class
            arrays).
        n_classes: number of classes (static); inferred from the labels when `None`.
        pos_label: the positive class for `average="binary"`.

    Returns:
        `(precision, recall, f1)`: scalars, or `(n_classes,)` arrays for `average="none"`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> p, r, f = metrics.precision_recall_f1(jnp.array([0, 1, 1, 1]), jnp.array([1, 1, 1, 0]))
        >>> round(float(p), 4), round(float(r), 4), round(float(f), 4)
        (0.6667, 0.6667, 0.6667)
    """
    check_choice(average, "average", AVERAGES)
    given = n_classes
    t, p, n_classes = _check_pair(y_true, y_pred, n_classes)
    if average == "binary":
        if n_classes > 2:  # as scikit-learn: scoring one class of a multiclass problem must be asked for
            held = f"n_classes={given}" if given is not None else f"labels up to {n_classes - 1} ({n_classes} classes)"
            raise ValueError(
                f"average='binary' needs binary labels 0/1, but `y_true` / `y_pred` have {held}; "
                "use average='macro', 'micro' or 'none' (per class)"
            )
        n_classes = 2
        pos_label = check_int(pos_label, "pos_label", minimum=0, maximum=n_classes - 1)
    else:
        pos_label = 0
    return _prf(t, p, n_classes, average, pos_label)


def f1_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: str = "binary", n_classes: int | None = None,
             pos_label: int = 1) -> jax.Array:
    """$F_1$ score only (see [`precision_recall_f1`][jaxprob.metrics.precision_recall_f1]).

    Args:
        y_true: `(n,)` integer labels.
        y_pred: `(n,)` integer predictions.
        average: `"binary"`, `"macro"`, `"micro"` or `"none"`.
        n_classes: number of classes (static).
        pos_label: the positive class for `average="binary"`.

    Returns:
        Scalar (or `(n_classes,)` for `average="none"`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> round(float(metrics.f1_score(jnp.array([0, 1, 2]), jnp.array([0, 1, 1]), average="macro")), 4)
        0.5556
    """
    return precision_recall_f1(y_true, y_pred, average=average, n_classes=n_classes, pos_label=pos_label)[2]


# ----------------------------------------------------------------------------------------------------------
# curves
# ----------------------------------------------------------------------------------------------------------
def _ranked_counts(y, s):
    """Sort by decreasing score; TP and FP counts at the end of each sample's tie group, and the scores."""
    order = jnp.argsort(-s, stable=True)
    s_sorted = s[order]
    y_sorted = y[order].astype(s.dtype)
    tp = jnp.cumsum(y_sorted)
    fp = jnp.cumsum(1.0 - y_sorted)
    neg = -s_sorted  # ascending
    end = jnp.searchsorted(neg, neg, side="right") - 1
    return tp[end], fp[end], s_sorted


@jax.jit
def _roc(y, s):
    tp, fp, thr = _ranked_counts(y, s)
    zero = jnp.zeros((1,), s.dtype)
    fpr = jnp.concatenate([zero, fp / fp[-1]])
    tpr = jnp.concatenate([zero, tp / tp[-1]])
    return fpr, tpr, jnp.concatenate([jnp.full((1,), jnp.inf, s.dtype), thr])


def roc_curve(y_true: ArrayLike, y_score: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Receiver operating characteristic: false and true positive rates at every threshold.

    Args:
        y_true: `(n,)` binary labels (0/1 or booleans), both classes present.
        y_score: `(n,)` finite scores, higher meaning more likely positive.

    Returns:
        `(fpr, tpr, thresholds)`, each `(n + 1,)`: the first point is $(0, 0)$ at threshold
        $+\infty$, then one point per sample by decreasing score (tied samples repeat the point at the
        end of their tie group). Predicting positive when `score >= thresholds[j]` gives `(fpr[j],
        tpr[j])`.
        Under `jit`, a single class gives NaN.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> fpr, tpr, thr = metrics.roc_curve(jnp.array([0, 0, 1, 1]), jnp.array([0.1, 0.4, 0.35, 0.8]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    y, s = _check_binary(y_true, y_score)
    return _roc(y, s)


def auc(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Area under a piecewise-linear curve by the trapezoidal rule (`x` monotone).

    Args:
        x: `(m,)` abscissae, non-decreasing or non-increasing; otherwise the area of the curve is not defined
            and a `ValueError` is raised, as in scikit-learn (under `jit`, where the values are not known, the
            result is NaN).
        y: `(m,)` ordinates.

    Returns:
        Scalar area (positive for increasing `x`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> float(metrics.auc(jnp.array([0.0, 0.5, 1.0]), jnp.array([0.0, 1.0, 1.0])))
        0.75
    """
    x = as_float_array(x, "x", 1)
    y = as_float_array(y, "y", 1)
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` have different lengths: {x.shape[0]} and {y.shape[0]}")
    if not is_tracer(x):
        dx = np.diff(np.asarray(x))
        if np.any(dx < 0) and np.any(dx > 0):
            first_direction = np.sign(dx[dx != 0][0])
            i = int(np.flatnonzero(np.sign(dx) == -first_direction)[0])  # the first step going back
            raise ValueError(
                f"`x` is neither non-decreasing nor non-increasing (x[{i}] = {float(x[i])}, "
                f"x[{i + 1}] = {float(x[i + 1])}): the area under the curve is not defined"
            )
    return _auc(x, y)


@jax.jit
def _auc(x, y):
    dx = jnp.diff(x)
    monotone = jnp.all(dx >= 0) | jnp.all(dx <= 0)
    return jnp.where(monotone, jnp.trapezoid(y, x), jnp.nan)


@jax.jit
def _roc_auc(y, s):
    fpr, tpr, _ = _roc(y, s)
    # rounding of the float32 rates can push the trapezoid sum just above 1 (or below 0)
    return jnp.clip(jnp.trapezoid(tpr, fpr), 0.0, 1.0)


def roc_auc_score(y_true: ArrayLike, y_score: ArrayLike) -> jax.Array:
    r"""Area under the ROC curve.

    Equal to the Mann-Whitney probability $P(S_+ > S_-) + \tfrac12 P(S_+ = S_-)$ for a random positive
    and a random negative.

    Args:
        y_true: `(n,)` binary labels, both classes present.
        y_score: `(n,)` finite scores.

    Returns:
        Scalar in `[0, 1]`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> float(metrics.roc_auc_score(jnp.array([0, 0, 1, 1]), jnp.array([0.1, 0.4, 0.4, 0.8])))
        0.875
    """
    y, s = _check_binary(y_true, y_score)
    return _roc_auc(y, s)


@jax.jit
def _pr(y, s):
    tp, fp, thr = _ranked_counts(y, s)
    return tp / (tp + fp), tp / tp[-1], thr


def precision_recall_curve(y_true: ArrayLike, y_score: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Precision and recall at every threshold, by decreasing threshold.

    Args:
        y_true: `(n,)` binary labels, both classes present.
        y_score: `(n,)` finite scores.

    Returns:
        `(precision, recall, thresholds)`, each `(n,)`: predicting positive when `score >=
        thresholds[j]` gives `precision[j]` and `recall[j]` (tied samples repeat the point of their tie
        group; recall is non-decreasing).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> p, r, t = metrics.precision_recall_curve(jnp.array([0, 1, 1]), jnp.array([0.2, 0.9, 0.5]))
        >>> [round(float(v), 4) for v in p], r.tolist()
        ([1.0, 1.0, 0.6667], [0.5, 1.0, 1.0])
    """
    y, s = _check_binary(y_true, y_score)
    return _pr(y, s)


@jax.jit
def _ap(y, s):
    precision, recall, _ = _pr(y, s)
    prev = jnp.concatenate([jnp.zeros((1,), recall.dtype), recall[:-1]])
    return jnp.sum((recall - prev) * precision)


def average_precision(y_true: ArrayLike, y_score: ArrayLike) -> jax.Array:
    r"""Average precision $\sum_j (R_j - R_{j-1}) P_j$ over thresholds (step-wise area under the PR
    curve).

    Args:
        y_true: `(n,)` binary labels, both classes present.
        y_score: `(n,)` finite scores.

    Returns:
        Scalar in `[0, 1]` (as scikit-learn's `average_precision_score`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> round(float(metrics.average_precision(jnp.array([0, 1, 1]), jnp.array([0.2, 0.9, 0.5]))), 4)
        1.0
    """
    y, s = _check_binary(y_true, y_score)
    return _ap(y, s)


@functools.partial(jax.jit, static_argnums=(2,))
def _best_threshold(y, s, criterion):
    tp, fp, thr = _ranked_counts(y, s)
    n_pos, n_neg = tp[-1], fp[-1]
    if criterion == "f1":
        value = 2 * tp / (tp + fp + n_pos)
    elif criterion == "youden":
        value = tp / n_pos - fp / n_neg
    else:
        value = (tp + n_neg - fp) / (n_pos + n_neg)
    j = jnp.argmax(value)
    return thr[j], value[j]


def best_threshold(y_true: ArrayLike, y_score: ArrayLike, *, criterion: str = "f1") -> tuple[jax.Array, jax.Array]:
    """Decision threshold that maximises a criterion over all distinct score values (instead of 0.5).

    Criteria: `"f1"` ($F_1$ of the positive class), `"youden"` ($J = TPR - FPR$, the ROC point
    farthest above the diagonal) and `"accuracy"`.

    Args:
        y_true: `(n,)` binary labels, both classes present.
        y_score: `(n,)` finite scores (e.g. predicted probabilities of class 1).
        criterion: one of `THRESHOLD_CRITERIA`.

    Returns:
        `(threshold, value)`: predict positive when `score >= threshold`; `value` is the criterion
        there.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import metrics
        >>> t, v = metrics.best_threshold(jnp.array([0, 0, 1, 1]), jnp.array([0.1, 0.2, 0.3, 0.9]))
        >>> round(float(t), 4), float(v)
        (0.3, 1.0)
    """
    check_choice(criterion, "criterion", THRESHOLD_CRITERIA)
    y, s = _check_binary(y_true, y_score)
    return _best_threshold(y, s, criterion)
