"""Hidden Markov models: forward–backward, Viterbi and sampling against brute-force enumeration of all paths
(float64, 1e-10), padding invariance, and Baum–Welch against hmmlearn's GaussianHMM (float64, 1e-6 relative on the
log-likelihood trace from identical starting parameters)."""

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxprob import em, families, hmm
from jaxprob.families.gaussian import make_params

METHODS = hmm.METHODS
VITERBI_METHODS = ("sequential", "parallel")


# ---- brute-force reference -------------------------------------------------------------------------------------
def enumerate_paths(lb, li, lA):
    """Every path's log joint; returns (paths (K^T, T), log joints (K^T,))."""
    t, k = lb.shape
    paths = np.array(list(itertools.product(range(k), repeat=t)))
    joint = li[paths[:, 0]] + lb[0, paths[:, 0]]
    for s in range(1, t):
        joint = joint + lA[paths[:, s - 1], paths[:, s]] + lb[s, paths[:, s]]
    return paths, joint


def brute_force(lb, li, lA):
    paths, joint = enumerate_paths(lb, li, lA)
    t, k = lb.shape
    finite = np.isfinite(joint)
    ll = np.logaddexp.reduce(joint[finite]) if finite.any() else -np.inf
    p = np.exp(joint - ll)
    gamma = np.stack([[p[paths[:, s] == j].sum() for j in range(k)] for s in range(t)])
    xi = np.zeros((t - 1, k, k))
    for s in range(t - 1):
        np.add.at(xi[s], (paths[:, s], paths[:, s + 1]), p)
    # filtered p(z_t | x_{0:t}): enumerate the prefixes
    filt = []
    for s in range(t):
        pp, jj = enumerate_paths(lb[: s + 1], li, lA)
        q = np.exp(jj - np.logaddexp.reduce(jj))
        filt.append([q[pp[:, s] == j].sum() for j in range(k)])
    return ll, gamma, xi, np.array(filt), paths[np.argmax(joint)], joint.max()


def tiny_model(rng, k=3, t=5, zeros=False):
    li = np.log(rng.dirichlet(np.ones(k)))
    a = rng.dirichlet(np.ones(k), size=k)
    lb = 2.0 * rng.standard_normal((t, k))
    if zeros:  # structural zeros: a left-right chain and an impossible emission
        a = np.triu(a)
        a /= a.sum(1, keepdims=True)
        lb[2, 0] = -np.inf
    with np.errstate(divide="ignore"):
        return lb, li, np.log(a)


@pytest.mark.parametrize("zeros", [False, True])
def test_forward_backward_and_viterbi_match_enumeration_of_all_paths(zeros):
    rng = np.random.default_rng(3 + zeros)
    lb, li, lA = tiny_model(rng, zeros=zeros)
    ll, gamma, xi, filt, best, best_joint = brute_force(lb, li, lA)
    with jax.enable_x64(True):
        for method in METHODS:
            post = hmm.forward_backward(lb, li, lA, method=method, pairwise=True)
            assert post.log_likelihood.dtype == jnp.float64
            np.testing.assert_allclose(post.log_likelihood, ll, rtol=0, atol=1e-10)
            np.testing.assert_allclose(post.marginals, gamma, rtol=0, atol=1e-10)
            np.testing.assert_allclose(post.pairwise, xi, rtol=0, atol=1e-10)
            np.testing.assert_allclose(post.transition_counts, xi.sum(0), rtol=0, atol=1e-10)
            fwd = hmm.forward(lb, li, lA, method=method)
            np.testing.assert_allclose(fwd.log_likelihood, ll, rtol=0, atol=1e-10)
            np.testing.assert_allclose(np.exp(fwd.log_filtered), filt, rtol=0, atol=1e-10)
            np.testing.assert_array_equal(hmm.posterior_decode(lb, li, lA, method=method), gamma.argmax(1))
        for method in VITERBI_METHODS:
            path = hmm.viterbi(lb, li, lA, method=method)
            np.testing.assert_array_equal(path.path, best)
            np.testing.assert_allclose(path.log_prob, best_joint, rtol=0, atol=1e-10)


def test_marginals_are_probabilities_and_consistent():
    rng = np.random.default_rng(5)
    lb, li, lA = tiny_model(rng, k=4, t=30)
    with jax.enable_x64(True):
        for method in METHODS:
            post = hmm.forward_backward(lb, li, lA, method=method, pairwise=True)
            np.testing.assert_allclose(post.marginals.sum(-1), 1.0, atol=1e-12)
            np.testing.assert_allclose(post.pairwise.sum((1, 2)), 1.0, atol=1e-12)
            # summing xi_t over the next state gives gamma_t, over the previous state gamma_{t+1}
            np.testing.assert_allclose(post.pairwise.sum(2), post.marginals[:-1], atol=1e-12)
            np.testing.assert_allclose(post.pairwise.sum(1), post.marginals[1:], atol=1e-12)
            assert np.all(np.asarray(post.marginals) >= 0)


def test_padding_changes_nothing_and_padded_steps_are_empty():
    """A padded batch gives, per sequence, the enumerated results of the unpadded sequence."""
    rng = np.random.default_rng(7)
    k, t = 3, 6
    lengths = np.array([6, 4, 1])
    li, lA = tiny_model(rng, k=k)[1:]
    batch = 1e3 * rng.standard_normal((len(lengths), t, k))  # wild values in the padding
    refs = []
    for i, n in enumerate(lengths):
        batch[i, :n] = 2.0 * rng.standard_normal((n, k))
        refs.append(brute_force(batch[i, :n], li, lA))
    with jax.enable_x64(True):
        for method in METHODS:
            post = hmm.forward_backward(batch, li, lA, lengths, method=method, pairwise=True)
            vit = hmm.viterbi(batch, li, lA, lengths, method=method if method in VITERBI_METHODS else "sequential")
            for i, (n, (ll, gamma, xi, _, best, best_joint)) in enumerate(zip(lengths, refs, strict=True)):
                np.testing.assert_allclose(post.log_likelihood[i], ll, rtol=0, atol=1e-10)
                np.testing.assert_allclose(post.marginals[i, :n], gamma, rtol=0, atol=1e-10)
                np.testing.assert_allclose(post.pairwise[i, : n - 1], xi, rtol=0, atol=1e-10)
                np.testing.assert_allclose(post.transition_counts[i], xi.sum(0), rtol=0, atol=1e-10)
                assert np.all(np.asarray(post.marginals[i, n:]) == 0)
                assert np.all(np.asarray(post.pairwise[i, n - 1 :]) == 0)
                np.testing.assert_array_equal(vit.path[i, :n], best)
                np.testing.assert_allclose(vit.log_prob[i], best_joint, rtol=0, atol=1e-10)
                assert np.all(np.asarray(vit.path[i, n:]) == -1)


def test_float32_long_sequence_stays_accurate_and_methods_agree():
    """Per-step normalisation: nothing grows with T, so float32 marginals of a long sequence match float64."""
    rng = np.random.default_rng(11)
    lb, li, lA = tiny_model(rng, k=3, t=3000)
    with jax.enable_x64(True):
        ref = hmm.forward_backward(lb, li, lA)
    f32 = [hmm.forward_backward(lb.astype(np.float32), li.astype(np.float32), lA.astype(np.float32), method=m)
           for m in METHODS]
    for post in f32:
        assert post.marginals.dtype == jnp.float32
        np.testing.assert_allclose(post.marginals, ref.marginals, atol=2e-4)
        np.testing.assert_allclose(post.log_likelihood, ref.log_likelihood, rtol=1e-5)
        np.testing.assert_allclose(post.transition_counts, ref.transition_counts, rtol=1e-3)


def test_impossible_sequence_gives_minus_inf_and_no_nan():
    lb = np.zeros((4, 2))
    lb[2] = -np.inf  # no state can emit x_2
    for method in METHODS:
        post = hmm.forward_backward(lb, np.log([0.5, 0.5]), np.log(np.full((2, 2), 0.5)), method=method)
        assert float(post.log_likelihood) == -np.inf
        assert np.all(np.isfinite(np.asarray(post.marginals))) and np.all(np.isfinite(post.transition_counts))


# ---- the blocked method ------------------------------------------------------------------------------------------
def _assert_posteriors_equal(a, b, atol=1e-10):
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=1e-12, atol=atol)
    for name in ("marginals", "transition_counts", "pairwise"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=atol, err_msg=name)
        assert not np.any(np.isnan(np.asarray(getattr(b, name)))), name


@pytest.mark.parametrize("k", [3, 20])  # blocks of steps (few states) and one plain block (many states)
@pytest.mark.parametrize("t", [1, 2, 5, 40, 301])
def test_blocked_equals_sequential_on_padded_batches(k, t):
    """Lengths 1, shorter than one block, and T: the blocked method gives the sequential posteriors (float64)."""
    rng = np.random.default_rng(10 * k + t)
    lengths = np.unique(np.clip([t, 1, 2, t // 3, t - 1], 1, t))
    li = np.log(rng.dirichlet(np.ones(k)))
    lA = np.log(rng.dirichlet(np.ones(k), size=k))
    lb = 3.0 * rng.standard_normal((len(lengths), t, k))
    with jax.enable_x64(True):
        ref = hmm.forward_backward(lb, li, lA, lengths, pairwise=True)
        out = hmm.forward_backward(lb, li, lA, lengths, method="blocked", pairwise=True)
        _assert_posteriors_equal(ref, out)
        fwd_ref, fwd = hmm.forward(lb, li, lA, lengths), hmm.forward(lb, li, lA, lengths, method="blocked")
        np.testing.assert_allclose(fwd.log_likelihood, fwd_ref.log_likelihood, rtol=1e-12)
        np.testing.assert_allclose(np.exp(fwd.log_filtered), np.exp(fwd_ref.log_filtered), atol=1e-12)
        one = hmm.forward_backward(lb[-1], li, lA, method="blocked")  # full length (sorted last), no batch axis
        np.testing.assert_allclose(one.marginals, ref.marginals[-1], atol=1e-10)


def _sticky(k, off):
    a = np.full((k, k), off)
    np.fill_diagonal(a, 1.0)
    return a / a.sum(1, keepdims=True)


@pytest.mark.parametrize("off", [1e-3, 1e-90, 1e-100, 1e-200, 0.0])
def test_blocked_is_exact_where_emissions_differ_by_thousands_of_nats(off):
    """Emissions thousands of nats apart and transitions down to 1e-200 or zero: the probability-space form runs
    above its threshold (about 1e-97 in float64) and the log-space one below; both give the log-space results."""
    rng = np.random.default_rng(12)
    k, t = 3, 200
    lb = 2000.0 * rng.standard_normal((2, t, k))
    li = np.log([0.2, 0.3, 0.5])
    with np.errstate(divide="ignore"), jax.enable_x64(True):
        lA = np.log(_sticky(k, off))
        assert bool(hmm._dense(jnp.asarray(lA))) == (off >= 1e-90)
        ref = hmm.forward_backward(lb, li, lA, [t, 77], pairwise=True)
        _assert_posteriors_equal(ref, hmm.forward_backward(lb, li, lA, [t, 77], method="blocked", pairwise=True))



def test_blocked_is_exact_just_above_its_threshold():
    """Random emissions up to thousands of nats apart, every transition probability just above the threshold of
    the probability-space form (float64; one compiled program, the values vary)."""
    rng = np.random.default_rng(16)
    k, t = 3, 120
    threshold = hmm._dense_threshold(k, np.float64)
    with jax.enable_x64(True):
        for i in range(16):
            lb = rng.choice([1.0, 100.0, 1000.0, 3000.0]) * rng.standard_normal((2, t, k))
            a = _sticky(k, threshold * [1.01, 2.0, 1e10, 1e50][i % 4]) * rng.uniform(1.0, 1.5, (k, k))
            a = np.maximum(a / a.sum(1, keepdims=True), 1.001 * threshold)
            li, lA = np.log(rng.dirichlet(np.ones(k))), np.log(a)
            assert bool(hmm._dense(jnp.asarray(lA)))
            lengths = [t, int(rng.integers(1, t + 1))]
            ref = hmm.forward_backward(lb, li, lA, lengths, pairwise=True)
            out = hmm.forward_backward(lb, li, lA, lengths, method="blocked", pairwise=True)
            _assert_posteriors_equal(ref, out, atol=1e-9)

def test_blocked_matches_enumeration_where_flushed_terms_decide():
    """A path through a state whose probability is far below the float's range decides the answer: state 2 is
    e^-1000 less likely at first, and later emissions favour it by far more than that (float64)."""
    with np.errstate(divide="ignore"):
        lb = np.array([[0.0, -1000.0, -1000.0], [-600.0, -600.0, 0.0], [-600.0, -600.0, 0.0], [-1.0, 0.0, -0.5]])
        for a in (np.eye(3), _sticky(3, 1e-80)):
            li, lA = np.log([0.5, 0.25, 0.25]), np.log(a)
            ll, gamma, xi = brute_force(lb, li, lA)[:3]
            with jax.enable_x64(True):
                post = hmm.forward_backward(lb, li, lA, method="blocked", pairwise=True)
            np.testing.assert_allclose(post.log_likelihood, ll, rtol=1e-13)
            np.testing.assert_allclose(post.marginals, gamma, atol=1e-10)
            np.testing.assert_allclose(post.pairwise, xi, atol=1e-10)


def test_blocked_sequences_of_probability_zero():
    """An impossible step (first, middle or last), in a batch with possible sequences: -inf, zeros, no NaN."""
    rng = np.random.default_rng(13)
    k, t = 4, 60
    lb = rng.standard_normal((4, t, k))
    lb[0, 0], lb[1, 30], lb[2, t - 1] = -np.inf, -np.inf, -np.inf
    li, lA = np.log(np.full(k, 1 / k)), np.log(rng.dirichlet(np.ones(k), size=k))
    for x64 in (False, True):
        with jax.enable_x64(x64):
            dt = np.float64 if x64 else np.float32
            post = hmm.forward_backward(lb.astype(dt), li.astype(dt), lA.astype(dt), [t, t, t, 20], method="blocked",
                                        pairwise=True)
            np.testing.assert_array_equal(np.isneginf(post.log_likelihood), [True, True, True, False])
            for leaf in (post.marginals, post.transition_counts, post.pairwise):
                assert np.all(np.isfinite(np.asarray(leaf)))
            assert np.all(np.asarray(post.marginals[:3]) == 0) and np.all(np.asarray(post.transition_counts[:3]) == 0)
            np.testing.assert_allclose(post.marginals[3, :20].sum(-1), 1.0, rtol=1e-5)


def test_blocked_float32_matches_float64():
    rng = np.random.default_rng(14)
    lb, li, lA = tiny_model(rng, k=4, t=5000)
    with jax.enable_x64(True):
        ref = hmm.forward_backward(lb, li, lA)
    post = hmm.forward_backward(lb.astype(np.float32), li.astype(np.float32), lA.astype(np.float32), method="blocked")
    assert post.marginals.dtype == jnp.float32
    np.testing.assert_allclose(post.marginals, ref.marginals, atol=2e-4)
    np.testing.assert_allclose(post.log_likelihood, ref.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(post.transition_counts, ref.transition_counts, rtol=1e-3)


def test_viterbi_refuses_the_blocked_method():
    lb, li, lA = np.zeros((5, 2)), np.log([0.5, 0.5]), np.log(np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="method"):
        hmm.viterbi(lb, li, lA, method="blocked")
    fam = families.gaussian("diag")
    model = hmm.make_hmm(np.array([0.5, 0.5]), np.full((2, 2), 0.5),
                         make_params(np.array([[0.0], [3.0]]), np.ones((2, 1)), "diag"), fam)
    x = np.array([[0.0], [0.1], [3.0]])
    with pytest.raises(ValueError, match="method"):
        hmm.predict(x, model, method="blocked")
    np.testing.assert_array_equal(hmm.predict(x, model, algorithm="posterior", method="blocked"), [0, 0, 1])
    np.testing.assert_allclose(hmm.score(x, model, method="blocked"), hmm.score(x, model, method="sequential"),
                               rtol=1e-6)


def test_blocked_fit_equals_sequential_fit_and_does_not_retrace():
    """Baum–Welch with restarts (run one after another for this method) equals the sequential fit; new values of
    the same shapes reuse the compiled programs."""
    rng = np.random.default_rng(15)
    seqs = _gaussian_data(rng, [40, 25, 33])
    x, lengths = hmm.pad_sequences(seqs)
    with jax.enable_x64(True):
        kw = dict(lengths=lengths, key=jax.random.key(0), covariance_type="diag", n_init=2, max_iter=8, tol=0.0)
        ref, ref_info = hmm.fit(x, 3, **kw)
        model, info = hmm.fit(x, 3, method="blocked", **kw)
        np.testing.assert_allclose(info.trace, ref_info.trace, rtol=1e-10)
        np.testing.assert_allclose(model.transition, ref.transition, atol=1e-8)
        np.testing.assert_allclose(model.means, ref.means, atol=1e-8)
    before = hmm._fit_from_jit._cache_size()
    hmm.fit(x.astype(np.float32), 3, method="blocked", **kw)
    after_first = hmm._fit_from_jit._cache_size()
    hmm.fit(x.astype(np.float32) + 1, 3, method="blocked", **dict(kw, key=jax.random.key(1)))
    assert hmm._fit_from_jit._cache_size() == after_first == before + 1
    fb_before = hmm._forward_backward_jit._cache_size()
    for shift in (0.0, 1.0):
        hmm.forward_backward(x + shift, np.log(np.full(2, 0.5)), np.log(np.full((2, 2), 0.5)), lengths,
                             method="blocked")
    assert hmm._forward_backward_jit._cache_size() == fb_before + 1
    # the E-step traced once for new values of the same shapes
    fam = families.gaussian("diag")
    data = hmm.prepare(jnp.asarray(x, jnp.float32), fam, lengths)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def e_step(d, m):
        return hmm.e_step(d, m, method="blocked")

    for _ in range(3):
        m = hmm.make_hmm(np.full(3, 1 / 3, np.float32), np.full((3, 3), 1 / 3, np.float32),
                         make_params(rng.standard_normal((3, 2)).astype(np.float32), np.ones((3, 2), np.float32),
                                     "diag"), fam)
        e_step(data, m)
    chex.clear_trace_counter()


def test_transition_counts_stay_exact_where_float32_products_underflow():
    """State 2 is entered only from state 1, whose filtered probability (e^-150) is below float32's smallest number,
    and the next emission makes state 2 certain: the matrix-product shortcut loses that transition, and the steps
    where it can are recomputed in log space."""
    with np.errstate(divide="ignore"):
        li = np.log([0.5, 0.5, 0.0])
        lA = np.log([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    lb = np.array([[0.0, -150.0, -np.inf], [-300.0, -300.0, 0.0], [-1.0, -2.0, 0.0]])
    ll, gamma, xi = brute_force(lb, li, lA)[:3]
    assert xi[0, 1, 2] > 0.99
    for method in METHODS:
        for pairwise in (False, True):
            post = hmm.forward_backward(lb.astype(np.float32), li.astype(np.float32), lA.astype(np.float32),
                                        method=method, pairwise=pairwise)
            np.testing.assert_allclose(post.transition_counts, xi.sum(0), atol=1e-5)
            np.testing.assert_allclose(post.marginals, gamma, atol=1e-5)
            np.testing.assert_allclose(post.log_likelihood, ll, rtol=1e-6)


def test_sample_states_follow_the_chain_and_the_key():
    li = np.log([0.2, 0.8])
    a = np.array([[0.9, 0.1], [0.3, 0.7]])
    z = np.asarray(hmm.sample_states(li, np.log(a), 20000, key=jax.random.key(0)))
    counts = np.zeros((2, 2))
    np.add.at(counts, (z[:-1], z[1:]), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), a, atol=0.02)
    np.testing.assert_array_equal(z, hmm.sample_states(li, np.log(a), 20000, key=jax.random.key(0)))
    firsts = jax.vmap(lambda k: hmm.sample_states(li, np.log(a), 1, key=k)[0])(jax.random.split(jax.random.key(1),
                                                                                               4000))
    assert abs(float(np.mean(np.asarray(firsts) == 1)) - 0.8) < 0.03


def test_kernel_argument_errors():
    lb, li, lA = np.zeros((5, 2)), np.log([0.5, 0.5]), np.log(np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="method"):
        hmm.forward_backward(lb, li, lA, method="fast")
    with pytest.raises(ValueError, match="log_transition"):
        hmm.forward_backward(lb, li, lA[:1])
    with pytest.raises(ValueError, match="log_initial"):
        hmm.viterbi(lb, li[:1], lA)
    with pytest.raises(ValueError, match="log_emissions"):
        hmm.forward(np.full((5, 2), np.nan), li, lA)
    with pytest.raises(TypeError, match="log_emissions"):
        hmm.forward(np.zeros((5, 2), int), li, lA)
    with pytest.raises(ValueError, match="lengths"):
        hmm.forward_backward(np.zeros((2, 5, 2)), li, lA, [5, 6])
    with pytest.raises(ValueError, match="lengths"):
        hmm.forward_backward(lb, li, lA, [5])
    with pytest.raises(TypeError, match="key"):
        hmm.sample_states(li, lA, 3, key=None)


# ---- Baum–Welch --------------------------------------------------------------------------------------------------
def _gaussian_data(rng, lengths, d=2):
    """Sequences from a 3-state sticky chain with well separated Gaussian emissions."""
    a = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    means = np.array([[0.0] * d, [3.0] * d, [-3.0] * d])
    seqs = []
    for n in lengths:
        z = [rng.integers(3)]
        for _ in range(n - 1):
            z.append(rng.choice(3, p=a[z[-1]]))
        seqs.append(means[z] + rng.standard_normal((n, d)))
    return seqs


COV_SHAPES = {"diag": lambda k, d, r: r.uniform(0.5, 2, (k, d)), "spherical": lambda k, d, r: r.uniform(0.5, 2, k),
              "full": lambda k, d, r: np.stack([np.eye(d) + 0.3 for _ in range(k)]),
              "tied": lambda k, d, r: np.eye(d) + 0.3}


@pytest.mark.parametrize("covariance_type", ["diag", "full", "spherical", "tied"])
def test_baum_welch_trace_matches_hmmlearn(covariance_type):
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    rng = np.random.default_rng(0)
    k, d, n_iter = 3, 2, 8
    lengths = np.array([40, 25, 33])
    seqs = _gaussian_data(rng, lengths, d)
    pi, a = rng.dirichlet(np.ones(k)), rng.dirichlet(3 * np.ones(k), size=k)
    means, covs = 2 * rng.standard_normal((k, d)), COV_SHAPES[covariance_type](k, d, rng)
    ref = hmmlearn.GaussianHMM(k, covariance_type=covariance_type, covars_prior=0.0, init_params="", params="stmc",
                               n_iter=n_iter, tol=-np.inf, implementation="log")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = pi, a, means, covs
    ref.fit(np.concatenate(seqs), lengths)
    x, lens = hmm.pad_sequences(seqs)
    with jax.enable_x64(True):
        fam = families.gaussian(covariance_type, reg_covar=0.0)
        start = hmm.make_hmm(pi, a, make_params(means, covs, covariance_type), fam)
        model, info = hmm.fit(x, k, lengths=lens, init_model=start, max_iter=n_iter, tol=0.0)
        trace = np.asarray(info.trace)[:n_iter] * lengths.sum()
        np.testing.assert_allclose(trace, ref.monitor_.history, rtol=1e-6)
        np.testing.assert_allclose(model.transition, ref.transmat_, atol=1e-6)
        np.testing.assert_allclose(model.initial, ref.startprob_, atol=1e-6)
        np.testing.assert_allclose(model.means, ref.means_, atol=1e-6)
        if covariance_type == "diag":
            np.testing.assert_allclose(model.covariances, ref._covars_, atol=1e-6)
            # evaluation agrees too: log-likelihood and the Viterbi path of the fitted model
            np.testing.assert_allclose(hmm.score(x, model, lens).sum(), ref.score(np.concatenate(seqs), lengths),
                                       rtol=1e-9)
            path = hmm.predict(x, model, lens)
            ref_path = ref.predict(np.concatenate(seqs), lengths)
            np.testing.assert_array_equal(np.concatenate([np.asarray(p[:n]) for p, n in zip(path, lens,
                                                                                             strict=True)]), ref_path)


SHAPE_B, SHAPE_T = 3, 12


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), lengths=st.lists(st.integers(2, SHAPE_T), min_size=SHAPE_B,
                                                         max_size=SHAPE_B))
def test_baum_welch_log_likelihood_never_decreases(seed, lengths):
    """Any data, any lengths (fixed padded shapes: one compiled program), random starts: EM is monotone."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((SHAPE_B, SHAPE_T, 2)) * rng.uniform(0.5, 3) + rng.integers(-2, 3, (SHAPE_B, SHAPE_T, 1))
    with jax.enable_x64(True):
        _, info = hmm.fit(x, 3, lengths=np.array(lengths), key=jax.random.key(seed % 1000), covariance_type="diag",
                          init_method="random", max_iter=15, tol=0.0)
        trace = np.asarray(info.trace)[: int(info.n_iter)]
    assert np.all(np.isfinite(trace))
    assert np.all(np.diff(trace) >= -1e-10 * np.abs(trace[1:]))


def test_fit_recovers_a_chain_and_same_key_same_result():
    rng = np.random.default_rng(1)
    seqs = _gaussian_data(rng, [300, 200, 250])
    x, lengths = hmm.pad_sequences([s.astype(np.float32) for s in seqs])
    model, info = hmm.fit(x, 3, lengths=lengths, key=jax.random.key(0), covariance_type="diag", n_init=2)
    order = np.argsort(np.asarray(model.means[:, 0]))  # states -3, 0, 3 -> true states 2, 0, 1
    np.testing.assert_allclose(np.asarray(model.means)[order, 0], [-3, 0, 3], atol=0.25)
    true_a = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])[[2, 0, 1]][:, [2, 0, 1]]
    np.testing.assert_allclose(np.asarray(model.transition)[order][:, order], true_a, atol=0.08)
    assert bool(info.converged) and info.restart_log_likelihoods.shape == (2,)
    again, _ = hmm.fit(x, 3, lengths=lengths, key=jax.random.key(0), covariance_type="diag", n_init=2)
    np.testing.assert_array_equal(again.transition, model.transition)


def test_fixed_parts_stay_fixed_and_zeros_stay_zero():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 1, 60), rng.normal(4, 1, 60)])[:, None]
    fam = families.gaussian("diag")
    a = np.array([[0.95, 0.05], [0.0, 1.0]])  # left-right: state 1 is absorbing
    start = hmm.make_hmm(np.array([1.0, 0.0]), a, make_params(np.array([[1.0], [3.0]]), np.ones((2, 1)), "diag"),
                         fam)
    model, _ = hmm.fit(x, 2, init_model=start, max_iter=30)
    assert float(model.transition[1, 0]) == 0.0 and float(model.initial[1]) == 0.0
    np.testing.assert_allclose(model.transition[0, 1], 1 / 60, rtol=0.2)  # one switch in 60 steps
    frozen, _ = hmm.fit(x, 2, init_model=start, max_iter=30, learn_transition=False, learn_emissions=False)
    np.testing.assert_array_equal(frozen.transition, start.transition)
    np.testing.assert_array_equal(frozen.means, start.means)
    np.testing.assert_array_equal(frozen.covariances, start.covariances)
    assert float(frozen.initial[0]) == 1.0


def test_statistics_of_chunks_add_up_to_those_of_the_batch():
    rng = np.random.default_rng(4)
    seqs = _gaussian_data(rng, [20, 7, 13, 16])
    x, lengths = hmm.pad_sequences(seqs)
    fam = families.gaussian("full")
    with jax.enable_x64(True):
        model = hmm.make_hmm(np.full(3, 1 / 3), np.full((3, 3), 1 / 3),
                             make_params(rng.standard_normal((3, 2)), np.stack([np.eye(2)] * 3), "full"), fam)
        stats = jax.jit(lambda x, n, c, m, method="sequential": hmm.e_step(hmm.prepare(x, fam, n, center=c), m,
                                                                           method=method), static_argnums=4)
        center = hmm.prepare(x, fam, lengths).prepared.center

        def assert_same(a, b, tol=1e-12):
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
                np.testing.assert_allclose(u, v, rtol=tol, atol=tol)

        full = stats(x, lengths, center, model)
        first, second = stats(x[:2], lengths[:2], center, model), stats(x[2:], lengths[2:], center, model)
        assert_same(full, jax.tree.map(jnp.add, first, second))  # two chunks of sequences add up to the batch
        # a zero-length sequence (padding a batch for devices) contributes nothing: [s0, -] + [-, s1] = [s0, s1]
        alone = [stats(x[:2], np.array([lengths[0], 0]), center, model),
                 stats(x[:2], np.array([0, lengths[1]]), center, model)]
        assert_same(first, jax.tree.map(jnp.add, *alone))
        # the parallel-in-time and blocked E-steps give the same statistics, empty sequences included
        assert_same(first, stats(x[:2], lengths[:2], center, model, "parallel"), 1e-10)
        assert_same(first, stats(x[:2], lengths[:2], center, model, "blocked"), 1e-10)
        assert_same(first, jax.tree.map(jnp.add, *[stats(x[:2], n, center, model, "blocked")
                                                   for n in (np.array([lengths[0], 0]), np.array([0, lengths[1]]))]),
                    1e-10)


def test_bic_picks_the_number_of_states():
    rng = np.random.default_rng(6)
    seqs = _gaussian_data(rng, [400], d=2)
    x = seqs[0].astype(np.float32)
    scores = []
    for k in (2, 3, 4):
        model, _ = hmm.fit(x, k, key=jax.random.key(0), covariance_type="diag", max_iter=50)
        scores.append(float(hmm.bic(x, model)))
    assert int(np.argmin(scores)) + 2 == 3, scores
    # new values, same shapes and settings: no new program
    before = hmm._fit_from_jit._cache_size()
    hmm.fit(x + 1, 4, key=jax.random.key(1), covariance_type="diag", max_iter=50, tol=1e-3)
    assert hmm._fit_from_jit._cache_size() == before


def test_sample_and_evaluation_agree_with_the_kernels():
    fam = families.gaussian("spherical")
    model = hmm.make_hmm(np.array([0.6, 0.4]), np.array([[0.8, 0.2], [0.3, 0.7]]),
                         make_params(np.array([[-2.0, 0.0], [2.0, 1.0]]), np.array([0.5, 1.0]), "spherical"), fam)
    x, z = hmm.sample(model, 4000, key=jax.random.key(3))
    assert x.shape == (4000, 2) and z.shape == (4000,)
    for j in range(2):
        np.testing.assert_allclose(np.asarray(x)[np.asarray(z) == j].mean(0), model.means[j], atol=0.1)
    x2, z2 = hmm.sample(model, 4000, key=jax.random.key(3))
    np.testing.assert_array_equal(x, x2)
    lb = fam.component_log_prob(x, model.components)
    post = hmm.forward_backward(lb, jnp.log(model.initial), jnp.log(model.transition))
    np.testing.assert_allclose(hmm.score(x, model), post.log_likelihood, rtol=1e-6)
    np.testing.assert_allclose(hmm.predict_proba(x, model), post.marginals, atol=1e-6)
    decoded = hmm.predict(x, model)
    assert float(np.mean(np.asarray(decoded) == np.asarray(z))) > 0.9
    np.testing.assert_array_equal(hmm.predict(x, model, algorithm="posterior"), post.marginals.argmax(-1))


def test_model_and_fit_argument_errors():
    fam = families.gaussian("diag")
    comps = make_params(np.zeros((2, 1)), np.ones((2, 1)), "diag")
    with pytest.raises(ValueError, match="transition"):
        hmm.make_hmm(np.array([0.5, 0.5]), np.array([[0.5, 0.6], [0.5, 0.5]]), comps, fam)
    with pytest.raises(ValueError, match="initial"):
        hmm.make_hmm(np.array([0.5, 0.5, 0.0]), np.full((2, 2), 0.5), comps, fam)
    x = np.zeros((3, 5, 1))
    with pytest.raises(ValueError, match="lengths"):
        hmm.fit(x, 2, lengths=[5, 0, 2], key=jax.random.key(0))
    with pytest.raises(TypeError, match="key"):
        hmm.fit(x[0], 2)
    with pytest.raises(ValueError, match="x"):
        hmm.fit(np.full((4, 1), np.nan), 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="n_states"):
        hmm.fit(x, 20, lengths=[1, 2, 3], key=jax.random.key(0))
    with pytest.raises(TypeError, match="model"):
        hmm.score(x[0], em.Mixture(np.ones(2) / 2, comps, fam))


def _family_case(name):
    """A 2-state model of each non-Gaussian family, with a perturbed copy as the starting model."""
    if name == "bernoulli":
        fam = families.bernoulli()
        return fam, fam.make_params(np.array([[0.9, 0.1, 0.8], [0.1, 0.7, 0.2]])), \
            fam.make_params(np.array([[0.6, 0.4, 0.6], [0.4, 0.5, 0.4]]))
    if name == "poisson":
        fam = families.poisson()
        return fam, fam.make_params(np.array([[1.0, 8.0], [6.0, 2.0]])), fam.make_params(np.array([[2.0, 5.0],
                                                                                                  [4.0, 3.0]]))
    if name == "categorical":
        fam = families.categorical(sizes=(3, 2))
        return fam, fam.make_params(np.array([[0.8, 0.1, 0.1, 0.9, 0.1], [0.1, 0.2, 0.7, 0.2, 0.8]])), \
            fam.make_params(np.array([[0.4, 0.3, 0.3, 0.6, 0.4], [0.3, 0.3, 0.4, 0.4, 0.6]]))
    fam = families.student_t(dof=4.0)
    return fam, fam.make_params(np.array([[-3.0, 0.0], [3.0, 1.0]]), np.stack([np.eye(2)] * 2)), \
        fam.make_params(np.array([[-1.0, 0.0], [1.0, 0.0]]), np.stack([2 * np.eye(2)] * 2))


@pytest.mark.parametrize("name", ["bernoulli", "poisson", "categorical", "student_t"])
def test_baum_welch_with_every_family(name):
    """Any engine family as emissions: EM is monotone, beats the generating model's likelihood and decodes it."""
    fam, truth, start = _family_case(name)
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    model = hmm.make_hmm(np.array([0.5, 0.5]), a, truth, fam)
    xs, zs = jax.vmap(lambda k: hmm.sample(model, 150, key=k))(jax.random.split(jax.random.key(0), 3))
    lengths = np.array([150, 120, 90])
    init = hmm.make_hmm(np.array([0.5, 0.5]), np.full((2, 2), 0.5), start, fam)
    fitted, info = hmm.fit(xs, 2, lengths=lengths, init_model=init, max_iter=40, tol=0.0)
    trace = np.asarray(info.trace)[: int(info.n_iter)]
    assert np.all(np.diff(trace) >= -1e-5 * np.abs(trace[1:])), trace
    assert float(hmm.score(xs, fitted, lengths).sum()) >= float(hmm.score(xs, model, lengths).sum()) - 1e-3
    path = np.asarray(hmm.predict(xs, fitted, lengths))
    valid = np.arange(150)[None, :] < lengths[:, None]
    assert np.mean(path[valid] == np.asarray(zs)[valid]) > 0.85


def test_chunked_fit_equals_the_batch_fit():
    rng = np.random.default_rng(8)
    seqs = _gaussian_data(rng, [30, 12, 25, 18, 9])
    x, lengths = hmm.pad_sequences(seqs)
    fam = families.gaussian("diag")
    with jax.enable_x64(True):
        start = hmm.make_hmm(np.full(3, 1 / 3), np.full((3, 3), 1 / 3),
                             make_params(np.array([[0.0, 0.0], [2.0, 2.0], [-2.0, -2.0]]), np.ones((3, 2)), "diag"),
                             fam)
        ref, ref_info = hmm.fit(x, 3, lengths=lengths, init_model=start, max_iter=12, tol=0.0)
        for model, info in [hmm.fit_chunked(x, start, lengths=lengths, chunk_size=2, max_iter=12, tol=0.0)]:
            np.testing.assert_allclose(info.trace, ref_info.trace, rtol=1e-12)
            np.testing.assert_allclose(model.transition, ref.transition, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(model.means, ref.means, rtol=1e-10, atol=1e-12)
            assert int(info.n_iter) == int(ref_info.n_iter) == 12


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    from jaxprob import hmm
    rng = np.random.default_rng(0)
    lengths = np.array([30, 12, 25, 18, 9])
    x = rng.standard_normal((5, 30, 2)) + rng.integers(-2, 3, (5, 30, 1)) * 2.0
    with jax.enable_x64(True):
        ref, ref_info = hmm.fit(x, 3, lengths=lengths, key=jax.random.key(0), covariance_type="full", n_init=2,
                                max_iter=10, tol=0.0)
        mesh = jax.make_mesh((3,), ("samples",), axis_types=(jax.sharding.AxisType.Auto,))
        model, info = hmm.fit_sharded(x, 3, lengths=lengths, mesh=mesh, key=jax.random.key(0),
                                      covariance_type="full", n_init=2, max_iter=10, tol=0.0)
        print(json.dumps({"n_devices": jax.device_count(),
                          "trace": float(np.max(np.abs(np.asarray(info.trace) / np.asarray(ref_info.trace) - 1))),
                          "transition": float(np.max(np.abs(model.transition - ref.transition))),
                          "means": float(np.max(np.abs(model.means - ref.means)))}))
    """
)


def test_sharded_fit_over_three_devices_equals_the_batch_fit():
    """Five sequences over three (forced host) devices, padded with an empty sequence: the fit of one device."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3 --xla_backend_optimization_level=0",
               JAX_PLATFORMS="cpu")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, cwd=root, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n_devices"] == 3
    assert res["trace"] < 1e-12 and res["transition"] < 1e-10 and res["means"] < 1e-10, res
