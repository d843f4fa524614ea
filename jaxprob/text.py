"""A Unicode word tokenizer and a vocabulary to feed text to [jaxprob.markov][jaxprob.markov].

**Tokenization rules** ([tokenize][jaxprob.text.tokenize]). The text is first put in Unicode normal form NFC,
so that a letter written as a base letter plus a combining accent ("e" + U+0301) and its precomposed form ("é")
give the same token.

* A *word* is a run of letters, combining marks and digits of any script (Unicode categories `L*`, `M*`,
  `N*`): "élève", "naïve", "Straße", "Москва", "ελληνικά", "हिन्दी", "2024". Scripts written without spaces
  (Chinese, Japanese, Thai) are not segmented: a run of their letters is one token.
* An *apostrophe* (`'`, `’` or `ʼ`, all written `'` in the tokens) between two word characters either joins
  the two parts into one token (`apostrophe="join"`, the default: "don't", "l'élève", "aujourd'hui") or ends
  the word after the apostrophe (`apostrophe="split"`: "l'" and "élève", as French and Italian elisions are
  usually split; English "don't" then gives "don'" and "t"). An apostrophe elsewhere is a quotation mark.
* A *hyphen* (`-`, `‐` or `‑`, all written `-`) between two word characters joins them (`hyphen="join"`, the
  default: "peut-être", "well-known") or becomes the token `@-@` (`hyphen="split"`: "peut", "@-@", "être"),
  which [decode][jaxprob.text.decode] writes back as a hyphen without spaces; a hyphen elsewhere is a dash
  token `-`, written with spaces. A soft hyphen (U+00AD) is removed.
* A `.` or `,` between two digits stays inside the number ("3.14", "1,000").
* *Quotation marks* are dropped: `"`, the backquote, `«` `»` `“` `”` `„` `‘` `‹` `›` `「` `」` and every other
  Unicode opening or closing quote, and apostrophes that are not inside a word. So are `_` and `*`, used for
  emphasis and ornaments in plain-text e-books.
* Every other punctuation mark or symbol is a token of its own (`,` `;` `:` `(` `)` `¿` `¡` `—` `%` `€` ...),
  except runs: two or more `-` form one dash token (`--`), and a run of sentence-final marks (`.` `!` `?`
  `…` and `。` `！` `？` `؟` `।` `॥` `።` ...) forms one token (`?!`, `...`).
* A *sentence* ends after a token of sentence-final marks, except an ellipsis (`...` or `…`, which often
  continues the sentence), and at every blank line (paragraph, heading).
* `lower=True` (default) lower-cases the tokens with `str.lower` (not `casefold`: "ß" stays "ß").

**Vocabulary.** [Vocabulary][jaxprob.text.Vocabulary] maps tokens to ids; ids 0, 1, 2 are reserved for
`UNK` (unknown word), `BOS` (beginning of sentence) and
`EOS` (end of sentence). [encode][jaxprob.text.encode] turns sentences into a padded batch
`(B, T)` with `order` `<s>` tokens in front and one `</s>` at the end of every sentence, ready for
[jaxprob.markov.fit][jaxprob.markov.fit]; [decode][jaxprob.text.decode] maps ids back to text.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from jax.typing import ArrayLike

from jaxprob._validation import check_choice, check_int

__all__ = ["UNK", "BOS", "EOS", "Vocabulary", "tokenize", "build_vocabulary", "encode", "decode"]

UNK = "<unk>"
"""The token of words outside the vocabulary."""
BOS = "<s>"
"""The token that starts a sentence."""
EOS = "</s>"
"""The token that ends a sentence."""
_RESERVED = (UNK, BOS, EOS)

_APOSTROPHES = frozenset("'\u2019\u02bc")
_HYPHENS = frozenset("-\u2010\u2011")
_SOFT_HYPHEN = "\u00ad"
_SPLIT_HYPHEN = "@-@"
# quotation marks that are not of Unicode category Pi/Pf (initial/final quote)
_QUOTES = frozenset('"`\u00b4\u201e\u201a\u300c\u300d\u300e\u300f\u301d\u301e\u301f\uff02')
_DROPPED = frozenset("_*")
_TERMINALS = frozenset(".!?\u2026\u3002\uff01\uff1f\uff61\u061f\u0964\u0965\u1362\u0589\u203c\u2047\u2048\u2049")
_ELLIPSIS = frozenset(".\u2026")
_NO_SPACE_AFTER = frozenset({"(", "[", "{", "\u00bf", "\u00a1", _SPLIT_HYPHEN})
_NO_SPACE_BEFORE = frozenset({",", ";", ":", ")", "]", "}", "%", _SPLIT_HYPHEN, "\u3001", "\uff0c", "\uff1b", "\uff1a",
                              "\u060c", "\u061b"})
_FRENCH_SPACE_BEFORE = frozenset({";", ":", "!", "?", "%"})


def _is_word_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LMN"


def _ends_sentence(tok: str) -> bool:
    if not all(ch in _TERMINALS for ch in tok):
        return False
    is_ellipsis = all(ch in _ELLIPSIS for ch in tok) and (len(tok) > 1 or tok == "\u2026")
    return not is_ellipsis


def _tokens_of_paragraph(par: str, apostrophe: str, hyphen: str) -> list[str]:
    tokens: list[str] = []
    n = len(par)
    i = 0
    while i < n:
        ch = par[i]
        if _is_word_char(ch):
            j = i
            word: list[str] = []
            while j < n:
                c = par[j]
                if _is_word_char(c):
                    word.append(c)
                    j += 1
                    continue
                nxt_is_word = j + 1 < n and _is_word_char(par[j + 1])
                if c in _APOSTROPHES and nxt_is_word:
                    word.append("'")
                    j += 1
                    if apostrophe == "split":
                        break
                    continue
                if c in _HYPHENS and nxt_is_word:
                    if hyphen == "split":
                        tokens.append("".join(word))
                        tokens.append(_SPLIT_HYPHEN)
                        word = []
                        j += 1
                        continue
                    word.append("-")
                    j += 1
                    continue
                if c in ".," and nxt_is_word and word[-1].isdigit() and par[j + 1].isdigit():
                    word.append(c)
                    j += 1
                    continue
                break
            tokens.append("".join(word))
            i = j
        elif ch.isspace() or ch in _DROPPED or ch in _QUOTES or ch in _APOSTROPHES:
            i += 1
        elif ch in _TERMINALS:
            j = i
            while j < n and par[j] in _TERMINALS:
                j += 1
            tokens.append(par[i:j])
            i = j
        elif ch in _HYPHENS:
            j = i
            while j < n and par[j] in _HYPHENS:
                j += 1
            tokens.append("-" if j - i == 1 else par[i:j].replace("\u2010", "-").replace("\u2011", "-"))
            i = j
        else:
            cat = unicodedata.category(ch)
            if cat[0] in "PS" and cat not in ("Pi", "Pf"):
                tokens.append(ch)
            i += 1  # Pi/Pf quotes, control and format characters are dropped
    return tokens


def tokenize(text: str, *, lower: bool = True, apostrophe: str = "join", hyphen: str = "join") -> list[list[str]]:
    r"""Split text into sentences of word and punctuation tokens (rules in the module docstring).

    Args:
        text: any string, in any script.
        lower: lower-case the tokens.
        apostrophe: `"join"` keeps an apostrophe between two word characters inside one token ("l'élève",
            "don't"); `"split"` ends the word after it ("l'", "élève").
        hyphen: `"join"` keeps a hyphen between two word characters inside one token ("peut-être");
            `"split"` makes it the token `@-@` ("peut", "@-@", "être").

    Returns:
        A list of sentences, each a non-empty list of tokens.

    Examples:
        >>> from jaxprob import text
        >>> text.tokenize("`Oh dear!' said the Rabbit. I shan't be late,\n\nCHAPTER I")
        [['oh', 'dear', '!'], ['said', 'the', 'rabbit', '.'], ['i', "shan't", 'be', 'late', ','],
         ['chapter', 'i']]
        >>> text.tokenize("« L’élève a-t-il un vélo ? » Peut-être…")
        [["l'élève", 'a-t-il', 'un', 'vélo', '?'], ['peut-être', '…']]
        >>> text.tokenize("L'élève", apostrophe="split", lower=False)
        [["L'", 'élève']]
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str, got {type(text).__name__}")
    if not isinstance(lower, bool):
        raise TypeError(f"`lower` must be a bool, got {type(lower).__name__}")
    check_choice(apostrophe, "apostrophe", ("join", "split"))
    check_choice(hyphen, "hyphen", ("join", "split"))
    text = unicodedata.normalize("NFC", text).replace(_SOFT_HYPHEN, "")
    if lower:
        text = text.lower()
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    paragraphs, current_lines = [], []
    for line in lines:
        if line.strip():
            current_lines.append(line)
        elif current_lines:
            paragraphs.append("\n".join(current_lines))
            current_lines = []
    if current_lines:
        paragraphs.append("\n".join(current_lines))
    sentences = []
    for paragraph in paragraphs:
        current: list[str] = []
        for tok in _tokens_of_paragraph(paragraph, apostrophe, hyphen):
            current.append(tok)
            if _ends_sentence(tok):
                sentences.append(current)
                current = []
        if current:
            sentences.append(current)
    return sentences


@dataclass(frozen=True)
class Vocabulary:
    """Token <-> id mapping: `tokens[i]` is the token of id `i`.

    Ids 0, 1, 2 are `<unk>`, `<s>`, `</s>`.

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
        """Id of `<unk>` (0)."""
        return 0

    @property
    def bos_id(self) -> int:
        """Id of `<s>` (1)."""
        return 1

    @property
    def eos_id(self) -> int:
        """Id of `</s>` (2)."""
        return 2

    def id(self, token: str) -> int:
        """Id of `token` (the unknown-word id 0 if it is not in the vocabulary)."""
        return self._index.get(token, 0)


def _check_sentences(sentences, name: str = "sentences") -> None:
    """Refuse a bare string or a flat list of strings, which would be read as sentences of characters."""
    if isinstance(sentences, str):
        raise TypeError(f"`{name}` must be a list of token lists (as text.tokenize returns), got a str; "
                        f"tokenize it first: text.tokenize(...)")
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of token lists, got {type(sentences).__name__}")
    for i, sent in enumerate(sentences):
        if isinstance(sent, str) or not isinstance(sent, (list, tuple)):
            got = "a str" if isinstance(sent, str) else type(sent).__name__
            raise TypeError(f"`{name}[{i}]` must be a list of str tokens, got {got}; pass a list of sentences, "
                            f"e.g. [tokens] for a single sentence")
        for tok in sent:
            if not isinstance(tok, str):
                raise TypeError(f"`{name}[{i}]` must hold str tokens, got {type(tok).__name__}")


def build_vocabulary(sentences: Sequence[Sequence[str]], *, min_count: int = 1,
                     max_size: int | None = None) -> Vocabulary:
    """Vocabulary of the tokens occurring at least `min_count` times, most frequent first.

    Args:
        sentences: list of token lists (from [tokenize][jaxprob.text.tokenize]).
        min_count: rarer tokens map to the unknown-word id.
        max_size: optional cap on the vocabulary size, reserved tokens included (ties by first occurrence).

    Returns:
        A [Vocabulary][jaxprob.text.Vocabulary].

    Examples:
        >>> from jaxprob import text
        >>> text.build_vocabulary([["a", "b", "a"], ["c", "a", "b"]], min_count=2).tokens
        ('<unk>', '<s>', '</s>', 'a', 'b')
    """
    _check_sentences(sentences)
    min_count = check_int(min_count, "min_count", minimum=1)
    if max_size is not None:
        max_size = check_int(max_size, "max_size", minimum=len(_RESERVED))
    counts = Counter(tok for sent in sentences for tok in sent if tok not in _RESERVED)
    words = [w for w, c in counts.most_common() if c >= min_count]
    if max_size is not None:
        words = words[: max_size - len(_RESERVED)]
    return Vocabulary(_RESERVED + tuple(words))


def encode(sentences: Sequence[Sequence[str]], vocab: Vocabulary, *, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Encode sentences as a padded batch with `order` `<s>` tokens before and one `</s>` after each.

    Args:
        sentences: list of token lists (a bare string is refused: tokenize it first).
        vocab: a [Vocabulary][jaxprob.text.Vocabulary] (unknown tokens get id 0).
        order: number of `<s>` tokens in front (the Markov order: the first word gets a full context).

    Returns:
        `(batch, lengths)`: `(B, T)` int32 ids (padded with `</s>`) and `(B,)` int32 lengths.

    Examples:
        >>> from jaxprob import text
        >>> v = text.build_vocabulary([["hello", "world", "."]])
        >>> batch, lengths = text.encode([["hello", "there", "."]], v, order=2)
        >>> batch.tolist(), lengths.tolist()
        ([[1, 1, 3, 0, 5, 2]], [6])
    """
    _check_sentences(sentences)
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


def _is_terminal_run(tok: str) -> bool:
    return all(ch in _TERMINALS for ch in tok)


def _no_space_before(tok: str, prev: str, language: str | None) -> bool:
    if language == "fr" and tok in _FRENCH_SPACE_BEFORE:
        return False
    if _is_terminal_run(tok):
        return not _is_terminal_run(prev)  # "… …" stays two tokens
    return tok in _NO_SPACE_BEFORE


def decode(ids: Sequence[int] | ArrayLike, vocab: Vocabulary, *, capitalize: bool = True,
           language: str | None = "en") -> str:
    """Map ids back to text: reserved tokens dropped (`</s>` ends a sentence), tokens joined by spaces.

    No space is written before closing punctuation (`, ; : . ! ? ) ]`) nor after an opening one
    (`( [ ¿ ¡`), around a split hyphen `@-@` (written `-`), or after a split elision ("l'" "élève" gives
    "l'élève"). Decoding the tokens of one sentence of [tokenize][jaxprob.text.tokenize] and tokenizing the
    result gives the same tokens.

    Args:
        ids: 1-D sequence of token ids.
        vocab: a [Vocabulary][jaxprob.text.Vocabulary].
        capitalize: upper-case the first letter of every sentence.
        language: `"en"` also writes the pronoun "i" as "I"; `"fr"` puts a space before `; : ! ? %` as
            French typography does; `None` applies neither rule.

    Returns:
        The detokenised string.

    Examples:
        >>> from jaxprob import text
        >>> v = text.build_vocabulary([["the", "cat", "sat", ".", "(", "yes", ")"]])
        >>> text.decode([1, 3, 4, 5, 6, 2, 1, 7, 8, 9, 2], v)
        'The cat sat. (Yes)'
        >>> v = text.build_vocabulary(text.tokenize("l'élève a un vélo ?", apostrophe="split"))
        >>> text.decode([v.id(t) for t in ("l'", "élève", "a", "un", "vélo", "?")], v, language="fr")
        "L'élève a un vélo ?"
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"`vocab` must be a Vocabulary, got {type(vocab).__name__}")
    if not isinstance(capitalize, bool):
        raise TypeError(f"`capitalize` must be a bool, got {type(capitalize).__name__}")
    if language is not None:
        check_choice(language, "language", ("en", "fr"))
    arr = np.asarray(ids)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError("`ids` must be a 1-D sequence of integers")
    if np.any((arr < 0) | (arr >= len(vocab))):
        raise ValueError(f"`ids` must lie in [0, {len(vocab)})")
    out: list[str] = []
    start = True
    glue_next = False
    for i in arr.tolist():
        tok = vocab.tokens[i]
        if tok in (BOS, EOS):
            start = start or tok == EOS
            continue
        if capitalize and start and tok[:1].isalpha():
            upper = tok[0].upper()
            if len(upper) == 1:  # "ß" would become "SS": left as it is
                tok = upper + tok[1:]
            start = False
        if language == "en" and tok == "i":
            tok = "I"
        if out and not glue_next and not _no_space_before(tok, out[-1], language):
            out.append(" ")
        out.append("-" if tok == _SPLIT_HYPHEN else tok)
        glue_next = tok in _NO_SPACE_AFTER or (len(tok) > 1 and tok.endswith("'"))
        if _ends_sentence(tok):
            start = True
    return "".join(out)
