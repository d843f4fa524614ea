"""Letters of Alice in Wonderland: a 2-state categorical HMM separates vowels from consonants without being told.

The classic experiment (Cave and Neuwirth, 1980; M. Stamp's "A revealing introduction to hidden Markov models"
runs it on English text): the text is reduced to 27 symbols (the letters and the space) and a hidden Markov model
with two states is fitted by Baum–Welch. Nothing says what a vowel is, yet one state ends up emitting the vowels
and the other the consonants, because vowels and consonants tend to alternate.
"""

from __future__ import annotations

import string

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, families, hmm
from jaxprob.families.categorical import CategoricalParams

DESCRIPTION = "Letters of Alice in Wonderland: a 2-state categorical HMM splits vowels from consonants"
# tol 0: a fixed number of iterations, since the first ones leave the near-symmetric start with tiny changes of the
# likelihood that a tolerance would take for convergence
DEFAULTS = {"n_states": 2, "n_init": 4, "max_iter": 150, "tol": 0.0, "segment": 2000, "max_letters": None}

SYMBOLS = string.ascii_lowercase + " "
VOWELS = set("aeiou")


def letters(text: str) -> np.ndarray:
    """The text as symbol codes 0..26: lower-cased letters, every run of other characters one space."""
    codes = np.frombuffer(text.lower().encode("ascii", "replace"), np.uint8).astype(np.int64) - ord("a")
    is_letter = (codes >= 0) & (codes < 26)
    codes = np.where(is_letter, codes, 26)
    keep = is_letter | np.concatenate([[True], is_letter[:-1]])  # first symbol of each non-letter run
    codes = codes[keep]
    return codes[1:] if codes[0] == 26 else codes


def _start(key, n_states, family):
    """A near-uniform random start (as in Stamp's tutorial): emissions 1/27 and transitions 1/K, each perturbed by
    a few percent. Data-driven starts (k-means++ on one-hot rows) would put whole letters in one state."""
    k_b, k_a = jax.random.split(key)
    b = 1.0 + 0.05 * jax.random.uniform(k_b, (n_states, len(SYMBOLS)), minval=-1, maxval=1)
    a = 1.0 + 0.1 * jax.random.uniform(k_a, (n_states, n_states), minval=-1, maxval=1)
    return hmm.HMM(jnp.full((n_states,), 1.0 / n_states), a / a.sum(1, keepdims=True),
                   CategoricalParams(b / b.sum(1, keepdims=True)), family)


def _fit(x, lengths, family, key, n_states, n_init, max_iter, tol):
    """Baum–Welch from `n_init` random starts, vmapped in one program (the public traceable `hmm.fit_from`)."""

    @jax.jit
    def program(x, lengths, key):
        starts = jax.vmap(lambda k: _start(k, n_states, family))(jax.random.split(key, n_init))
        return hmm.fit_from(hmm.prepare(x, family, lengths), starts, max_iter=max_iter, tol=tol)

    return program(jnp.asarray(x), jnp.asarray(lengths), key)


def run(out_dir, seed, n_states, n_init, max_iter, tol, segment, max_letters):
    codes = letters(datasets.load_alice())
    if max_letters is not None:
        codes = codes[:max_letters]
    # the text as a padded batch of segments (one vmapped forward-backward per iteration)
    pieces = [codes[i : i + segment] for i in range(0, len(codes), segment)]
    onehot = [np.eye(len(SYMBOLS), dtype=np.float32)[p] for p in pieces]
    x, lengths = hmm.pad_sequences(onehot)
    family = families.categorical(alpha=1.0)
    model, info = _fit(x, lengths, family, jax.random.key(seed), n_states, n_init, max_iter, tol)
    probs = np.asarray(model.probs)  # (K, 27)
    vowel_cols = [SYMBOLS.index(v) for v in sorted(VOWELS)]
    vowel_state = int(np.argmax(probs[:, vowel_cols].sum(1)))
    other = 1 - vowel_state if n_states == 2 else None
    trace = np.asarray(info.trace)[: int(info.n_iter)]

    # letter level: the state that emits each letter with the larger probability
    home = np.argmax(probs, axis=0)
    letters_only = [c for c in SYMBOLS if c != " "]
    vowels_home = [home[SYMBOLS.index(v)] == vowel_state for v in sorted(VOWELS)]
    consonants_home = [home[SYMBOLS.index(c)] != vowel_state for c in letters_only if c not in VOWELS]
    # token level: the Viterbi state of every letter of the text
    path = np.asarray(hmm.predict(x, model, lengths))
    flat_path = np.concatenate([p[:n] for p, n in zip(path, lengths, strict=True)])
    is_vowel = np.isin(codes, vowel_cols)
    is_consonant = (codes < 26) & ~is_vowel

    fig, ax = plt.subplots(figsize=(12, 4.2), constrained_layout=True)
    pos = np.arange(len(SYMBOLS))
    labels = list(SYMBOLS[:-1]) + ["space"]
    order = [vowel_state] + [k for k in range(n_states) if k != vowel_state]
    width = 0.8 / n_states
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
    for rank, k in enumerate(order):
        name = "vowel state" if k == vowel_state else f"state {k}" if n_states > 2 else "consonant state"
        ax.bar(pos + (rank - (n_states - 1) / 2) * width, probs[k], width, color=colors[rank % 4], label=name)
    ax.set_xticks(pos, labels)
    for tick, sym in zip(ax.get_xticklabels(), SYMBOLS, strict=True):
        if sym in VOWELS:
            tick.set_fontweight("bold")
            tick.set_color("tab:red")
    ax.set(ylabel="emission probability", title=f"Alice in Wonderland, {len(codes):,} symbols: emission "
           f"probabilities of a {n_states}-state HMM (vowels in bold)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, out_dir, "hmm_alice_emissions")

    return {
        "n_symbols": len(codes),
        "n_sequences": len(pieces),
        "n_iter": int(info.n_iter),
        "converged": bool(info.converged),
        "ll_monotone": bool(np.all(np.diff(trace) >= -1e-5 * np.abs(trace[:-1]))),
        "log_likelihood_per_symbol": float(info.log_likelihood),
        "last_change_per_symbol": float(abs(trace[-1] - trace[-2])) if trace.size > 1 else None,
        "vowel_state": vowel_state,
        "share_of_vowels_in_vowel_state": float(np.mean(vowels_home)),
        "share_of_consonants_in_consonant_state": float(np.mean(consonants_home)) if other is not None else None,
        "letters_in_vowel_state": [c for c in letters_only if home[SYMBOLS.index(c)] == vowel_state],
        "space_in_vowel_state": bool(home[26] == vowel_state),
        "vowel_tokens_decoded_in_vowel_state": float(np.mean(flat_path[is_vowel] == vowel_state)),
        "consonant_tokens_decoded_elsewhere": float(np.mean(flat_path[is_consonant] != vowel_state)),
        "transition": np.asarray(model.transition),
        "emission_probs": {name: probs[k] for name, k in (("vowel_state", vowel_state), ("other", other))
                           if k is not None},
    }
