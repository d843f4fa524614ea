"""Classifiers: cross-entropy definitions, softmax regression vs scikit-learn, MLP, training loop, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.linear_model import LogisticRegression

from jaxprob import classifiers, nn


def _overlapping(rng, n=300, d=3, c=3):
    means = rng.normal(size=(c, d))
    y = rng.integers(0, c, n)
    x = means[y] + rng.normal(size=(n, d))
    return x, y


def test_cross_entropy_int_and_onehot(rng):
    z = rng.normal(size=(10, 4)).astype(np.float32) * 5
    y = rng.integers(0, 4, 10)
    brute = -np.log(np.exp(z[np.arange(10), y]) / np.exp(z).sum(1))
    a = classifiers.softmax_cross_entropy(z, y)
    b = classifiers.softmax_cross_entropy(z, np.eye(4, dtype=np.float32)[y])
    np.testing.assert_allclose(np.asarray(a), brute, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    big = classifiers.softmax_cross_entropy(jnp.array([[1e4, 0.0]]), jnp.array([1]))
    assert float(big[0]) == pytest.approx(1e4)


@pytest.mark.parametrize("c", [2, 3])
def test_softmax_regression_matches_sklearn(rng, c):
    x, y = _overlapping(rng, c=c)
    # no penalty: C=inf (scikit-learn >= 1.8 spells penalty=None this way)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(x, y)
    with jax.enable_x64(True):
        model, info = classifiers.fit_softmax_regression(x, y, tol=1e-10, max_iter=2000)
        assert bool(info.converged)
        proba = np.asarray(classifiers.predict_proba(x, model))
    w = np.asarray(model.weight).T  # (C, d)
    b = np.asarray(model.bias)
    if c == 2:  # scikit-learn reports class 1 against class 0
        np.testing.assert_allclose(w[1] - w[0], ref.coef_[0], atol=1e-3)
        np.testing.assert_allclose(b[1] - b[0], ref.intercept_[0], atol=1e-3)
    else:
        np.testing.assert_allclose(w - w.mean(0), ref.coef_ - ref.coef_.mean(0), atol=1e-3)
        np.testing.assert_allclose(b - b.mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-3)
    np.testing.assert_allclose(proba, ref.predict_proba(x), atol=1e-4)


def test_l2_matches_sklearn(rng):
    x, y = _overlapping(rng, n=200)
    cval = 0.5
    ref = LogisticRegression(C=cval, tol=1e-12, max_iter=10_000).fit(x, y)
    with jax.enable_x64(True):  # sklearn: 1/2 |W|^2 + C sum_i loss_i  <=>  mean loss + |W|^2 / (2 C n)
        model, _ = classifiers.fit_softmax_regression(x, y, l2=1 / (2 * cval * len(y)), tol=1e-10)
    np.testing.assert_allclose(np.asarray(model.weight).T, ref.coef_, atol=1e-3)


def test_minibatch_fit_and_early_stopping(rng):
    x, y = _overlapping(rng, n=400)
    x = x.astype(np.float32)
    exact, _ = classifiers.fit_softmax_regression(x, y)
    model, info = classifiers.fit(classifiers.SoftmaxRegression.zeros(3, 3), x[:300], y[:300],
                                  key=jax.random.key(0), n_epochs=200, batch_size=32, learning_rate=0.05,
                                  val_data=(x[300:], y[300:]), patience=5)
    assert info.stopped_early and info.n_epochs_run < 200
    assert info.val_loss[info.best_epoch] == np.nanmin(info.val_loss)
    assert info.train_loss[info.n_epochs_run - 1] < info.train_loss[0]
    agree = np.mean(np.asarray(classifiers.predict(x, model)) == np.asarray(classifiers.predict(x, exact)))
    assert agree > 0.95


def test_mlp_curved_boundary_beats_linear(rng):
    x = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    y = (np.sum(x**2, 1) < 0.5).astype(np.int32)  # a disc: not linearly separable
    lin, _ = classifiers.fit_softmax_regression(x, y)
    mlp = classifiers.mlp_classifier(2, 2, (16,), key=jax.random.key(1))
    mlp, _ = classifiers.fit(mlp, x, y, key=jax.random.key(2), n_epochs=80, batch_size=32, learning_rate=0.03)
    acc_lin = np.mean(np.asarray(classifiers.predict(x, lin)) == y)
    acc_mlp = np.mean(np.asarray(classifiers.predict(x, mlp)) == y)
    assert acc_mlp > 0.93 and acc_lin < 0.75
    xx, yy, zz = classifiers.decision_boundary_grid(lambda g: classifiers.predict(g, mlp), x, resolution=30)
    assert xx.shape == yy.shape == zz.shape == (30, 30)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = classifiers.plot_decision_boundary(lambda g: classifiers.predict(g, mlp), x, y, resolution=30)
    plt.close(ax.figure)


def test_train_loop_no_retrace_l2_and_checkpoint(rng, tmp_path):
    traces = []

    def loss(model, batch):
        traces.append(1)
        return jnp.mean((model(batch[0])[:, 0] - batch[1]) ** 2)

    x = rng.normal(size=(100, 2)).astype(np.float32)
    t = (x @ np.array([1.0, -2.0])).astype(np.float32)
    model = nn.MLP(2, 1, (), key=jax.random.key(0))
    m1, _ = nn.train(model, loss, (x, t), key=jax.random.key(1), n_epochs=3, learning_rate=0.1)
    n_traces = len(traces)
    m2, _ = nn.train(model, loss, (x + 1, t), key=jax.random.key(2), n_epochs=3, learning_rate=0.1)
    assert len(traces) == n_traces  # second call with the same shapes: no retrace
    strong, _ = nn.train(model, loss, (x, t), key=jax.random.key(1), n_epochs=30, learning_rate=0.1, l2=10.0)
    weak, _ = nn.train(model, loss, (x, t), key=jax.random.key(1), n_epochs=30, learning_rate=0.1)
    assert float(nn.l2_penalty(strong)) < 0.1 * float(nn.l2_penalty(weak))
    path = tmp_path / "m.eqx"
    nn.save_model(path, weak)
    back = nn.load_model(path, model)
    np.testing.assert_array_equal(np.asarray(back.weights[0]), np.asarray(weak.weights[0]))


def test_progress_bar(rng, capsys):
    x, y = _overlapping(rng, n=60)
    classifiers.fit(classifiers.SoftmaxRegression.zeros(3, 3), x.astype(np.float32), y, key=jax.random.key(0),
                    n_epochs=3, progress=True, val_data=(x.astype(np.float32), y))
    out = capsys.readouterr().out
    assert "epoch 3/3" in out and "loss" in out and "val" in out


def test_bad_input(rng):
    x, y = _overlapping(rng, n=30)
    x = x.astype(np.float32)
    model = classifiers.SoftmaxRegression.zeros(3, 3)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="out of range"):
        classifiers.fit(model, x, np.where(y == 0, 5, y), key=key)
    with pytest.raises(ValueError, match=">= 0"):
        classifiers.fit_softmax_regression(x, np.where(y == 0, -1, y))
    with pytest.raises(ValueError, match="single class"):
        classifiers.fit_softmax_regression(x, np.zeros(30, int))
    with pytest.raises(ValueError, match="single class"):
        classifiers.fit(model, x, np.ones(30, int), key=key)
    with pytest.raises(ValueError, match="labels"):
        classifiers.fit(model, x, y[:20], key=key)
    with pytest.raises(ValueError, match="NaN"):
        classifiers.fit_softmax_regression(np.where(x > 1.5, np.inf, x), y)
    with pytest.raises(TypeError, match="integer"):
        classifiers.fit_softmax_regression(x, y.astype(float))
    with pytest.raises(TypeError, match="key"):
        classifiers.fit(model, x, y, key=None)
    with pytest.raises(ValueError, match="features"):
        classifiers.fit(model, x, y, key=key, val_data=(x[:, :2], y))
    with pytest.raises(ValueError, match="patience"):
        nn.train(model, classifiers._ce_loss, (x, y), key=key, patience=3)
    with pytest.raises(ValueError, match="out of range"):
        classifiers.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 3]))


# ----------------------------------------------------------------------------------------------------------
# checkpoints (issue 18)
# ----------------------------------------------------------------------------------------------------------
def _same_bits(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()


@pytest.mark.parametrize("failure", ["fsync", "replace", "interrupt"])
def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    old = nn.MLP(3, 2, (5,), key=jax.random.key(0))
    new = nn.MLP(3, 2, (5,), key=jax.random.key(1))
    path = tmp_path / "model.eqx"
    nn.save_model(path, old)

    class Interrupted(BaseException):  # as a KeyboardInterrupt during the write
        pass

    def fail(*args, **kwargs):
        raise OSError("No space left on device") if failure != "interrupt" else Interrupted()

    monkeypatch.setattr(nn.os, "fsync" if failure != "replace" else "replace", fail)
    with pytest.raises((OSError, Interrupted)):
        nn.save_model(path, new)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.eqx"]  # no temporary file left behind
    _same_bits(nn.load_model(path, new), old)
    nn.save_model(path, new)  # and the next save replaces it
    _same_bits(nn.load_model(path, old), new)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    leaves=st.lists(
        st.tuples(st.sampled_from(["float32", "int32", "bool", "uint8", "bfloat16"]),
                  hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4), st.integers(0, 2**16)),
        min_size=1, max_size=5,
    )
)
def test_checkpoint_round_trip_is_bit_exact(tmp_path_factory, leaves):
    # NaN payloads, infinities, signed zeros, empty and scalar arrays come back bit for bit
    tree, like = {}, {}
    for i, (dtype, shape, seed) in enumerate(leaves):
        bits = np.random.default_rng(seed).integers(0, 256, (*shape, 4), dtype=np.uint8)
        if dtype in ("float32", "int32"):
            value = jnp.asarray(bits.view(dtype).reshape(shape))  # every bit pattern, NaNs included
        elif dtype == "bfloat16":
            value = jnp.asarray(bits[..., :2].copy().view(jnp.bfloat16).reshape(shape))
        else:
            value = jnp.asarray(bits[..., 0].astype(dtype))
        tree[f"leaf{i}"], like[f"leaf{i}"] = value, jnp.zeros(shape, value.dtype)
    path = tmp_path_factory.mktemp("ckpt") / "tree.eqx"
    nn.save_model(path, tree)
    _same_bits(nn.load_model(path, like), tree)
