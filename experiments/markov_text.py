"""Word-level Markov chains on Alice in Wonderland: perplexity against order, generation, heat map."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, markov, text

DESCRIPTION = "Word Markov models of Alice in Wonderland: held-out perplexity vs order, generation, heat map"
DEFAULTS = {
    "orders": [0, 1, 2, 3],
    "smoothings": [0.01, 0.1, 1.0],
    "temperatures": [0.5, 1.0, 1.5],
    "min_count": 2,
    "valid_fraction": 0.1,
    "n_words": 40,
    "n_samples": 3,
    "top_words": 20,
}


def run(out_dir, seed, orders, smoothings, temperatures, min_count, valid_fraction, n_words, n_samples,
        top_words):
    # order-k context ids are base-V numbers: V**3 exceeds int32 for V > 1290, so orders >= 3 run with x64
    # (int64 ids, float64 probabilities)
    with jax.enable_x64(max(orders) >= 3):
        return _run(out_dir, seed, orders, smoothings, temperatures, min_count, valid_fraction, n_words,
                    n_samples, top_words)


def _run(out_dir, seed, orders, smoothings, temperatures, min_count, valid_fraction, n_words, n_samples,
         top_words):
    import matplotlib.pyplot as plt

    sentences = text.tokenize(datasets.load_alice())
    perm = np.random.default_rng(seed).permutation(len(sentences))
    n_valid = int(round(valid_fraction * len(sentences)))
    valid = [sentences[i] for i in perm[:n_valid]]
    train = [sentences[i] for i in perm[n_valid:]]
    vocab = text.build_vocabulary(train, min_count=min_count)
    s = len(vocab)
    metrics = {"n_sentences": len(sentences), "n_train": len(train), "n_valid": n_valid, "vocabulary": s,
               "train_tokens": int(sum(len(t) for t in train))}

    # held-out perplexity against order and smoothing (each order is scored on the same transitions:
    # every sentence starts with max(orders) <s> tokens, so the first word always has a full context)
    k_max = max(orders)
    tr, tr_len = text.encode(train, vocab, order=k_max)
    va, va_len = text.encode(valid, vocab, order=k_max)
    ppl = {}
    models = {}
    for alpha in smoothings:
        for k in orders:
            # drop the surplus <s> so that an order-k model sees exactly k of them
            cut = k_max - k
            model = markov.fit(tr[:, cut:], tr_len - cut, s, order=k, smoothing=alpha)
            ppl[(k, alpha)] = float(markov.perplexity(model, va[:, cut:], va_len - cut))
            models[(k, alpha)] = model
    metrics["valid_perplexity"] = {f"order={k},smoothing={a}": v for (k, a), v in ppl.items()}
    metrics["train_contexts"] = {f"order={k}": models[(k, smoothings[0])].n_contexts for k in orders}
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for alpha in smoothings:
        ax.semilogy(orders, [ppl[(k, alpha)] for k in orders], "o-", label=f"smoothing α={alpha}")
    ax.set(xlabel="order k", ylabel="held-out perplexity", xticks=orders,
           title=f"Alice: {len(train)} training sentences, V={s}")
    ax.legend()
    save_figure(fig, out_dir, "perplexity_vs_order")

    # generation: greedy and sampled, bigram and trigram
    alpha_gen = min(smoothings)
    samples = {}
    key = jax.random.key(seed)
    for k in (1, 2):
        if (k, alpha_gen) not in models:
            continue
        model = models[(k, alpha_gen)]
        start = jnp.full((k,), vocab.bos_id, jnp.int32)
        g = markov.generate(model, start, n_words, greedy=True, stop_state=vocab.eos_id)
        samples[f"order={k},greedy"] = [text.decode(g.states[: int(g.length)], vocab)]
        for t in temperatures:
            out = []
            for _ in range(n_samples):
                key, sub = jax.random.split(key)
                g = markov.generate(model, start, n_words, key=sub, temperature=t, stop_state=vocab.eos_id)
                out.append(text.decode(g.states[: int(g.length)], vocab))
            samples[f"order={k},temperature={t}"] = out
    metrics["generated"] = samples
    lines = []
    for name, texts in samples.items():
        lines += [f"[{name}]"] + [f"  {t}" for t in texts]
    (out_dir / "generated.txt").write_text("\n".join(lines) + "\n")

    # heat map of the most frequent words' bigram transition probabilities
    bigram = models[(1, alpha_gen)]
    counts = np.bincount(np.concatenate([np.asarray(r[:n]) for r, n in zip(tr, tr_len, strict=True)]),
                         minlength=s)
    counts[: 3] = 0  # reserved tokens
    top = np.argsort(-counts, kind="stable")[:top_words]
    probs = jax.vmap(lambda c: markov.next_state_probs(bigram, c))(jnp.asarray(top[:, None], jnp.int32))
    sub = np.asarray(probs)[:, top]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(sub, cmap="magma")
    labels = [vocab.tokens[i] for i in top]
    ax.set_xticks(range(top_words), labels, rotation=90)
    ax.set_yticks(range(top_words), labels)
    ax.set(xlabel="next word", ylabel="current word", title="bigram p(next | current), most frequent words")
    fig.colorbar(im, ax=ax, shrink=0.8)
    save_figure(fig, out_dir, "bigram_heatmap")
    metrics["top_words"] = labels

    # stationary distribution of the bigram chain against word frequencies
    p_full = markov.transition_matrix(bigram)
    pi = np.asarray(markov.stationary_distribution(p_full))
    tokens = [np.asarray(r[k_max - 1 : n]) for r, n in zip(tr, tr_len, strict=True)]
    freq = np.bincount(np.concatenate(tokens), minlength=s)
    metrics["stationary_vs_frequency_tv"] = float(0.5 * np.abs(pi - freq / freq.sum()).sum())
    metrics["stationary_residual"] = float(np.abs(pi @ np.asarray(p_full) - pi).max())
    return metrics
