"""A small word tokenizer and vocabulary to feed text to :mod:`jaxprob.markov`.

* :func:`tokenize` lower-cases the text and splits it into sentences of tokens: words (letters and digits,
  with inner apostrophes as in ``don't`` or ``alice's``) and punctuation marks ``. , ; : ! ? ( )`` and
  ``-``/``--`` as tokens of their own. Quotation marks (``"``, backquotes, apostrophes not inside a word) are
  dropped. A sentence ends after ``.``, ``!`` or ``?`` and at every blank line (paragraph, heading).
* :class:`Vocabulary` maps tokens to ids; ids 0, 1, 2 are reserved for :data:`UNK` (unknown word), :data:`BOS`
  (beginning of sentence) and :data:`EOS` (end of sentence).
* :func:`encode` turns sentences into a padded batch ``(B, T)`` with ``order`` :data:`BOS` tokens in front
  and one :data:`EOS` at the end of every sentence, ready for :func:`jaxprob.markov.fit`; :func:`decode` maps
  ids back to text (spaces between words, none before punctuation, reserved tokens removed, sentences
  capitalised).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from jaxprob._validation import check_int

__all__ = ["UNK", "BOS", "EOS", "Vocabulary", "tokenize", "build_vocabulary", "encode", "decode"]

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
_RESERVED = (UNK, BOS, EOS)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|--+|[.,;:!?()\-]")
_SENTENCE_END = {".", "!", "?"}
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")"}


@dataclass(frozen=True)
class Vocabulary:
    """Token <-> id mapping: ``tokens[i]`` is the token of id ``i``.

    Ids 0, 1, 2 are ``<unk>``, ``<s>``, ``</s>``.

    Attributes:
        tokens: tuple of the tokens, reserved ones first.
    """

    tokens: tuple
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if tuple(self.tokens[:3]) != _RESERVED:
            raise ValueError(f"`tokens` must start with the reserved tokens {_RESERVED}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("`tokens` must be unique")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    def id(self, token: str) -> int:
        """Id of ``token`` (the unknown-word id 0 if it is not in the vocabulary)."""
        return self._index.get(token, 0)


def tokenize(text: str) -> list[list[str]]:
    """Split text into sentences of lower-case tokens.

    Args:
        text: any string.

    Returns:
        A list of sentences, each a non-empty list of tokens.

    Examples:
        >>> from jaxprob import text
        >>> text.tokenize("`Oh dear!' said the Rabbit. I shan't be late,\\n\\nCHAPTER I")
        [['oh', 'dear', '!'], ['said', 'the', 'rabbit', '.'], ['i', "shan't", 'be', 'late', ','],
         ['chapter', 'i']]
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str, got {type(text).__name__}")
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text.replace("\r\n", "\n").lower()):
        current = []
        for tok in _TOKEN.findall(paragraph):
            current.append(tok)
            if tok in _SENTENCE_END:
                sentences.append(current)
                current = []
        if current:
            sentences.append(current)
    return sentences


def build_vocabulary(sentences, *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
    """Vocabulary of the tokens occurring at least ``min_count`` times, most frequent first.

    Args:
        sentences: list of token lists (from :func:`tokenize`).
        min_count: rarer tokens map to the unknown-word id.
        max_size: optional cap on the vocabulary size, reserved tokens included (ties by first occurrence).

    Returns:
        A :class:`Vocabulary`.

    Examples:
        >>> from jaxprob import text
        >>> text.build_vocabulary([["a", "b", "a"], ["c", "a", "b"]], min_count=2).tokens
        ('<unk>', '<s>', '</s>', 'a', 'b')
    """
    min_count = check_int(min_count, "min_count", minimum=1)
    if max_size is not None:
        max_size = check_int(max_size, "max_size", minimum=len(_RESERVED))
    counts = Counter(tok for sent in sentences for tok in sent if tok not in _RESERVED)
    words = [w for w, c in counts.most_common() if c >= min_count]
    if max_size is not None:
        words = words[: max_size - len(_RESERVED)]
    return Vocabulary(_RESERVED + tuple(words))


def encode(sentences, vocab: Vocabulary, *, order: int = 1):
    """Encode sentences as a padded batch with ``order`` ``<s>`` tokens before and one ``</s>`` after each.

    Args:
        sentences: list of token lists.
        vocab: a :class:`Vocabulary` (unknown tokens get id 0).
        order: number of ``<s>`` tokens in front (the Markov order: the first word gets a full context).

    Returns:
        ``(batch, lengths)``: ``(B, T)`` int32 ids (padded with ``</s>``) and ``(B,)`` int32 lengths.

    Examples:
        >>> from jaxprob import text
        >>> v = text.build_vocabulary([["hello", "world", "."]])
        >>> batch, lengths = text.encode([["hello", "there", "."]], v, order=2)
        >>> batch.tolist(), lengths.tolist()
        ([[1, 1, 3, 0, 5, 2]], [6])
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"`vocab` must be a Vocabulary, got {type(vocab).__name__}")
    order = check_int(order, "order", minimum=0)
    if len(sentences) == 0:
        raise ValueError("`sentences` must hold at least one sentence")
    rows = [[vocab.bos_id] * order + [vocab.id(t) for t in sent] + [vocab.eos_id] for sent in sentences]
    lengths = np.array([len(r) for r in rows], np.int32)
    batch = np.full((len(rows), int(lengths.max())), vocab.eos_id, np.int32)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    return batch, lengths


def decode(ids, vocab: Vocabulary) -> str:
    """Map ids back to text: reserved tokens dropped (``</s>`` ends a sentence), sentences capitalised.

    Args:
        ids: 1-D sequence of token ids.
        vocab: a :class:`Vocabulary`.

    Returns:
        The detokenised string.

    Examples:
        >>> from jaxprob import text
        >>> v = text.build_vocabulary([["the", "cat", "sat", ".", "(", "yes", ")"]])
        >>> text.decode([1, 3, 4, 5, 6, 2, 1, 7, 8, 9, 2], v)
        'The cat sat. (Yes)'
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"`vocab` must be a Vocabulary, got {type(vocab).__name__}")
    arr = np.asarray(ids)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError("`ids` must be a 1-D sequence of integers")
    if np.any((arr < 0) | (arr >= len(vocab))):
        raise ValueError(f"`ids` must lie in [0, {len(vocab)})")
    out: list[str] = []
    capitalise = True
    after_open = False
    for i in arr.tolist():
        tok = vocab.tokens[i]
        if tok in (BOS, EOS):
            capitalise = capitalise or tok == EOS
            continue
        if capitalise and tok[0].isalpha():
            tok = tok[0].upper() + tok[1:]
            capitalise = False
        if tok == "i":
            tok = "I"
        if out and tok not in _NO_SPACE_BEFORE and not after_open:
            out.append(" ")
        out.append(tok)
        after_open = tok == "("
        if tok in _SENTENCE_END:
            capitalise = True
    return "".join(out)
