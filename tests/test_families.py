"""Bernoulli, categorical, Poisson and Student-t families: float64 NumPy/SciPy EM references written from the
textbook formulas, EM invariants, sampling moments, every front-end and driver, naive Bayes by counting, bad input.

Every family runs on one data set of N rows and K=2 components, and every comparison fit runs T iterations from
the same start with `tol=0`, so the compiled programs are shared between the tests of a family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize, special, stats

from jaxprob import bayes, em, families, mixture, scale, selection
from jaxprob.families.student_t import solve_dof

N, K, T = 60, 2, 8
SIZES = (3, 2, 4)  # categorical blocks
T_BOUNDS = (0.1, 1000.0)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# ------------------------------------------------------------------------------------------------------------
# float64 references: component log-densities from SciPy, M-steps from the textbook formulas
# ------------------------------------------------------------------------------------------------------------
def bernoulli_log_dens(x, p):
    return x @ np.log(p["probs"]).T + (1.0 - x) @ np.log1p(-p["probs"]).T


def bernoulli_m_step(alpha):
    def m(x, rw, prev):
        nk = rw.sum(0)
        return {"weights": nk / nk.sum(), "probs": (rw.T @ x + alpha) / (nk[:, None] + 2.0 * alpha)}

    return m


def _blocks(sizes):
    edges = np.cumsum((0,) + tuple(sizes))
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def categorical_log_dens(x, p):
    out = np.zeros((x.shape[0], p["probs"].shape[0]))
    for b in _blocks(SIZES):
        xb = x[:, b]
        out += np.stack([stats.multinomial.logpmf(xb, xb.sum(1), pk[b]) for pk in p["probs"]], axis=1)
    return out


def categorical_m_step(alpha):
    def m(x, rw, prev):
        nk = rw.sum(0)
        s = rw.T @ x + alpha
        probs = np.concatenate([s[:, b] / s[:, b].sum(1, keepdims=True) for b in _blocks(SIZES)], axis=1)
        return {"weights": nk / nk.sum(), "probs": probs}

    return m


def poisson_log_dens(x, p):
    return stats.poisson.logpmf(x[:, None, :], p["rates"][None]).sum(-1)


def poisson_m_step(floor):
    def m(x, rw, prev):
        nk = rw.sum(0)
        return {"weights": nk / nk.sum(), "rates": np.maximum(rw.T @ x / nk[:, None], floor)}

    return m


def t_log_dens(x, p):
    return np.stack([stats.multivariate_t(loc=m, shape=c, df=nu).logpdf(x)
                     for m, c, nu in zip(p["means"], p["covariances"], p["dof"], strict=True)], axis=1)


def t_m_step(reg, estimate, dof0):
    """ECM of McLachlan and Peel (2000, ch. 7): latent scales u under the E-step parameters `prev`."""

    def m(x, rw, prev):
        n, d = x.shape
        nk = rw.sum(0)
        out = {"weights": nk / nk.sum(), "means": [], "covariances": [], "dof": []}
        for k in range(rw.shape[1]):
            if prev is None:
                u = np.ones(n)
            else:
                xc = x - prev["means"][k]
                delta = np.sum(xc * np.linalg.solve(prev["covariances"][k], xc.T).T, axis=1)
                u = (prev["dof"][k] + d) / (prev["dof"][k] + delta)
            ru = rw[:, k] * u
            mu = ru @ x / ru.sum()
            xc = x - mu
            out["means"].append(mu)
            out["covariances"].append((ru[:, None] * xc).T @ xc / nk[k] + reg * np.eye(d))
            if not estimate or prev is None:
                out["dof"].append(dof0)
                continue
            old = prev["dof"][k] + d
            c = np.sum(rw[:, k] * (np.log(u) - u)) / nk[k] + special.digamma(old / 2) - np.log(old / 2)

            def f(v, c=c):
                return -special.digamma(v / 2) + np.log(v / 2) + 1.0 + c

            lo, hi = T_BOUNDS
            nu = lo if f(lo) < 0 else hi if f(hi) > 0 else optimize.brentq(f, lo, hi, xtol=1e-14, rtol=1e-14)
            out["dof"].append(nu)
        return {key: np.asarray(v) for key, v in out.items()}

    return m


def ref_em(spec, x, w, start, n_iter):
    """Mean log-likelihood before each M-step (n_iter + 1 values: the last is that of the returned model)."""
    params, trace = start, []
    for t in range(n_iter + 1):
        lp = spec.log_dens(x, params) + np.log(params["weights"])
        lse = special.logsumexp(lp, axis=1)
        trace.append(np.sum(w * lse) / np.sum(w))
        if t == n_iter:
            break
        params = spec.m_step(x, np.exp(lp - lse[:, None]) * w[:, None], params)
    return np.asarray(trace), params


# ------------------------------------------------------------------------------------------------------------
# the families under test: data, start, reference, parameter count
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    family: Callable  # hyper-parameters of the comparisons
    ml_family: Callable  # the same family, maximum likelihood (for the monotonicity property)
    online_family: Callable  # the family whose per-unit-weight online statistics give the batch M-step
    data: Callable  # rng -> (x (N, D), labels (N,))
    start: Callable  # rng or None -> parameter dict (None: the fixed start of the comparisons)
    log_dens: Callable
    m_step: Callable
    n_params: Callable  # (K, D) -> component parameter count by hand
    keys: tuple  # parameter names compared

    def components(self, fam, p):
        if self.name.startswith("student_t"):
            return fam.make_params(p["means"], p["covariances"], p["dof"])
        return fam.make_params(p[self.keys[1]])

    def model(self, fam, p):
        return mixture.make_mixture(jnp.asarray(p["weights"]), self.components(fam, p), fam)


def _bernoulli_data(rng):
    z = np.repeat(np.arange(K), N // K)
    protos = np.array([[0.9, 0.8, 0.1, 0.2, 0.7], [0.1, 0.3, 0.9, 0.7, 0.2]])
    return (rng.random((N, 5)) < protos[z]).astype(np.float64), z


def _bernoulli_start(rng):
    if rng is None:
        return {"weights": np.array([0.45, 0.55]),
                "probs": np.array([[0.6, 0.6, 0.4, 0.4, 0.55], [0.4, 0.45, 0.6, 0.6, 0.5]])}
    return {"weights": np.array([0.5, 0.5]), "probs": rng.uniform(0.2, 0.8, (K, 5))}


def _categorical_data(rng):
    z = np.repeat(np.arange(K), N // K)
    probs = [np.array([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6]]), np.array([[0.8, 0.2], [0.3, 0.7]]),
             np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.3, 0.5]])]
    cols = [np.stack([rng.multinomial(rng.integers(0, 4), p[k]) for k in z]) for p in probs]
    return np.concatenate(cols, axis=1).astype(np.float64), z


def _normalise_blocks(a):
    return np.concatenate([a[:, b] / a[:, b].sum(1, keepdims=True) for b in _blocks(SIZES)], axis=1)


def _categorical_start(rng):
    if rng is None:
        raw = np.array([[1.0, 1.2, 0.8, 1.0, 1.3, 1.0, 1.0, 1.2, 0.9], [1.2, 1.0, 0.9, 1.2, 1.0, 0.9, 1.1, 1.0, 1.0]])
        return {"weights": np.array([0.5, 0.5]), "probs": _normalise_blocks(raw)}
    return {"weights": np.array([0.5, 0.5]), "probs": _normalise_blocks(rng.uniform(0.5, 1.5, (K, sum(SIZES))))}


def _poisson_data(rng):
    z = np.repeat(np.arange(K), N // K)
    rates = np.array([[1.0, 5.0, 0.5], [6.0, 1.0, 3.0]])
    return rng.poisson(rates[z]).astype(np.float64), z


def _poisson_start(rng):
    if rng is None:
        return {"weights": np.array([0.5, 0.5]), "rates": np.array([[2.0, 3.0, 1.0], [4.0, 2.0, 2.0]])}
    return {"weights": np.array([0.5, 0.5]), "rates": rng.uniform(0.5, 6.0, (K, 3))}


def _t_data(rng):
    z = np.repeat(np.arange(K), N // K)
    centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    g = rng.gamma(2.0, 0.5, N)  # nu = 4
    return centres[z] + rng.standard_normal((N, 2)) @ np.array([[1.0, 0.3], [0.0, 0.8]]) / np.sqrt(g)[:, None], z


def _t_start(rng):
    if rng is None:
        return {"weights": np.array([0.5, 0.5]), "means": np.array([[1.0, 0.5], [4.0, 4.0]]),
                "covariances": np.stack([np.eye(2), 2.0 * np.eye(2)]), "dof": np.array([10.0, 10.0])}
    return {"weights": np.array([0.5, 0.5]), "means": rng.uniform(-1.0, 6.0, (K, 2)),
            "covariances": np.stack([np.eye(2)] * K) * rng.uniform(0.5, 3.0), "dof": rng.uniform(2.0, 20.0, K)}


def _t_params(k, d, estimate):
    return k * d + k * d * (d + 1) // 2 + (k if estimate else 0)


SPECS = {
    "bernoulli": Spec(
        "bernoulli", lambda: families.bernoulli(alpha=0.5), lambda: families.bernoulli(alpha=0.0),
        lambda: families.bernoulli(alpha=0.5 / N), _bernoulli_data, _bernoulli_start, bernoulli_log_dens,
        bernoulli_m_step(0.5), lambda k, d: k * d, ("weights", "probs")),
    "categorical": Spec(
        "categorical", lambda: families.categorical(alpha=0.5, sizes=SIZES, n_trials=2),
        lambda: families.categorical(alpha=0.0, sizes=SIZES, n_trials=2),
        lambda: families.categorical(alpha=0.5 / N, sizes=SIZES, n_trials=2), _categorical_data,
        _categorical_start, categorical_log_dens, categorical_m_step(0.5),
        lambda k, d: k * (d - len(SIZES)), ("weights", "probs")),
    "poisson": Spec(
        "poisson", lambda: families.poisson(min_rate=1e-3), lambda: families.poisson(min_rate=1e-3),
        lambda: families.poisson(min_rate=1e-3), _poisson_data, _poisson_start, poisson_log_dens,
        poisson_m_step(1e-3), lambda k, d: k * d, ("weights", "rates")),
    "student_t": Spec(
        "student_t", lambda: families.student_t(dof=10.0, reg_covar=1e-6),
        lambda: families.student_t(dof=10.0, reg_covar=1e-6), lambda: families.student_t(dof=10.0, reg_covar=1e-6),
        _t_data, _t_start, t_log_dens, t_m_step(1e-6, True, 10.0), lambda k, d: _t_params(k, d, True),
        ("weights", "means", "covariances", "dof")),
    "student_t_fixed": Spec(
        "student_t_fixed", lambda: families.student_t(dof=5.0, estimate_dof=False, reg_covar=1e-6),
        lambda: families.student_t(dof=5.0, estimate_dof=False, reg_covar=1e-6),
        lambda: families.student_t(dof=5.0, estimate_dof=False, reg_covar=1e-6),
        _t_data, lambda rng: {**_t_start(rng), "dof": np.array([5.0, 5.0])}, t_log_dens,
        t_m_step(1e-6, False, 5.0), lambda k, d: _t_params(k, d, False), ("weights", "means", "covariances", "dof")),
}
MAIN = ["bernoulli", "categorical", "poisson", "student_t"]


@pytest.fixture(scope="module")
def problems():
    """Per family: data, sample weights, the start and the reference EM from it (T iterations, weighted)."""
    out = {}
    for i, (name, spec) in enumerate(SPECS.items()):
        rng = np.random.default_rng(10 + i)
        x, z = spec.data(rng)
        w = rng.uniform(0.5, 2.0, N)
        start = spec.start(None)
        trace, final = ref_em(spec, x, w, start, T)
        out[name] = dict(x=x, z=z, w=w, start=start, trace=trace, final=final)
    return out


def assert_params_close(model, ref, keys, rtol=1e-6, atol=1e-9):
    for key in keys:
        np.testing.assert_allclose(np.asarray(getattr(model, key)), ref[key], rtol=rtol, atol=atol, err_msg=key)


def _fit_from(spec, p, x=None, w=None, fam=None):
    fam = fam or spec.family()
    x = p["x"] if x is None else x
    return mixture.fit(jnp.asarray(x), K, init_params=spec.model(fam, p["start"]), max_iter=T, tol=0.0,
                       sample_weight=p["w"] if w is None else w)


# ------------------------------------------------------------------------------------------------------------
# against the references
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SPECS))
def test_em_matches_float64_reference(problems, name):
    spec, p = SPECS[name], problems[name]
    model, info = _fit_from(spec, p)
    assert int(info.n_iter) == T and not bool(info.nonfinite)
    np.testing.assert_allclose(np.asarray(info.trace), p["trace"][:T], rtol=1e-9)
    np.testing.assert_allclose(float(info.log_likelihood), p["trace"][T], rtol=1e-9)
    assert_params_close(model, p["final"], spec.keys)


@pytest.mark.parametrize("name", MAIN)
def test_zero_weight_component_drops_out_of_the_e_step(problems, name):
    # A component of weight 0 with NaN parameters (the engine's weighted log-likelihood, folded into the product
    # for some families) contributes nothing: the same statistics as the mixture without it.
    spec, p = SPECS[name], problems[name]
    model = spec.model(spec.family(), p["start"])
    mask = model.family.component_mask(model.components)
    dead = jax.tree.map(lambda a, m: jnp.concatenate([a, jnp.full_like(a[:1], jnp.nan)]) if m else a,
                        model.components, mask)
    with_dead = em.Mixture(jnp.concatenate([model.weights, jnp.zeros(1)]), dead, model.family)
    prep = em.prepare(jnp.asarray(p["x"]), model.family, jnp.asarray(p["w"]))
    a, b = em.e_step(prep, with_dead), em.e_step(prep, model)
    assert float(a.counts[K]) == 0.0
    np.testing.assert_allclose(float(a.log_likelihood), float(b.log_likelihood), rtol=1e-12)
    keep = jax.tree.map(lambda s: s[:K] if s.ndim and s.shape[0] == K + 1 else s, (a.counts, a.family))
    chex.assert_trees_all_close(keep, (b.counts, b.family), rtol=1e-12, atol=1e-12)


def test_student_t_dof_moves_only_when_estimated(problems):
    est = np.asarray(problems["student_t"]["final"]["dof"])
    assert np.all(np.abs(est - 10.0) > 0.1)  # the estimated dof leave their start (the data have nu = 4)
    np.testing.assert_array_equal(problems["student_t_fixed"]["final"]["dof"], [5.0, 5.0])


@pytest.mark.parametrize("name", MAIN)
@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_em_never_decreases_the_log_likelihood(name, seed):
    spec = SPECS[name]
    rng = np.random.default_rng(seed)
    x, _ = spec.data(rng)
    p = {"x": x, "w": rng.uniform(0.2, 3.0, N), "start": spec.start(rng)}
    model, info = _fit_from(spec, p, fam=spec.ml_family())
    lls = np.append(np.asarray(info.trace)[: int(info.n_iter)], float(info.log_likelihood))
    assert np.all(np.isfinite(lls))
    assert np.all(np.diff(lls) >= -1e-10 * np.abs(lls[:-1])), np.diff(lls)


# ------------------------------------------------------------------------------------------------------------
# weights, restarts, evaluation, sampling
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MAIN)
def test_integer_weights_equal_repeated_rows(problems, name):
    spec, p = SPECS[name], problems[name]
    half = p["x"][::2]  # both classes
    reps = np.tile([1, 3], N // 4)  # sums to N: the repeated data keep the shape of the weighted data
    model_r, info_r = _fit_from(spec, p, x=np.repeat(half, reps, axis=0), w=np.ones(N))
    # the same rows once each with integer weights, padded with weight-0 rows to the same shape
    model_w, info_w = _fit_from(spec, p, x=np.concatenate([half, half]),
                                w=np.concatenate([reps, np.zeros(N // 2)]).astype(float))
    np.testing.assert_allclose(np.asarray(info_w.trace), np.asarray(info_r.trace), rtol=1e-10)
    chex.assert_trees_all_close((model_w.weights, model_w.components), (model_r.weights, model_r.components),
                                rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", MAIN)
def test_restarts_keep_the_best_and_repeat_with_the_key(problems, name):
    spec, p = SPECS[name], problems[name]
    fam = spec.family()
    x = jnp.asarray(p["x"])
    kw = dict(key=jax.random.key(3), family=fam, n_init=3, max_iter=T, tol=0.0)
    model, info = mixture.fit(x, K, **kw)
    again, _ = mixture.fit(x, K, **kw)
    lls = np.asarray(info.restart_log_likelihoods)
    assert lls.shape == (3,) and int(info.best_restart) == int(np.argmax(lls))
    np.testing.assert_allclose(float(info.log_likelihood), lls.max(), rtol=1e-9)
    np.testing.assert_allclose(float(mixture.score(x, model)), float(info.log_likelihood), rtol=1e-12)
    for key in spec.keys:
        np.testing.assert_array_equal(np.asarray(getattr(model, key)), np.asarray(getattr(again, key)))


@pytest.mark.parametrize("name", MAIN)
def test_evaluation_functions_match_the_reference(problems, name):
    spec, p = SPECS[name], problems[name]
    x, ref = p["x"], p["final"]
    model = spec.model(spec.family(), ref)
    lp = spec.log_dens(x, ref) + np.log(ref["weights"])
    lse = special.logsumexp(lp, axis=1)
    d = x.shape[1]
    n_par = K - 1 + spec.n_params(K, d)
    assert mixture.n_parameters(model) == n_par
    np.testing.assert_allclose(np.asarray(mixture.log_prob(x, model)), lse, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(mixture.anomaly_score(x, model)), -lse, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(mixture.predict_proba(x, model)), np.exp(lp - lse[:, None]), atol=1e-10)
    np.testing.assert_array_equal(np.asarray(mixture.predict(x, model)), np.argmax(lp, axis=1))
    np.testing.assert_allclose(float(mixture.bic(x, model)), -2 * lse.sum() + n_par * np.log(N), rtol=1e-10)
    np.testing.assert_allclose(float(mixture.aic(x, model)), -2 * lse.sum() + 2 * n_par, rtol=1e-10)


def _mixture_moments(name, model):
    """Mean and covariance of the mixture, from the component parameters (closed forms)."""
    a = np.asarray(model.weights)
    if name == "bernoulli":
        means = np.asarray(model.probs)
        covs = np.stack([np.diag(m * (1 - m)) for m in means])
    elif name == "poisson":
        means = np.asarray(model.rates)
        covs = np.stack([np.diag(m) for m in means])
    elif name == "categorical":
        n = model.family.n_trials
        means = n * np.asarray(model.probs)
        covs = []
        for pk in np.asarray(model.probs):
            c = np.zeros((pk.size, pk.size))
            for b in _blocks(SIZES):
                c[b, b] = n * (np.diag(pk[b]) - np.outer(pk[b], pk[b]))
            covs.append(c)
        covs = np.stack(covs)
    else:
        nu = np.asarray(model.dof)
        means = np.asarray(model.means)
        covs = np.asarray(model.covariances) * (nu / (nu - 2))[:, None, None]
    mean = a @ means
    second = np.einsum("k,kij->ij", a, covs + np.einsum("ki,kj->kij", means, means))
    return mean, second - np.outer(mean, mean)


SAMPLE_MODELS = {
    "bernoulli": {"weights": np.array([0.3, 0.7]), "probs": np.array([[0.1, 0.5, 0.9], [0.7, 0.2, 0.4]])},
    "categorical": {"weights": np.array([0.4, 0.6]),
                    "probs": _normalise_blocks(np.array([[1.0, 2, 3, 1, 1, 4, 1, 2, 1],
                                                         [3.0, 1, 1, 1, 3, 1, 1, 1, 5]]))},
    "poisson": {"weights": np.array([0.5, 0.5]), "rates": np.array([[0.5, 4.0], [8.0, 1.0]])},
    "student_t": {"weights": np.array([0.6, 0.4]), "means": np.array([[0.0, 1.0], [3.0, -2.0]]),
                  "covariances": np.array([[[1.0, 0.5], [0.5, 2.0]], [[0.5, 0.0], [0.0, 0.5]]]),
                  "dof": np.array([8.0, 12.0])},
}


@pytest.mark.parametrize("name", MAIN)
def test_samples_have_the_mixture_moments(name):
    spec = SPECS[name]
    model = spec.model(spec.family(), SAMPLE_MODELS[name])
    m = 20_000
    xs, labels = mixture.sample(model, m, key=jax.random.key(7))
    xs, labels = np.asarray(xs), np.asarray(labels)
    assert xs.shape == (m, model.n_features) and xs.dtype == np.float64
    np.testing.assert_allclose(np.bincount(labels, minlength=K) / m, model.weights, atol=0.015)
    mean, cov = _mixture_moments(name, model)
    se = np.sqrt(np.diag(cov) / m)
    assert np.all(np.abs(xs.mean(0) - mean) < 5 * se), (xs.mean(0), mean)
    np.testing.assert_allclose(np.cov(xs.T), cov, atol=0.08 * np.abs(cov).max())
    if name in ("bernoulli", "categorical", "poisson"):
        assert np.all(xs == np.round(xs)) and np.all(xs >= 0)
    if name == "bernoulli":
        assert set(np.unique(xs)) <= {0.0, 1.0}
    if name == "categorical":  # every block holds exactly n_trials counts
        for b in _blocks(SIZES):
            np.testing.assert_array_equal(xs[:, b].sum(1), model.family.n_trials)


# ------------------------------------------------------------------------------------------------------------
# drivers: sharded, chunked, online agree with mixture.fit and the reference
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MAIN)
def test_sharded_and_chunked_drivers_agree_with_fit(problems, name):
    spec, p = SPECS[name], problems[name]
    start = spec.model(spec.family(), p["start"])
    fitted, info = _fit_from(spec, p)
    sharded, info_s = scale.fit_sharded(jnp.asarray(p["x"]), K, mesh=scale.sample_mesh(1), init_params=start,
                                        max_iter=T, tol=0.0, sample_weight=p["w"])
    chunked, info_c = scale.fit_chunked(p["x"], start, chunk_size=25, sample_weight=p["w"], max_iter=T, tol=0.0)
    for got, inf in ((sharded, info_s), (chunked, info_c)):
        assert int(inf.n_iter) == T
        np.testing.assert_allclose(np.asarray(inf.trace), np.asarray(info.trace), rtol=1e-10)
        chex.assert_trees_all_close((got.weights, got.components), (fitted.weights, fitted.components),
                                    rtol=1e-8, atol=1e-12)
        assert_params_close(got, p["final"], spec.keys)


def test_sharded_driver_accepts_integer_counts_like_fit(problems):
    spec, p = SPECS["poisson"], problems["poisson"]
    start = spec.model(spec.family(), p["start"])
    scale.fit_sharded(p["x"].astype(np.int64), K, mesh=scale.sample_mesh(1), init_params=start, max_iter=T,
                      tol=0.0, sample_weight=p["w"])


def test_sharded_driver_refuses_non_binary_bernoulli_data(problems):
    spec, p = SPECS["bernoulli"], problems["bernoulli"]
    start = spec.model(spec.family(), p["start"])
    x = p["x"].copy()
    x[0, 0] = 0.5
    with pytest.raises(ValueError, match="binary"):
        scale.fit_sharded(jnp.asarray(x), K, mesh=scale.sample_mesh(1), init_params=start, max_iter=T, tol=0.0,
                          sample_weight=p["w"])


@pytest.mark.parametrize("name", MAIN)
def test_online_first_step_is_a_batch_em_step(problems, name):
    # eta_0 = (0 + t0)^-kappa = 1: the first stepwise-EM update is one EM step on the batch; the statistics are
    # per unit weight, so the pseudo-counts of the online family are those of the batch divided by its weight
    spec, p = SPECS[name], problems[name]
    start = spec.model(spec.online_family(), p["start"])
    w = p["w"] * (N / p["w"].sum())  # total weight N, the divisor of the online pseudo-counts
    online, info = scale.fit_online([(p["x"], w)], start)
    _, ref = ref_em(spec, p["x"], w, p["start"], 1)
    assert info.n_steps == 1
    assert_params_close(online, ref, spec.keys, rtol=1e-8)


@pytest.mark.parametrize("name", MAIN)
def test_implied_statistics_give_the_parameters_back(problems, name):
    spec, p = SPECS[name], problems[name]
    model = spec.model(spec.family(), p["final"])
    fam, a = model.family, model.weights
    center = fam.model_center(a, model.components)
    stats = em.Stats(a, fam.implied_statistics(model.components, a, center), jnp.zeros(()), jnp.ones(()),
                     jnp.ones(()))
    back, collapsed, _ = em.m_step(fam, stats, center)
    assert_params_close(back, p["final"], spec.keys, rtol=1e-9)


# ------------------------------------------------------------------------------------------------------------
# model selection and the Bayes classifier
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MAIN)
def test_fit_grid_runs_the_family(problems, name):
    spec, p = SPECS[name], problems[name]
    x = jnp.asarray(p["x"])
    res = selection.fit_grid(x, (1, 2), key=jax.random.key(0), families=[spec.family()], n_init=2, max_iter=T,
                             tol=0.0)
    d = p["x"].shape[1]
    np.testing.assert_array_equal(res.n_parameters, [[k - 1 + spec.n_params(k, d) for k in (1, 2)]])
    # one component: every cell starts from all responsibilities 1, i.e. the reference from uniform weights
    ones = np.ones(N)
    start = spec.m_step(p["x"], np.ones((N, 1)), None)
    ref_trace, _ = ref_em(spec, p["x"], ones, start, T)
    np.testing.assert_allclose(np.asarray(res.log_likelihood)[0, 0], ref_trace[T], rtol=1e-9)
    c, g, r = res.best_index
    np.testing.assert_allclose(float(mixture.bic(x, res.best)), float(res.bic[c, g, r]), rtol=1e-8)


@pytest.mark.parametrize("name", MAIN)
def test_bayes_classifier_fits_one_model_per_class(problems, name):
    spec, p = SPECS[name], problems[name]
    x, z = p["x"], p["z"]
    clf, info = bayes.fit(x, z, key=jax.random.key(0), family=spec.family(), n_components=1, max_iter=T, tol=0.0)
    np.testing.assert_allclose(np.exp(np.asarray(clf.log_priors)), np.bincount(z) / N, rtol=1e-12)
    lls = []
    for c in range(K):
        wc = (z == c).astype(float)
        _, ref = ref_em(spec, x, wc, spec.m_step(x, wc[:, None], None), T)
        got = jax.tree.map(lambda a, c=c: a[c], clf.mixtures)
        assert_params_close(got, ref, spec.keys)
        lls.append(spec.log_dens(x, ref)[:, 0])
    np.testing.assert_allclose(np.asarray(bayes.class_log_likelihoods(x, clf)), np.stack(lls, 1), rtol=1e-9)
    post = np.stack(lls, 1) + np.log(np.bincount(z) / N)
    np.testing.assert_array_equal(np.asarray(bayes.predict(x, clf)), np.argmax(post, 1))


# the slides' small categorical data set: outlook (sunny, overcast, rain), windy (no, yes) -> play (no, yes)
WEATHER = np.array([[0, 0], [0, 1], [1, 0], [2, 0], [2, 0], [2, 1], [1, 1], [0, 0], [0, 0], [2, 0], [0, 1], [1, 1],
                    [1, 0], [2, 1]])
PLAY = np.array([0, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 0])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_naive_bayes_is_the_count_table(alpha):
    onehot, sizes = families.one_hot_features(WEATHER)
    assert sizes == (3, 2)
    fam = families.categorical(alpha=alpha, sizes=sizes)
    clf, _ = bayes.fit(onehot, PLAY, key=jax.random.key(0), family=fam, n_components=1, max_iter=3)
    # counts by hand: n(x_f = v, y = c) and n(y = c)
    n_c = np.array([np.sum(PLAY == c) for c in (0, 1)])
    tables = [np.array([[np.sum((WEATHER[:, f] == v) & (PLAY == c)) for v in range(s)] for c in (0, 1)])
              for f, s in enumerate(sizes)]
    cond = [(t + alpha) / (n_c[:, None] + alpha * t.shape[1]) for t in tables]  # P(x_f = v | y = c)
    np.testing.assert_allclose(np.exp(np.asarray(clf.log_priors)), n_c / n_c.sum(), rtol=1e-12)
    probs = np.asarray(clf.mixtures.probs)[:, 0, :]  # (C, V): the one component of every class
    # (a category never seen in a class gets the floor, the machine epsilon, when alpha = 0)
    np.testing.assert_allclose(probs, np.concatenate(cond, axis=1), rtol=1e-12, atol=3e-16)
    if alpha == 0.0:  # P(x1, y) = P(x1 | y) P(y) is the joint count table over n
        joint = np.exp(np.log(probs[:, :3]) + np.asarray(clf.log_priors)[:, None])
        np.testing.assert_allclose(joint, tables[0] / len(PLAY), rtol=1e-12, atol=3e-16)
    # posterior of every combination, by hand: P(y | x) proportional to P(y) prod_f P(x_f | y)
    grid = np.array([[o, w] for o in range(3) for w in range(2)])
    joint = (n_c / n_c.sum())[None, :] * cond[0][:, grid[:, 0]].T * cond[1][:, grid[:, 1]].T
    got = bayes.predict_proba(families.one_hot_features(grid, sizes)[0], clf)
    np.testing.assert_allclose(np.asarray(got), joint / joint.sum(1, keepdims=True), rtol=1e-10, atol=1e-15)


# ------------------------------------------------------------------------------------------------------------
# small pieces: the dof equation, compilation, bad input
# ------------------------------------------------------------------------------------------------------------
def test_solve_dof_matches_brentq_and_clips_to_the_bounds():
    # c above -1 has no root (the left side stays positive: nu -> infinity), c far below has one under 0.1
    cs = np.array([-1.01, -1.1, -1.5, -3.0, -1.0 - 1e-9, 2.0, -50.0])
    got = np.asarray(solve_dof(jnp.asarray(cs), T_BOUNDS))
    for c, nu in zip(cs[:4], got[:4], strict=True):
        ref = optimize.brentq(lambda v, c=c: np.log(v / 2) - special.digamma(v / 2) + 1 + c, 1e-3, 1e6, xtol=1e-14)
        np.testing.assert_allclose(nu, ref, rtol=1e-10)
    np.testing.assert_allclose(got[4:], [T_BOUNDS[1], T_BOUNDS[1], T_BOUNDS[0]], rtol=1e-10)


def test_hyper_parameters_are_traced_not_compiled_in(problems):
    p = problems["bernoulli"]
    step = jax.jit(chex.assert_max_traces(em.step, n=1))
    prep = em.prepare(jnp.asarray(p["x"]), families.bernoulli())
    for alpha in (0.5, 2.0):
        fam = families.bernoulli(alpha=alpha)
        start = SPECS["bernoulli"].model(fam, p["start"])
        fam = jax.tree.map(jnp.asarray, fam)
        new, _ = step(prep, mixture.make_mixture(start.weights, start.components, fam))
        probs = bernoulli_m_step(alpha)(p["x"], np.asarray(mixture.predict_proba(p["x"], start)), None)["probs"]
        np.testing.assert_allclose(np.asarray(new.probs), probs, rtol=1e-10)


def test_bad_data_is_refused_naming_the_argument():
    with pytest.raises(ValueError, match="`x` must be binary"):
        families.bernoulli().validate(np.array([[0.0, 2.0]]))
    with pytest.raises(ValueError, match="`x` must be non-negative"):
        families.categorical().validate(np.array([[1, -1]]))
    with pytest.raises(ValueError, match="whole-number"):
        families.poisson().validate(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="`x` contains"):
        families.poisson().validate(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="sizes"):
        families.categorical(sizes=(2, 2)).validate(np.ones((3, 5), int))
    with pytest.raises(TypeError, match="counts"):
        families.poisson().validate(np.array([["a"]]).astype("U1"))
    x = families.categorical().validate(np.array([[1, 2]], np.int32))  # integers are converted explicitly
    assert jnp.issubdtype(x.dtype, jnp.floating) and x.tolist() == [[1.0, 2.0]]
    assert families.bernoulli().validate(np.array([[True, False]])).tolist() == [[1.0, 0.0]]
    with pytest.raises(ValueError, match="`x` must be binary"):
        mixture.fit(np.array([[0.0, 3.0], [1.0, 0.0]]), 1, key=jax.random.key(0), family=families.bernoulli())


def test_bad_hyper_parameters_and_params_are_refused():
    with pytest.raises(ValueError, match="`alpha`"):
        families.bernoulli(alpha=-1.0)
    with pytest.raises(TypeError, match="`alpha`"):
        families.categorical(alpha="1")
    with pytest.raises(ValueError, match="`min_rate`"):
        families.poisson(min_rate=0.0)
    with pytest.raises(ValueError, match="`dof`"):
        families.student_t(dof=0.0)
    with pytest.raises(ValueError, match="dof_bounds"):
        families.student_t(dof_bounds=(10.0, 1.0))
    with pytest.raises(TypeError, match="estimate_dof"):
        families.student_t(estimate_dof=1)
    with pytest.raises(ValueError, match="n_bisection"):
        families.student_t(n_bisection=0)
    with pytest.raises(TypeError, match="sizes"):
        families.categorical(sizes=3)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        families.bernoulli().make_params(np.array([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="sum to one"):
        families.categorical(sizes=(2, 1)).make_params(np.array([[0.5, 0.4, 1.0]]))
    with pytest.raises(ValueError, match="`rates` must be positive"):
        families.poisson().make_params(np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        families.student_t().make_params(np.zeros((1, 2)), np.array([[[1.0, 2.0], [2.0, 1.0]]]))
    with pytest.raises(ValueError, match="`dof` must be positive"):
        families.student_t().make_params(np.zeros((1, 1)), np.ones((1, 1, 1)), -2.0)
    with pytest.raises(TypeError, match="BernoulliParams"):
        mixture.make_mixture(np.ones(1), families.poisson().make_params(np.ones((1, 2))), families.bernoulli())
    with pytest.raises(ValueError, match="n_categories"):
        families.one_hot_features(np.array([[0, 3]]), (2, 2))
    with pytest.raises(TypeError, match="integer"):
        families.one_hot_features(np.array([[0.0, 1.0]]))
