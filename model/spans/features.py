"""CRF features of a token sequence: what each token looks like, and what surrounds it.

Classic feature-rich CRF features (Lafferty et al. 2001; the CoNLL-2003 CRF baselines), chosen for
learning entity spans from tens of documents:

* the token itself: lowercased word, its shape (``Xxxxx`` -> ``Xx``, ``dddd`` -> ``d``: capitalised
  words and numbers generalise to unseen ones), prefixes and suffixes of 1-3 characters (morphology:
  ``-ville``, ``-son``, ``Mc-``), whether it is all digits, upper case, title case, and its script
  (:func:`model.spans.tokens.tokenize` names it: a katakana run in Japanese is often a name);
* a window of two tokens either side: their lowercased words and the neighbours' shapes and scripts,
  plus the word bigrams with each neighbour -- "Mr." before and "said" after a title-cased word say
  "person", whatever the word; for per-character Chinese tokens the window is what makes the
  character n-grams of a word;
* sentence edges (``BOS`` / ``EOS``) so the first and last tokens are told apart.

Features are plain strings (CRFsuite treats each as a binary attribute). A token's own features are
cached by its text and script, since words repeat; only the window is assembled per position. The
caches are bounded (:data:`CACHE_SIZE` words, ~1 kB each at most) so a serving worker stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from model.spans.tokens import Token

#: Entries of each per-word cache: a project's frequent vocabulary, at most ~20 MB.
CACHE_SIZE = 20_000


def sequence_features(tokens: Sequence[Token]) -> list[list[str]]:
    """One list of feature strings per token (see the module docstring)."""
    n = len(tokens)
    lower = [t.text.lower() for t in tokens]
    shapes = [short_shape(t.text) for t in tokens]
    out = []
    for i, token in enumerate(tokens):
        feats = list(_own(token.text, token.script))
        if i == 0:
            feats.append("BOS")
        else:
            feats += [f"-1:w={lower[i - 1]}", f"-1:sh={shapes[i - 1]}", f"-1:sc={tokens[i - 1].script}",
                      f"-1|0:w={lower[i - 1]}|{lower[i]}"]
            feats.append(f"-2:w={lower[i - 2]}" if i > 1 else "-2:BOS")
        if i == n - 1:
            feats.append("EOS")
        else:
            feats += [f"+1:w={lower[i + 1]}", f"+1:sh={shapes[i + 1]}", f"+1:sc={tokens[i + 1].script}",
                      f"0|+1:w={lower[i]}|{lower[i + 1]}"]
            feats.append(f"+2:w={lower[i + 2]}" if i < n - 2 else "+2:EOS")
        out.append(feats)
    return out


@lru_cache(maxsize=CACHE_SIZE)
def _own(text: str, script: str) -> tuple[str, ...]:
    """A token's own features, which depend only on its text and script (hence the cache)."""
    low = text.lower()
    feats = ["bias", f"w={low}", f"sh={shape(text)}", f"ss={short_shape(text)}", f"sc={script}"]
    for k in range(1, min(3, len(low)) + 1):
        feats.append(f"p{k}={low[:k]}")
        feats.append(f"s{k}={low[-k:]}")
    if text.isdigit():
        feats.append("digit")
    elif text.isupper():
        feats.append("upper")
    elif text.istitle():
        feats.append("title")
    if len(text) == 1:
        feats.append("len=1")
    return tuple(feats)


def _char_class(char: str) -> str:
    if char.isdigit():
        return "d"
    if char.isupper():
        return "X"
    if char.islower():
        return "x"
    if char.isalpha():
        return "c"  # a letter without case (Han, kana, Hangul, Arabic...)
    return char


@lru_cache(maxsize=CACHE_SIZE)
def shape(text: str) -> str:
    """``Xxxxx``-style shape, cut at 8 characters (long words need not have long distinct shapes)."""
    return "".join(_char_class(c) for c in text[:8])


@lru_cache(maxsize=CACHE_SIZE)
def short_shape(text: str) -> str:
    """The shape with repeats collapsed: ``Paris`` -> ``Xx``, ``2024`` -> ``d``, ``U.S.`` -> ``X.X.``."""
    out: list[str] = []
    for c in text:
        k = _char_class(c)
        if not out or out[-1] != k:
            out.append(k)
    return "".join(out)
