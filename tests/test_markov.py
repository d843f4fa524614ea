"""Markov chains and the word tokenizer: hand counts, padded batches, sampling frequencies, stationarity."""

import itertools
from collections import Counter, defaultdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

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


# ----------------------------------------------------------------------------------------------------------
# Kneser-Ney against the textbook recursion (float64 NumPy, dictionaries)
# ----------------------------------------------------------------------------------------------------------
def _kn_reference(seqs, s, k, method, discount=None):
    """p(w | ctx) of interpolated (modified) Kneser-Ney written from Chen and Goodman's recursion.

    Raw counts at order k; below it, continuation counts N1+(. ctx w): the number of distinct states seen just
    before (ctx, w), a sequence start counting as one more. Discounts from the count-of-counts of each order.
    """
    counts = [Counter() for _ in range(k + 1)]
    left = [defaultdict(set) for _ in range(k + 1)]
    for q in seqs:
        q = [int(v) for v in q]
        for t in range(len(q)):
            for lv in range(min(t, k) + 1):
                key = (tuple(q[t - lv : t]), q[t])
                if lv == k:
                    counts[lv][key] += 1
                else:
                    left[lv][key].add(q[t - lv - 1] if t - lv - 1 >= 0 else "start")
    for lv in range(k):
        counts[lv] = Counter({key: len(v) for key, v in left[lv].items()})
    disc = []
    for lv in range(k + 1):
        c = np.array(list(counts[lv].values()))
        n1, n2, n3, n4 = (int(np.sum(c == j)) for j in (1, 2, 3, 4))
        y = n1 / (n1 + 2 * n2) if n1 else 0.5
        if discount is not None:
            disc.append(tuple(discount) if method == "modified-kneser-ney" else (discount,) * 3)
        elif method == "kneser-ney" or 0 in (n1, n2, n3, n4):
            disc.append((y, y, y))
        else:
            d1, d2, d3 = 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3
            disc.append((d1, d2, d3) if 0 < d1 <= 1 and 0 < d2 <= 2 and 0 < d3 <= 3 else (y, y, y))
    rows = [defaultdict(dict) for _ in range(k + 1)]
    for lv in range(k + 1):
        for (ctx, w), c in counts[lv].items():
            rows[lv][ctx][w] = c

    def prob(ctx, w):
        lv = len(ctx)
        lower = prob(ctx[1:], w) if lv > 0 else 1.0 / s
        if ctx not in rows[lv]:
            return lower  # context never seen: all the weight goes to the lower order
        row = rows[lv][ctx]
        z = sum(row.values())

        def d(c):
            return disc[lv][min(c, 3) - 1]

        c = row.get(w, 0)
        num = max(c - d(c), 0.0) if c else 0.0
        return num / z + sum(d(v) for v in row.values()) / z * lower

    return prob


@pytest.mark.parametrize(("method", "order", "discount"), [("kneser-ney", 2, None), ("kneser-ney", 3, 0.6),
                                                           ("modified-kneser-ney", 2, None),
                                                           ("modified-kneser-ney", 1, (0.5, 1.0, 1.4))])
def test_kneser_ney_matches_the_textbook_recursion_in_float64(method, order, discount):
    rng = np.random.default_rng(2)
    s = 6
    # a skewed chain so that counts of 1, 2, 3 and 4+ all occur (the three modified discounts of order 1 then
    # differ: about (0.29, 0.97, 1.29))
    p = rng.dirichlet(np.ones(s) * 0.5, size=s)
    seqs = []
    for n in (400, 250, 0, 1, 2, 30, 170):
        q = [int(rng.integers(s))] if n else []
        while len(q) < n:
            q.append(int(rng.choice(s, p=p[q[-1]])))
        seqs.append(np.array(q, np.int64))
    ref = _kn_reference(seqs, s, order, method, discount)
    with jax.enable_x64(True):
        batch, lengths = markov.pad_sequences(seqs)
        model = markov.fit(batch, lengths, s, order=order, smoothing=method, discount=discount)
        assert model.pair_probs.dtype == jnp.float64
        contexts = np.array(list(itertools.product(range(s), repeat=order)), np.int32).reshape(-1, order)
        probs = np.asarray(jax.vmap(lambda c: markov.next_state_probs(model, c))(jnp.asarray(contexts)))
        expected = np.array([[ref(tuple(int(v) for v in c), w) for w in range(s)] for c in contexts])
        np.testing.assert_allclose(probs, expected, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-12)  # the reference is a distribution
        assert np.all(probs > 0)
        # held-out log-likelihood: the sum of the reference's log-probabilities
        held = rng.integers(0, s, 12)
        expect = sum(np.log(ref(tuple(int(v) for v in held[t - order : t]), int(held[t])))
                     for t in range(order, held.shape[0]))
        got = markov.log_likelihood(model, jnp.asarray(held[None], jnp.int32), None)
        assert float(got[0]) == pytest.approx(expect, rel=1e-12)
        # greedy generation follows the argmax of the same distribution
        g = markov.generate(model, jnp.asarray(held[:order], jnp.int32), 3, greedy=True)
        ctx = tuple(int(v) for v in held[:order])
        for state in np.asarray(g.states):
            dist = [ref(ctx, w) for w in range(s)]
            assert state == int(np.argmax(dist))
            ctx = (ctx + (int(state),))[1:] if order else ()


def test_kneser_ney_samples_follow_its_probabilities():
    seq = jnp.array([[0, 1, 2, 0, 1, 1, 3, 0, 1, 2, 2, 0]])
    model = markov.fit(seq, None, 5, order=2, smoothing="kneser-ney")
    p = np.asarray(markov.next_state_probs(model, jnp.array([0, 1])))
    draws = jax.vmap(lambda k: markov.generate(model, jnp.array([0, 1]), 1, key=k).states[0])(
        jax.random.split(jax.random.key(7), 20_000))
    freq = np.bincount(np.asarray(draws), minlength=5) / 20_000
    np.testing.assert_allclose(freq, p, atol=5 * np.sqrt(p * (1 - p) / 20_000).max())


def test_alice_kneser_ney_improves_with_order_without_x64():
    assert not jax.config.jax_enable_x64
    sents = text.tokenize(datasets.load_alice())
    perm = np.random.default_rng(0).permutation(len(sents))
    valid, train = [sents[i] for i in perm[:170]], [sents[i] for i in perm[170:]]
    vocab = text.build_vocabulary(train, min_count=2)
    assert len(vocab) ** 3 > 2**31  # a base-V context id of order 3 would overflow int32
    tr, tr_len = text.encode(train, vocab, order=3)
    va, va_len = text.encode(valid, vocab, order=3)
    ppl = {}
    for k in (1, 2, 3):
        cut = 3 - k
        model = markov.fit(tr[:, cut:], tr_len - cut, len(vocab), order=k, smoothing="kneser-ney")
        assert model.child_ptr.dtype == model.next_states.dtype == jnp.int32
        ppl[k] = float(markov.perplexity(model, va[:, cut:], va_len - cut))
    assert ppl[2] < 0.95 * ppl[1] and ppl[3] < ppl[1]
    # the order-3 tables hold the trigram counts of plain Python
    tri, ctx = Counter(), Counter()
    for r, n in zip(tr, tr_len, strict=True):
        for t in range(3, int(n)):
            tri[tuple(r[t - 3 : t + 1])] += 1
            ctx[tuple(r[t - 3 : t])] += 1
    model = markov.fit(tr, tr_len, len(vocab), order=3, smoothing=0.0)
    assert model.n_contexts == len(ctx)
    for c, n in ctx.most_common(3):
        probs = np.asarray(markov.next_state_probs(model, jnp.asarray(c, jnp.int32)))
        expected = np.zeros(len(vocab))
        for (a, b, d, w), m in tri.items():
            if (a, b, d) == c:
                expected[w] = m / n
        np.testing.assert_allclose(probs, expected, rtol=1e-6, atol=1e-7)


def test_invalid_states_under_jit_are_never_counted():
    s = 3
    # 3, -1 and 5 lie outside [0, 3); the pair index 0 * 3 + 3 would alias the pair (1, 0)
    seq = jnp.array([[0, 3, 0, 1, -1, 2, 2], [1, 2, 5, 0, 0, 0, 0], [1, 0, 0, 7, 7, 7, 7]])
    lengths = jnp.array([7, 3, 3])
    counts, info = jax.jit(lambda q, n: markov.count_transitions(q, n, s, return_info=True))(seq, lengths)
    ref, rejected = np.zeros((s, s), int), 0
    for row, n in zip(np.asarray(seq), np.asarray(lengths), strict=True):
        for a, b in zip(row[: n - 1], row[1:n], strict=True):
            if 0 <= a < s and 0 <= b < s:
                ref[a, b] += 1
            else:
                rejected += 1
    np.testing.assert_array_equal(np.asarray(counts), ref)
    assert int(info.n_rejected) == rejected == 5 and int(info.n_counted) == ref.sum()
    # under checkify the rejected transitions are a failed check; valid input passes
    checked = checkify.checkify(lambda q, n: markov.count_transitions(q, n, s), errors=checkify.user_checks)
    err, _ = jax.jit(checked)(seq, lengths)
    with pytest.raises(checkify.JaxRuntimeError, match="5 transition"):
        err.throw()
    err, out = jax.jit(checked)(jnp.minimum(seq % 3, 2), lengths)
    assert err.get() is None
    # eager calls raise, naming the argument
    with pytest.raises(ValueError, match="`sequences` holds state 3 at"):
        markov.count_transitions(seq, lengths, s)
    # the initial counts and the log-likelihood under jit skip / zero out invalid states as well
    init = jax.jit(lambda q: markov.count_initial(q, None, s))(jnp.array([[5, 0], [1, 1], [-2, 0]]))
    assert init.tolist() == [0, 1, 0]
    model = markov.fit(jnp.array([[0, 1, 2, 0]]), None, s, smoothing=1.0)
    ll = jax.jit(lambda q: markov.log_likelihood(model, q, None))(jnp.array([[0, 1, 2], [0, 4, 1], [-1, 0, 1]]))
    assert np.isfinite(float(ll[0])) and np.isneginf(np.asarray(ll[1:])).all()


def test_smoothing_and_discount_arguments():
    good = jnp.array([[0, 1, 2, 0, 1]])
    with pytest.raises(ValueError, match="smoothing"):
        markov.fit(good, None, 3, smoothing="kneser")
    with pytest.raises(TypeError, match="smoothing"):
        markov.fit(good, None, 3, smoothing=None)
    with pytest.raises(ValueError, match="discount"):
        markov.fit(good, None, 3, smoothing=1.0, discount=0.5)
    with pytest.raises(ValueError, match="discount"):
        markov.fit(good, None, 3, smoothing="kneser-ney", discount=1.5)
    with pytest.raises(ValueError, match="discount"):
        markov.fit(good, None, 3, smoothing="modified-kneser-ney", discount=(0.5, 2.5, 1.0))
    with pytest.raises(TypeError, match="return_info"):
        markov.count_transitions(good, None, 3, return_info=1)


def test_excluded_states_are_never_generated():
    seq = jnp.array([[0, 1, 0, 1, 0, 2, 0, 3, 0, 1]])
    model = markov.fit(seq, None, 4, smoothing=0.5)
    p = np.asarray(markov.next_state_probs(model, 0))
    draws = jax.vmap(lambda k: markov.generate(model, 0, 1, key=k, exclude=[1]).states[0])(
        jax.random.split(jax.random.key(2), 20_000))
    freq = np.bincount(np.asarray(draws), minlength=4) / 20_000
    target = np.where(np.arange(4) == 1, 0.0, p) / (1 - p[1])  # renormalised without state 1
    assert freq[1] == 0.0
    np.testing.assert_allclose(freq, target, atol=5 * np.sqrt(target * (1 - target) / 20_000).max())
    assert markov.generate(model, 0, 1, greedy=True, exclude=[1]).states.tolist() == [int(np.argsort(-p)[1])]
    with pytest.raises(ValueError, match="exclude"):
        markov.generate(model, 0, 3, greedy=True, exclude=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="exclude"):
        markov.generate(model, 0, 3, greedy=True, exclude=[4])


def test_docs_perplexity_table_matches_the_experiment():
    from experiments import markov_text as study

    page = (Path(__file__).resolve().parents[1] / "docs" / "markov.md").read_text()
    block = page.split("<!-- perplexity-table")[1].split("<!-- end perplexity-table -->")[0]
    rows = [line.strip("|").split("|") for line in block.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0]]
    table = {r[0].strip(): dict(zip(header[1:], (float(v) for v in r[1:]), strict=True)) for r in rows[1:]}
    d = study.DEFAULTS
    assert header[1:] == [f"order {k}" for k in d["orders"]]
    assert list(table) == [study.smoothing_label(s) for s in d["smoothings"]]
    train, valid = study.split_sentences(text.tokenize(datasets.load_alice()), 0, d["valid_fraction"])
    vocab = text.build_vocabulary(train, min_count=d["min_count"])
    # orders 1 and 2 (the claim of the page: Kneser-Ney improves from 1 to 2, additive smoothing does not);
    # the encoding makes each order's numbers independent of the other orders run beside it
    ppl, _ = study.perplexity_grid(train, valid, vocab, [1, 2], d["smoothings"])
    for (k, sm), value in ppl.items():
        assert table[study.smoothing_label(sm)][f"order {k}"] == pytest.approx(value, abs=0.051), (k, sm)
    assert ppl[(2, "kneser-ney")] < ppl[(1, "kneser-ney")] and ppl[(2, 1.0)] > ppl[(1, 1.0)]


def test_markov_text_study_runs_on_a_french_text(tmp_path):
    from experiments import markov_text as study

    path = tmp_path / "fr.txt"
    path.write_text("Le chat dort sur le lit. L'élève lit un livre près du feu. Le chien court dans le jardin. "
                    "L'enfant joue avec le chat ! Qu'il est content, le petit chien. Le livre est sur la table. "
                    "Où est le chat ? Il dort près du feu. Peut-être dort-il encore. Le jardin est grand. " * 3,
                    encoding="utf-8")
    out = study._french(path, 0, [0, 1], ["kneser-ney"], [1.0], 1, 0.3, 12, 1)
    assert out["status"] == "run" and out["vocabulary"] > 20
    assert out["valid_perplexity"]["order=1,smoothing=kneser-ney"] < out["valid_perplexity"][
        "order=0,smoothing=kneser-ney"]
    generated = " ".join(t for texts in out["generated"].values() for t in texts)
    assert "<unk>" not in generated and generated[0].isupper()
    assert study._french(None, 0, [0], [1.0], [1.0], 1, 0.3, 5, 1)["status"].startswith("not run")
