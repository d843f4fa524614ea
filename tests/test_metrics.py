"""Metrics against brute-force definitions and scikit-learn (tests only), with ties in the scores."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from jaxprob import metrics


def brute_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


def brute_confusion(t, p, c):
    cm = np.zeros((c, c), int)
    for a, b in zip(t, p, strict=True):
        cm[a, b] += 1
    return cm


def brute_prf(t, p, cls):
    tp = sum((a == cls) and (b == cls) for a, b in zip(t, p, strict=True))
    fp = sum((a != cls) and (b == cls) for a, b in zip(t, p, strict=True))
    fn = sum((a == cls) and (b != cls) for a, b in zip(t, p, strict=True))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return prec, rec, f1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_curves_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + 0.8 * y, 1).astype(np.float32)  # many ties
    assert len(np.unique(s)) < n
    auc = float(metrics.roc_auc_score(jnp.asarray(y), jnp.asarray(s, jnp.float32)))
    assert auc == pytest.approx(brute_auc(y, s), abs=1e-5)
    assert auc == pytest.approx(skm.roc_auc_score(y, s), abs=1e-5)

    fpr, tpr, thr = (np.asarray(a) for a in metrics.roc_curve(y, s.astype(np.float32)))
    assert fpr.shape == (n + 1,) and np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    pts = np.unique(np.stack([fpr, tpr], 1), axis=0)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(pts, np.unique(np.stack([sk_fpr, sk_tpr], 1), axis=0), atol=1e-6)
    # each point is the rate of "score >= threshold"
    for j in rng.integers(1, n + 1, 10):
        pred = s >= thr[j]
        assert tpr[j] == pytest.approx(pred[y == 1].mean(), abs=1e-6)
        assert fpr[j] == pytest.approx(pred[y == 0].mean(), abs=1e-6)

    prec, rec, pthr = (np.asarray(a) for a in metrics.precision_recall_curve(y, s.astype(np.float32)))
    sk_p, sk_r, sk_t = skm.precision_recall_curve(y, s)
    ours = {float(t): (p, r) for p, r, t in zip(prec, rec, pthr, strict=True)}
    for p, r, t in zip(sk_p[:-1], sk_r[:-1], sk_t, strict=True):
        assert ours[float(t)] == pytest.approx((p, r), abs=1e-5)
    ap = float(metrics.average_precision(y, s.astype(np.float32)))
    assert ap == pytest.approx(skm.average_precision_score(y, s), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_confusion_and_f1_vs_brute_force(seed):
    rng = np.random.default_rng(seed)
    c, n = 4, 200
    t = rng.integers(0, c, n)
    p = np.where(rng.random(n) < 0.6, t, rng.integers(0, c, n))
    p[p == 3] = 2  # class 3 never predicted: zero-division branch
    cm = np.asarray(metrics.confusion_matrix(t, p, n_classes=c))
    np.testing.assert_array_equal(cm, brute_confusion(t, p, c))
    np.testing.assert_array_equal(cm, skm.confusion_matrix(t, p, labels=range(c)))
    per = np.array([brute_prf(t, p, k) for k in range(c)])
    got = np.stack([np.asarray(v) for v in metrics.precision_recall_f1(t, p, average="none", n_classes=c)], 1)
    np.testing.assert_allclose(got, per, atol=1e-6)
    macro = [float(v) for v in metrics.precision_recall_f1(t, p, average="macro", n_classes=c)]
    np.testing.assert_allclose(macro, per.mean(0), atol=1e-6)
    assert macro[2] == pytest.approx(skm.f1_score(t, p, average="macro", zero_division=0), abs=1e-6)
    micro = float(metrics.f1_score(t, p, average="micro"))
    assert micro == pytest.approx(np.mean(t == p), abs=1e-6)
    assert float(metrics.accuracy(t, p)) == pytest.approx(np.mean(t == p))
    tb, pb = (t == 1).astype(int), (p == 1).astype(int)
    assert float(metrics.f1_score(tb, pb)) == pytest.approx(brute_prf(tb, pb, 1)[2], abs=1e-6)
    assert float(metrics.f1_score(tb, pb)) == pytest.approx(skm.f1_score(tb, pb), abs=1e-6)


def test_best_threshold_brute_force():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    s = np.round(rng.normal(size=120) + y, 1).astype(np.float32)
    t, v = metrics.best_threshold(y, s, criterion="f1")
    best = max(brute_prf(y, (s >= u).astype(int), 1)[2] for u in np.unique(s))
    assert float(v) == pytest.approx(best, abs=1e-6)
    assert brute_prf(y, (s >= float(t)).astype(int), 1)[2] == pytest.approx(best, abs=1e-6)
    t, v = metrics.best_threshold(y, s, criterion="youden")
    j = max((s >= u)[y == 1].mean() - (s >= u)[y == 0].mean() for u in np.unique(s))
    assert float(v) == pytest.approx(j, abs=1e-6)
    t, v = metrics.best_threshold(y, s, criterion="accuracy")
    assert float(v) == pytest.approx(max(np.mean((s >= u) == y) for u in np.unique(s)), abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-3, 3)), min_size=12, max_size=12))
def test_auc_properties(pairs):
    y = np.array([a for a, _ in pairs])
    s = np.array([b for _, b in pairs], np.float32)
    if y.min() == y.max():
        with pytest.raises(ValueError, match="single class"):
            metrics.roc_auc_score(y, s)
        return
    auc = float(metrics.roc_auc_score(y, s))
    assert auc == pytest.approx(brute_auc(y, s), abs=1e-6)
    assert float(metrics.roc_auc_score(y, -s)) == pytest.approx(1 - auc, abs=1e-6)


def test_jit_and_vmap():
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.integers(0, 2, (5, 50)))
    s = jnp.asarray(rng.normal(size=(5, 50)), jnp.float32)
    batched = jax.vmap(metrics.roc_auc_score)(y, s)
    for i in range(5):
        assert float(batched[i]) == pytest.approx(brute_auc(np.asarray(y[i]), np.asarray(s[i])), abs=1e-6)
    cm = jax.jit(lambda a, b: metrics.confusion_matrix(a, b, n_classes=2))(y[0], y[1])
    np.testing.assert_array_equal(np.asarray(cm), brute_confusion(np.asarray(y[0]), np.asarray(y[1]), 2))
    with pytest.raises(ValueError, match="n_classes"):
        jax.jit(metrics.confusion_matrix)(y[0], y[1])


def test_no_retrace():
    from jaxprob.metrics import _roc_auc

    y = jnp.array([0, 1, 0, 1])
    metrics.roc_auc_score(y, jnp.array([0.1, 0.2, 0.3, 0.4]))
    size = _roc_auc._cache_size()
    metrics.roc_auc_score(y, jnp.array([0.4, 0.3, 0.2, 0.1]))
    assert _roc_auc._cache_size() == size


def test_bad_input():
    y = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="different lengths"):
        metrics.confusion_matrix(y, np.array([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        metrics.confusion_matrix(y, np.array([0, 1, 3]), n_classes=2)
    with pytest.raises(ValueError, match=">= 0"):
        metrics.accuracy(y, y) and metrics.confusion_matrix(np.array([-1, 0, 1]), y)
    with pytest.raises(TypeError, match="integer"):
        metrics.f1_score(y.astype(float), y)
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc_auc_score(y, np.array([0.1, np.nan, 0.2]))
    with pytest.raises(ValueError, match="single class"):
        metrics.roc_curve(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="binary"):
        metrics.roc_auc_score(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="different lengths"):
        metrics.precision_recall_curve(y, np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="average"):
        metrics.f1_score(y, y, average="weighted")


def test_binary_f1_and_auc_refuse_what_sklearn_refuses():
    # scikit-learn raises for both; they used to return 1.0 and 0.0
    y3 = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError):
        skm.f1_score(y3, y3)
    with pytest.raises(ValueError, match="average='binary' needs binary labels 0/1.*labels up to 2"):
        metrics.f1_score(y3, y3)
    with pytest.raises(ValueError, match="n_classes=3"):
        metrics.f1_score(np.array([0, 1]), np.array([0, 1]), n_classes=3)
    assert float(metrics.f1_score(y3, y3, average="macro")) == pytest.approx(skm.f1_score(y3, y3, average="macro"))
    x, y = np.array([0.0, 1.0, 0.5, 2.0]), np.ones(4)
    with pytest.raises(ValueError):
        skm.auc(x, y)
    with pytest.raises(ValueError, match=r"x\[1\] = 1.0, x\[2\] = 0.5"):
        metrics.auc(x, y)
    assert np.isnan(float(jax.jit(metrics.auc)(x, y)))  # traced: the values are unknown, the result says so
    # ties (a flat step) are monotone, both ways, as in scikit-learn
    for xs in (np.array([0.0, 1.0, 1.0, 2.0]), np.array([2.0, 1.0, 1.0, 0.0])):
        assert float(metrics.auc(xs, np.arange(4.0))) == pytest.approx(skm.auc(xs, np.arange(4.0)) * np.sign(
            xs[-1] - xs[0]))
