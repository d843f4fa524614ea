"""Tokenizer, vocabulary and codec: French and other scripts, apostrophe and hyphen rules, bad input, round trips.

The French sentences below were written for these tests.
"""

import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxprob import text


def test_french_accents_keep_their_letters():
    assert text.tokenize("vélo") == [["vélo"]]
    assert text.tokenize("L'élève prend son vélo.") == [["l'élève", "prend", "son", "vélo", "."]]
    toks = text.tokenize("Où est la forêt ? Ça coûte cher, même à Noël ; c'est naïf… Garçon !")
    assert toks == [["où", "est", "la", "forêt", "?"],
                    ["ça", "coûte", "cher", ",", "même", "à", "noël", ";", "c'est", "naïf", "…", "garçon", "!"]]
    # every letter of the input survives: the letters of the tokens are those of the text
    src = "Dès l'aube, à l'heure où blanchit la campagne, un élève naïf et ambiguë s'écrie : « Où ? »"
    letters = [c for c in src.lower() if c.isalpha()]
    assert [c for s in text.tokenize(src) for t in s for c in t if c.isalpha()] == letters


def test_decomposed_accents_equal_precomposed():
    nfd = unicodedata.normalize("NFD", "élève à Noël")
    assert nfd != "élève à Noël" and len(nfd) > len("élève à Noël")
    assert text.tokenize(nfd) == text.tokenize("élève à Noël") == [["élève", "à", "noël"]]


def test_apostrophe_rule():
    # typographic and ASCII apostrophes give the same token
    assert text.tokenize("l’élève") == text.tokenize("l'élève") == [["l'élève"]]
    assert text.tokenize("Aujourd'hui, qu'il vienne.", apostrophe="split") == [
        ["aujourd'", "hui", ",", "qu'", "il", "vienne", "."]]
    assert text.tokenize("I don't know Alice's cat.") == [["i", "don't", "know", "alice's", "cat", "."]]
    # an apostrophe that is not between two word characters is a quotation mark: dropped
    assert text.tokenize("'Tis the kings' 'hello'") == [["tis", "the", "kings", "hello"]]


def test_hyphen_rule():
    assert text.tokenize("Peut-être viendra-t-il ?") == [["peut-être", "viendra-t-il", "?"]]
    assert text.tokenize("Peut-être viendra-t-il ?", hyphen="split") == [
        ["peut", "@-@", "être", "viendra", "@-@", "t", "@-@", "il", "?"]]
    # a hyphen that is not inside a word is a dash; two or more make one dash token
    assert text.tokenize("oui - non -- peut-être") == [["oui", "-", "non", "--", "peut-être"]]
    # Unicode hyphens are written '-', a soft hyphen disappears
    assert text.tokenize("arc\u2010en\u2011ciel bien\u00advenue") == [["arc-en-ciel", "bienvenue"]]


def test_lower_is_an_option():
    assert text.tokenize("Élodie ÉCRIT à Paris.", lower=False) == [["Élodie", "ÉCRIT", "à", "Paris", "."]]
    assert text.tokenize("Élodie ÉCRIT à Paris.") == [["élodie", "écrit", "à", "paris", "."]]
    assert text.tokenize("Straße") == [["straße"]]  # str.lower, not casefold


def test_other_scripts():
    assert text.tokenize("Москва — столица России.") == [["москва", "—", "столица", "россии", "."]]
    assert text.tokenize("Καλημέρα, κόσμε!") == [["καλημέρα", ",", "κόσμε", "!"]]
    assert text.tokenize("हिन्दी भाषा है। दूसरा वाक्य") == [["हिन्दी", "भाषा", "है", "।"], ["दूसरा", "वाक्य"]]
    assert text.tokenize("مرحبا بالعالم؟ نعم") == [["مرحبا", "بالعالم", "؟"], ["نعم"]]
    # scripts without spaces are not segmented: one token per run of letters
    assert text.tokenize("北京是首都。東京も！") == [["北京是首都", "。"], ["東京も", "！"]]
    assert text.tokenize("¿Qué tal? ¡Muy bien!") == [["¿", "qué", "tal", "?"], ["¡", "muy", "bien", "!"]]


def test_numbers_quotes_and_sentences():
    assert text.tokenize("Pi vaut 3.14 et 1,000 euros.") == [["pi", "vaut", "3.14", "et", "1,000", "euros", "."]]
    assert text.tokenize('He said "no" `twice\' and left.') == [["he", "said", "no", "twice", "and", "left", "."]]
    # a run of final marks is one token; an ellipsis continues the sentence; a blank line ends one
    assert text.tokenize("Quoi?! Bon... alors.\n\nTitre\nsuite") == [
        ["quoi", "?!"], ["bon", "...", "alors", "."], ["titre", "suite"]]
    assert text.tokenize("_very_ *  *  *") == [["very"]]
    assert text.tokenize("") == []


def test_encode_refuses_a_bare_string():
    vocab = text.build_vocabulary([["bonjour", "le", "monde"]])
    with pytest.raises(TypeError, match="tokenize"):
        text.encode("bonjour le monde", vocab)
    with pytest.raises(TypeError, match=r"sentences\[0\]"):
        text.encode(["bonjour", "le", "monde"], vocab)  # one sentence not wrapped in a list
    with pytest.raises(TypeError, match="tokenize"):
        text.build_vocabulary("bonjour le monde")
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        text.build_vocabulary([["a"], "b"])
    with pytest.raises(TypeError, match="str tokens"):
        text.encode([["a", 3]], vocab)
    with pytest.raises(TypeError, match="vocab"):
        text.encode([["a"]], ["a"])
    with pytest.raises(ValueError, match="apostrophe"):
        text.tokenize("a", apostrophe="keep")
    with pytest.raises(ValueError, match="hyphen"):
        text.tokenize("a", hyphen="none")
    with pytest.raises(TypeError, match="lower"):
        text.tokenize("a", lower="yes")
    with pytest.raises(ValueError, match="language"):
        text.decode([3], vocab, language="de")


def test_french_encode_decode():
    sents = text.tokenize("L'élève a-t-il un vélo ? Oui : il roule (vite) !", apostrophe="split")
    vocab = text.build_vocabulary(sents)
    batch, lengths = text.encode(sents, vocab, order=2)
    assert batch[0, :2].tolist() == [vocab.bos_id, vocab.bos_id]
    assert batch[0, 2] == vocab.id("l'") and vocab.id("élève") > 2
    first = text.decode(batch[0, : lengths[0]], vocab, language="fr")
    second = text.decode(batch[1, : lengths[1]], vocab, language="fr")
    assert (first, second) == ("L'élève a-t-il un vélo ?", "Oui : il roule (vite) !")
    assert text.decode(batch[1, : lengths[1]], vocab, language=None) == "Oui: il roule (vite)!"
    assert text.decode(batch[1, : lengths[1]], vocab, capitalize=False, language=None) == "oui: il roule (vite)!"
    split = text.tokenize("Peut-être.", hyphen="split")
    v2 = text.build_vocabulary(split)
    assert text.decode(text.encode(split, v2)[0][0], v2) == "Peut-être."


# letters whose upper- then lower-case is themselves, so that decode's capitals come back under tokenize
_ALPHABET = list("abcdefghijklmnopqrstuvwxyzéèêëàâîïôöùûüçœæ") + list("абвгдежзийклмнопрстуфхцчшщыьэюя") \
    + list("αβγδεζηθικλμνξοπρστυφχψω") + list("中文字東京") + list("0123456789")
_PIECES = [" ", " ", "  ", "\n", ", ", ". ", "! ", "? ", "; ", ": ", " (", ") ", "'", "’", "-", " - ", " -- ",
           " … ", "...", "«", "»", '"', "%", "¿", "¡", "\n\n"]


@st.composite
def _texts(draw):
    parts = draw(st.lists(st.one_of(st.text(alphabet=_ALPHABET, min_size=1, max_size=6), st.sampled_from(_PIECES)),
                          max_size=30))
    return "".join(parts)


@settings(max_examples=150, deadline=None)
@given(_texts(), st.sampled_from(["join", "split"]), st.sampled_from(["join", "split"]),
       st.sampled_from(["en", "fr", None]))
def test_decode_then_tokenize_gives_the_same_tokens(src, apostrophe, hyphen, language):
    sents = text.tokenize(src, apostrophe=apostrophe, hyphen=hyphen)
    assert all(len(s) > 0 for s in sents)
    vocab = text.build_vocabulary(sents) if sents else text.build_vocabulary([])
    for sent in sents:
        batch, lengths = text.encode([sent], vocab, order=1)
        out = text.decode(batch[0, : lengths[0]], vocab, language=language)
        assert text.tokenize(out, apostrophe=apostrophe, hyphen=hyphen) == [sent], (src, out)


def test_vocabulary_and_ids():
    vocab = text.build_vocabulary([["le", "chat", "le"], ["chat", "le", "été"]], max_size=5)
    assert vocab.tokens == ("<unk>", "<s>", "</s>", "le", "chat")
    assert vocab.id("été") == vocab.unk_id == 0
    batch, lengths = text.encode([["le", "été"]], vocab, order=0)
    np.testing.assert_array_equal(batch, [[3, 0, 2]])
    assert lengths.tolist() == [3]
