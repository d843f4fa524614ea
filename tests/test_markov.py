"""Markov chains and the word tokenizer: hand counts, padded batches, sampling frequencies, stationarity."""

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprob import datasets, markov, text

CORPUS = "The cat sat. A cat sat. The cat ran. My cat!"


def _bigram_counts(rows):
    pairs = Counter()
    for r in rows:
        pairs.update(zip(r[:-1], r[1:], strict=True))
    return pairs


def test_hand_made_corpus_bigram_probabilities_equal_hand_counts():
    sentences = text.tokenize(CORPUS)
    assert len(sentences) == 4
    vocab = text.build_vocabulary(sentences)
    batch, lengths = text.encode(sentences, vocab, order=1)
    model = markov.fit(batch, lengths, len(vocab), smoothing=0.0)
    p = np.asarray(markov.transition_matrix(model))
    cat = vocab.id("cat")
    # "cat" is followed by "sat" twice, "ran" once and the punctuation mark "!" once
    assert p[cat, vocab.id("sat")] == pytest.approx(0.5)
    assert p[cat, vocab.id("ran")] == pytest.approx(0.25)
    assert p[cat, vocab.id("!")] == pytest.approx(0.25)
    assert p[cat, vocab.id(".")] == 0.0
    assert p[vocab.bos_id, vocab.id("the")] == pytest.approx(0.5)
    # every bigram probability equals the count from plain Python
    rows = [[vocab.bos_id] + [vocab.id(t) for t in s] + [vocab.eos_id] for s in sentences]
    pairs = _bigram_counts(rows)
    out = Counter()
    for (a, _), c in pairs.items():
        out[a] += c
    expected = np.zeros_like(p)
    for (a, b), c in pairs.items():
        expected[a, b] = c / out[a]
    seen = np.array([out[a] > 0 for a in range(len(vocab))])
    np.testing.assert_allclose(p[seen], expected[seen], rtol=1e-6)


def test_hand_counts_half_quarter_quarter():
    # "cat" followed by "sat" twice, "ran" once and "." once
    sentences = text.tokenize("The cat sat. A cat sat. The cat ran. My cat.")
    vocab = text.build_vocabulary(sentences)
    batch, lengths = text.encode(sentences, vocab, order=1)
    probs = np.asarray(markov.next_state_probs(markov.fit(batch, lengths, len(vocab), smoothing=0.0),
                                               vocab.id("cat")))
    got = {vocab.tokens[i]: round(float(probs[i]), 6) for i in np.flatnonzero(probs)}
    assert got == {"sat": 0.5, "ran": 0.25, ".": 0.25}


def test_laplace_smoothing_by_hand():
    seq = jnp.array([[0, 1, 0, 1, 1, 2]])
    p = np.asarray(markov.transition_matrix(markov.fit(seq, None, 4, smoothing=1.0)))
    # row 1: successors 0, 1, 2 once each, 3 transitions: (1 + 1) / (3 + 4)
    np.testing.assert_allclose(p[1], [2 / 7, 2 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    # state 3 never seen as a context: backs off to the unigram distribution (counts 2, 3, 1, 0 over 6 tokens)
    np.testing.assert_allclose(p[3], [3 / 10, 4 / 10, 2 / 10, 1 / 10], rtol=1e-6)


def test_padded_batch_counts_equal_per_sequence_counts(rng):
    s = 6
    seqs = [rng.integers(0, s, n) for n in (0, 1, 2, 7, 15, 3)]
    batch, lengths = markov.pad_sequences(seqs, pad_value=5)
    together = np.asarray(markov.count_transitions(batch, lengths, s))
    one_by_one = sum(np.asarray(markov.count_transitions(jnp.asarray(q, jnp.int32)[None], None, s))
                     for q in seqs if len(q) > 1)
    np.testing.assert_array_equal(together, one_by_one)
    ref = np.zeros((s, s), int)
    for q in seqs:
        np.add.at(ref, (q[:-1], q[1:]), 1)
    np.testing.assert_array_equal(together, ref)
    init = np.bincount([q[0] for q in seqs if len(q)], minlength=s)
    np.testing.assert_array_equal(np.asarray(markov.count_initial(batch, lengths, s)), init)
    # the sparse tables of fit hold the same counts
    model = markov.fit(batch, lengths, s, smoothing=0.0)
    dense = np.zeros((s, s))
    lo, hi = model.level_offsets[1], model.level_offsets[2]
    ptr = np.asarray(model.row_ptr)
    for r, ctx in zip(range(lo, hi), np.asarray(model.context_state[lo:hi]), strict=True):
        dense[ctx, np.asarray(model.next_states[ptr[r]:ptr[r + 1]])] = model.pair_counts[ptr[r]:ptr[r + 1]]
    np.testing.assert_array_equal(dense, ref)


def test_order2_counts_and_log_likelihood_match_python(rng):
    s = 5
    seqs = [rng.integers(0, s, n) for n in (9, 4, 12, 2)]
    batch, lengths = markov.pad_sequences(seqs)
    model = markov.fit(batch, lengths, s, order=2, smoothing=0.5)
    tri, ctx = Counter(), Counter()
    for q in seqs:
        for t in range(2, len(q)):
            tri[(q[t - 2], q[t - 1], q[t])] += 1
            ctx[(q[t - 2], q[t - 1])] += 1
    assert model.n_contexts == len(ctx)
    for (a, b, c), n in tri.items():
        p = markov.next_state_probs(model, jnp.array([a, b]))
        assert float(p[c]) == pytest.approx((n + 0.5) / (ctx[(a, b)] + 0.5 * s), rel=1e-6)
    # held-out log-likelihood by hand (contexts all seen in training for this sequence)
    held = seqs[2][:6]
    expect = sum(np.log((tri[tuple(held[t - 2 : t + 1])] + 0.5) / (ctx[tuple(held[t - 2 : t])] + 2.5))
                 for t in range(2, 6))
    got = markov.log_likelihood(model, jnp.asarray(held[None], jnp.int32), None)
    assert float(got[0]) == pytest.approx(expect, rel=1e-5)
    ppl = markov.perplexity(model, jnp.asarray(held[None], jnp.int32), None)
    assert float(ppl) == pytest.approx(np.exp(-expect / 4), rel=1e-5)


def test_backoff_at_unseen_context_is_defined_and_reported():
    seq = jnp.array([[0, 1, 2, 0, 1, 2]])
    model = markov.fit(seq, None, 4, order=2, smoothing=0.0)
    # (2, 2) unseen; its suffix (2,) is seen and always followed by 0
    np.testing.assert_allclose(np.asarray(markov.next_state_probs(model, jnp.array([2, 2]))), [1, 0, 0, 0])
    # (3, 3): neither seen -> unigram
    unigram = np.asarray(markov.next_state_probs(model, jnp.array([3, 3])))
    np.testing.assert_allclose(unigram, [1 / 3, 1 / 3, 1 / 3, 0], rtol=1e-6)
    g = markov.generate(model, jnp.array([3, 3]), 4, greedy=True)
    assert g.orders.tolist() == [0, 1, 2, 2] and g.states.tolist() == [0, 1, 2, 0]
    # smoothing 0: an unseen successor of a seen context has log-probability -inf, never NaN
    ll = markov.log_likelihood(model, jnp.array([[0, 1, 0, 3, 3]]), None)
    assert np.isneginf(float(ll[0]))


def _random_chain(rng, s):
    p = rng.dirichlet(np.ones(s) * 0.7, size=s)
    x = np.empty(20_000, int)
    x[0] = 0
    u = rng.random(x.shape[0])
    cum = np.cumsum(p, axis=1)
    for t in range(1, x.shape[0]):
        x[t] = min(np.searchsorted(cum[x[t - 1]], u[t]), s - 1)
    return p, x


def test_sampled_transition_frequencies_converge_to_the_matrix(rng):
    s = 4
    p_true, x = _random_chain(rng, s)
    model = markov.fit(jnp.asarray(x, jnp.int32), None, s, smoothing=0.0)
    p = np.asarray(markov.transition_matrix(model), np.float64)
    assert np.max(np.abs(p - p_true)) < 0.05  # the estimate converges to the generating matrix
    for temperature in (1.0, 0.5):
        g = markov.generate(model, 0, 20_000, key=jax.random.key(1), temperature=temperature)
        y = np.asarray(g.states)
        counts = np.zeros((s, s))
        np.add.at(counts, (y[:-1], y[1:]), 1)
        n_row = counts.sum(1, keepdims=True)
        target = p ** (1 / temperature)
        target /= target.sum(1, keepdims=True)
        se = np.sqrt(target * (1 - target) / n_row) + 1e-9
        assert np.all(np.abs(counts / n_row - target) < 5 * se + 1e-3), temperature


def test_smoothed_sampling_matches_smoothed_probabilities():
    # row 0 has seen successors {1: 3, 2: 1}; with alpha = 1 over 5 states p = (1, 4, 2, 1, 1) / 9
    seq = jnp.array([[0, 1, 0, 1, 0, 1, 0, 2]])
    model = markov.fit(seq, None, 5, smoothing=1.0)
    p = np.asarray(markov.next_state_probs(model, 0))
    np.testing.assert_allclose(p, np.array([1, 4, 2, 1, 1]) / 9, rtol=1e-6)
    keys = jax.random.split(jax.random.key(3), 20_000)
    draws = jax.vmap(lambda k: markov.generate(model, 0, 1, key=k).states[0])(keys)
    freq = np.bincount(np.asarray(draws), minlength=5) / 20_000
    np.testing.assert_allclose(freq, p, atol=5 * np.sqrt(p * (1 - p) / 20_000).max())
    t_draws = jax.vmap(lambda k: markov.generate(model, 0, 1, key=k, temperature=0.5).states[0])(
        jax.random.split(jax.random.key(4), 20_000))
    t_freq = np.bincount(np.asarray(t_draws), minlength=5) / 20_000
    target = p**2 / np.sum(p**2)
    np.testing.assert_allclose(t_freq, target, atol=5 * np.sqrt(target * (1 - target) / 20_000).max())


def test_greedy_is_argmax_and_deterministic():
    seq = jnp.array([[0, 1, 0, 1, 0, 2, 2, 0, 1, 1, 2]])
    model = markov.fit(seq, None, 3, smoothing=1.0)
    g1 = markov.generate(model, 2, 6, greedy=True)
    g2 = markov.generate(model, 2, 6, greedy=True, key=jax.random.key(5))
    p = np.asarray(markov.transition_matrix(model))
    expected, s = [], 2
    for _ in range(6):
        s = int(np.argmax(p[s]))
        expected.append(s)
    assert g1.states.tolist() == expected == g2.states.tolist()


def test_stationary_distribution(rng):
    p_true, x = _random_chain(rng, 5)
    pi = np.asarray(markov.stationary_distribution(jnp.asarray(p_true, jnp.float32)), np.float64)
    np.testing.assert_allclose(pi @ p_true, pi, atol=1e-5)
    vals, vecs = np.linalg.eig(p_true.T)
    ref = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
    np.testing.assert_allclose(pi, ref / ref.sum(), atol=1e-5)
    with jax.enable_x64(True):
        model = markov.fit(jnp.asarray(x), None, 5, smoothing=1.0)
        p = markov.transition_matrix(model)
        pi = markov.stationary_distribution(p)
        np.testing.assert_allclose(np.asarray(pi @ p), np.asarray(pi), atol=1e-12)
        assert p.dtype == jnp.float64


def test_large_vocabulary_order2_is_sparse(rng):
    v = 10_000
    x = rng.integers(0, v, 30_000)
    model = markov.fit(jnp.asarray(x, jnp.int32), None, v, order=2, smoothing=1.0)
    n_leaves = sum(np.size(a) for a in jax.tree.leaves(model))
    # a few arrays per context and per (context, successor) pair: nowhere near V**2, let alone V**3
    assert n_leaves < 15 * x.shape[0] + 2 * v
    ctx = jnp.asarray(x[5:7], jnp.int32)
    p = markov.next_state_probs(model, ctx)
    assert float(p[x[7]]) == pytest.approx(2 / (1 + v), rel=1e-4)
    assert float(jnp.sum(p)) == pytest.approx(1.0, rel=1e-4)


def test_no_retrace_for_new_lengths_and_temperatures(rng):
    batch = jnp.asarray(rng.integers(0, 4, (3, 10)), jnp.int32)
    markov.count_transitions(batch, jnp.array([10, 3, 0]), 4)
    n = markov._count_transitions_jit._cache_size()
    markov.count_transitions(batch[::-1], jnp.array([1, 9, 5]), 4)
    assert markov._count_transitions_jit._cache_size() == n
    model = markov.fit(batch, None, 4)
    markov.generate(model, 0, 8, key=jax.random.key(0), temperature=1.0)
    n = markov._generate_jit._cache_size()
    markov.generate(model, 1, 8, key=jax.random.key(1), temperature=0.3, stop_state=2)
    assert markov._generate_jit._cache_size() == n
    markov.log_likelihood(model, batch, jnp.array([10, 3, 0]))
    n = markov._log_likelihood_jit._cache_size()
    markov.log_likelihood(model, batch, jnp.array([2, 2, 2]))
    assert markov._log_likelihood_jit._cache_size() == n


def test_bad_input():
    good = jnp.array([[0, 1, 2]])
    model = markov.fit(good, None, 3)
    with pytest.raises(ValueError, match="outside"):
        markov.fit(jnp.array([[0, 3, 1]]), None, 3)
    with pytest.raises(ValueError, match="outside"):
        markov.count_transitions(jnp.array([[0, -1]]), None, 3)
    markov.fit(jnp.array([[0, 1, 7]]), jnp.array([2]), 3)  # padding beyond the length is ignored
    with pytest.raises(ValueError, match="non-negative"):
        markov.fit(good, jnp.array([-1]), 3)
    with pytest.raises(ValueError, match="at most"):
        markov.fit(good, jnp.array([4]), 3)
    with pytest.raises(ValueError, match="longer than order"):
        markov.fit(good, jnp.array([0]), 3)  # only an empty sequence
    with pytest.raises(ValueError, match="longer than order"):
        markov.fit(good, None, 3, order=3)
    with pytest.raises(TypeError, match="integer"):
        markov.fit(jnp.array([[0.0, 1.0]]), None, 3)
    with pytest.raises(ValueError, match="pad_sequences"):
        markov.fit([[0, 1], [1]], None, 3)
    with pytest.raises(ValueError, match="smoothing"):
        markov.fit(good, None, 3, smoothing=-1.0)
    with pytest.raises(ValueError, match="context"):
        markov.next_state_probs(model, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="context"):
        markov.generate(model, 5, 3, greedy=True)
    with pytest.raises(TypeError, match="key"):
        markov.generate(model, 0, 3)
    with pytest.raises(ValueError, match="temperature"):
        markov.generate(model, 0, 3, key=jax.random.key(0), temperature=0.0)
    with pytest.raises(ValueError, match="order"):
        markov.perplexity(model, jnp.array([[0]]), None)
    with pytest.raises(ValueError, match="row-stochastic"):
        markov.stationary_distribution(jnp.array([[0.5, 0.4], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="order-1"):
        markov.transition_matrix(markov.fit(good, None, 3, order=2))
    # order 0 (unigram) works and never yields NaN
    assert np.all(np.isfinite(np.asarray(markov.next_state_probs(markov.fit(good, None, 3, order=0), [])
                                         .astype(float))))


def test_tokenizer_vocabulary_and_round_trip():
    sents = text.tokenize("Alice said: `Hello (world) -- it's late!'\n\nNew paragraph")
    assert sents == [["alice", "said", ":", "hello", "(", "world", ")", "--", "it's", "late", "!"],
                     ["new", "paragraph"]]
    vocab = text.build_vocabulary(sents)
    batch, lengths = text.encode(sents + [["unseen", "word", "."]], vocab, order=2)
    assert batch[2, :2].tolist() == [vocab.bos_id, vocab.bos_id] and batch[2, 2] == vocab.unk_id
    assert batch[0, lengths[0] - 1] == vocab.eos_id
    decoded = text.decode(batch[0, : lengths[0]], vocab)
    assert decoded == "Alice said: hello (world) -- it's late!"
    assert text.decode([vocab.bos_id, vocab.unk_id, vocab.eos_id], vocab) == "<unk>"
    with pytest.raises(ValueError, match="ids"):
        text.decode([len(vocab)], vocab)


def test_alice_text_bigram_model():
    sents = text.tokenize(datasets.load_alice())
    vocab = text.build_vocabulary(sents, min_count=2)
    assert 1000 < len(sents) < 3000 and 1000 < len(vocab) < 3000
    batch, lengths = text.encode(sents, vocab, order=1)
    model = markov.fit(batch, lengths, len(vocab), smoothing=0.1)
    ppl = float(markov.perplexity(model, batch, lengths))
    assert 5 < ppl < 200
    g = markov.generate(model, vocab.bos_id, 40, greedy=True, stop_state=vocab.eos_id)
    assert text.decode(g.states[: int(g.length)], vocab).startswith("I")
