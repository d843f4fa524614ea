"""Word-level Markov chains: held-out perplexity against order and smoothing, generation, heat map.

English: *Alice's Adventures in Wonderland* (shipped with jaxprob). French: a UTF-8 text given as
`--param french_text=PATH`; no French text installs offline here (see shared/DATASETS.md), so by default the
run is English only and `metrics["french"]["status"]` says so.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, markov, text

DESCRIPTION = ("Word Markov models of Alice in Wonderland (and a French text when given): held-out perplexity "
               "by order and smoothing (additive, Kneser-Ney), generation, heat map")
DEFAULTS = {
    "orders": [0, 1, 2, 3, 4],
    "smoothings": [0.01, 0.1, 1.0, "kneser-ney", "modified-kneser-ney"],
    "temperatures": [0.5, 1.0],
    "min_count": 2,
    "valid_fraction": 0.1,
    "n_words": 40,
    "n_samples": 3,
    "top_words": 20,
    "french_text": None,
}


def split_sentences(sentences, seed: int, valid_fraction: float):
    """Random split of the sentences into (train, valid)."""
    perm = np.random.default_rng(seed).permutation(len(sentences))
    n_valid = int(round(valid_fraction * len(sentences)))
    return [sentences[i] for i in perm[n_valid:]], [sentences[i] for i in perm[:n_valid]]


def perplexity_grid(train, valid, vocab, orders, smoothings):
    """Held-out perplexity of every (order, smoothing); returns ({(k, smoothing): ppl}, {(k, smoothing): model}).

    Every sentence starts with max(orders) `<s>` tokens, so that each order is scored on the same transitions
    (the first word always has a full context); an order-k model sees exactly k of them.
    """
    k_max = max(orders)
    tr, tr_len = text.encode(train, vocab, order=k_max)
    va, va_len = text.encode(valid, vocab, order=k_max)
    ppl, models = {}, {}
    for smoothing in smoothings:
        for k in orders:
            cut = k_max - k
            model = markov.fit(tr[:, cut:], tr_len - cut, len(vocab), order=k, smoothing=smoothing)
            ppl[(k, smoothing)] = float(markov.perplexity(model, va[:, cut:], va_len - cut))
            models[(k, smoothing)] = model
    return ppl, models


def smoothing_label(smoothing) -> str:
    return f"additive α={smoothing}" if not isinstance(smoothing, str) else smoothing


def perplexity_table(ppl, orders, smoothings) -> str:
    """Markdown table: one row per smoothing, one column per order."""
    lines = ["| smoothing | " + " | ".join(f"order {k}" for k in orders) + " |",
             "|---|" + "---:|" * len(orders)]
    for sm in smoothings:
        lines.append(f"| {smoothing_label(sm)} | " + " | ".join(f"{ppl[(k, sm)]:.1f}" for k in orders) + " |")
    return "\n".join(lines)


def _generation_smoothing(smoothings):
    named = [s for s in smoothings if s == "kneser-ney"] or [s for s in smoothings if isinstance(s, str)]
    return named[0] if named else min(smoothings)


def _samples(models, vocab, orders, smoothing, temperatures, n_words, n_samples, key, language):
    samples = {}
    for k in (1, 2, 3):
        if k not in orders:
            continue
        model = models[(k, smoothing)]
        start = jnp.full((k,), vocab.bos_id, jnp.int32)
        # the unknown-word token stands for every rare word (metrics["unknown_share"]): it is not generated
        g = markov.generate(model, start, n_words, greedy=True, stop_state=vocab.eos_id, exclude=[vocab.unk_id])
        samples[f"order={k},greedy"] = [text.decode(g.states[: int(g.length)], vocab, language=language)]
        for t in temperatures:
            out = []
            for _ in range(n_samples):
                key, sub = jax.random.split(key)
                g = markov.generate(model, start, n_words, key=sub, temperature=t, stop_state=vocab.eos_id,
                                    exclude=[vocab.unk_id])
                out.append(text.decode(g.states[: int(g.length)], vocab, language=language))
            samples[f"order={k},temperature={t}"] = out
    return samples


def _french(path, seed, orders, smoothings, temperatures, min_count, valid_fraction, n_words, n_samples):
    if path is None:
        return {"status": "not run: no French text installs offline (see shared/DATASETS.md); pass "
                          "--param french_text=PATH to a UTF-8 text to add one"}
    sentences = text.tokenize(Path(path).read_text(encoding="utf-8"), apostrophe="split")
    train, valid = split_sentences(sentences, seed, valid_fraction)
    vocab = text.build_vocabulary(train, min_count=min_count)
    ppl, models = perplexity_grid(train, valid, vocab, orders, smoothings)
    smoothing = _generation_smoothing(smoothings)
    return {"status": "run", "source": Path(path).name, "n_sentences": len(sentences), "vocabulary": len(vocab),
            "valid_perplexity": {f"order={k},smoothing={a}": v for (k, a), v in ppl.items()},
            "generated": _samples(models, vocab, orders, smoothing, temperatures, n_words, n_samples,
                                  jax.random.key(seed + 1), "fr")}


def run(out_dir, seed, orders, smoothings, temperatures, min_count, valid_fraction, n_words, n_samples,
        top_words, french_text):
    import matplotlib.pyplot as plt

    sentences = text.tokenize(datasets.load_alice())
    train, valid = split_sentences(sentences, seed, valid_fraction)
    vocab = text.build_vocabulary(train, min_count=min_count)
    s = len(vocab)
    metrics = {"language": "en" if french_text is None else "en+fr", "n_sentences": len(sentences),
               "n_train": len(train), "n_valid": len(valid), "vocabulary": s,
               "train_tokens": int(sum(len(t) for t in train)), "x64": bool(jax.config.jax_enable_x64),
               "unknown_share": float(np.mean([vocab.id(t) == vocab.unk_id for sent in valid for t in sent]))}

    ppl, models = perplexity_grid(train, valid, vocab, orders, smoothings)
    metrics["valid_perplexity"] = {f"order={k},smoothing={a}": v for (k, a), v in ppl.items()}
    metrics["perplexity_table"] = perplexity_table(ppl, orders, smoothings)
    (Path(out_dir) / "perplexity_table.md").write_text(metrics["perplexity_table"] + "\n")
    metrics["train_contexts"] = {f"order={k}": models[(k, smoothings[0])].n_contexts for k in orders}
    named = [sm for sm in smoothings if isinstance(sm, str)]
    if named:
        metrics["discounts"] = {sm: np.asarray(models[(max(orders), sm)].discounts).tolist() for sm in named}
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for sm in smoothings:
        style = "s--" if sm == "modified-kneser-ney" else "o-"  # close to Kneser-Ney: dashed to stay visible
        ax.semilogy(orders, [ppl[(k, sm)] for k in orders], style, label=smoothing_label(sm), alpha=0.85)
    ax.set(xlabel="order k", ylabel="held-out perplexity", xticks=orders,
           title=f"Alice: {len(train)} training sentences, V={s}")
    ax.legend(fontsize=8)
    save_figure(fig, out_dir, "perplexity_vs_order")

    gen_smoothing = _generation_smoothing(smoothings)
    metrics["generation_smoothing"] = gen_smoothing
    samples = _samples(models, vocab, orders, gen_smoothing, temperatures, n_words, n_samples,
                       jax.random.key(seed), "en")
    metrics["generated"] = samples
    metrics["french"] = _french(french_text, seed, orders, smoothings, temperatures, min_count, valid_fraction,
                                n_words, n_samples)
    lines = []
    for lang, block in (("en", samples), ("fr", metrics["french"].get("generated", {}))):
        for name, texts in block.items():
            lines += [f"[{lang} {name}]"] + [f"  {t}" for t in texts]
    if "generated" not in metrics["french"]:
        lines.append(f"[fr] {metrics['french']['status']}")
    (Path(out_dir) / "generated.txt").write_text("\n".join(lines) + "\n")

    # heat map of the most frequent words' bigram transition probabilities
    if 1 in orders:
        bigram = models[(1, gen_smoothing)]
        tr, tr_len = text.encode(train, vocab, order=1)
        counts = np.bincount(np.concatenate([r[1:n] for r, n in zip(tr, tr_len, strict=True)]), minlength=s)
        counts[:3] = 0  # reserved tokens
        top = np.argsort(-counts, kind="stable")[:top_words]
        probs = jax.vmap(lambda c: markov.next_state_probs(bigram, c))(jnp.asarray(top[:, None], jnp.int32))
        sub = np.asarray(probs)[:, top]
        fig, ax = plt.subplots(figsize=(7.5, 6.5))
        im = ax.imshow(sub, cmap="magma")
        labels = [vocab.tokens[i] for i in top]
        ax.set_xticks(range(len(top)), labels, rotation=90)
        ax.set_yticks(range(len(top)), labels)
        ax.set(xlabel="next word", ylabel="current word",
               title=f"bigram p(next | current) ({smoothing_label(gen_smoothing)}), most frequent words")
        fig.colorbar(im, ax=ax, shrink=0.8)
        save_figure(fig, out_dir, "bigram_heatmap")
        metrics["top_words"] = labels

        # stationary distribution of the bigram chain against word frequencies
        p_full = markov.transition_matrix(bigram)
        pi = np.asarray(markov.stationary_distribution(p_full))
        freq = np.bincount(np.concatenate([r[1:n] for r, n in zip(tr, tr_len, strict=True)]), minlength=s)
        metrics["stationary_vs_frequency_tv"] = float(0.5 * np.abs(pi - freq / freq.sum()).sum())
        metrics["stationary_residual"] = float(np.abs(pi @ np.asarray(p_full) - pi).max())
    return metrics
