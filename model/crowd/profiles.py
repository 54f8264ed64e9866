"""Simulated annotators: who labels a task, and how often they get it wrong.

Replays (``labelloop simulate --noise / --annotators``, ``benchmarks/crowd_replay.py``) need labels
that are wrong the way a crowd's are, not only ground truth. An :class:`AnnotatorProfile` is a list
of annotators, each either *careful with accuracy a* (the true label with probability ``a``, else
one of the other classes uniformly: a "flipped" label, always wrong) or a *spammer* (a class drawn
uniformly from all classes, right by chance only, ``1/K``).

Every answer is drawn once per seed and item (:func:`draw_answers`), before any strategy runs: the
arms of one seed then see the *same* wrong labels on the same items, so "active vs random under
noise" stays a paired comparison, and the noise does not depend on which items a strategy asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The profile entry of an annotator who answers at random.
SPAM = "spam"


@dataclass(frozen=True)
class AnnotatorProfile:
    """Annotators' accuracies; ``None`` marks a spammer (uniform random answers over all classes)."""

    accuracies: tuple[float | None, ...]

    @property
    def names(self) -> list[str]:
        """Stable annotator ids for reports: ``a0, a1, ...`` (a spammer keeps its position)."""
        return [f"a{i}" for i in range(len(self.accuracies))]

    def expected_error(self, n_classes: int) -> float:
        """The share of wrong answers when every annotator answers equally often (a spammer errs ``1 - 1/K``)."""
        errors = [1 - 1 / n_classes if a is None else 1 - a for a in self.accuracies]
        return float(np.mean(errors))

    def describe(self) -> str:
        return ",".join(SPAM if a is None else f"{a:g}" for a in self.accuracies)


def parse_profile(text: str) -> AnnotatorProfile:
    """``"0.9,0.9,0.7,spam"`` -> four annotators; accuracies in (0, 1], ``spam`` for a random labeller.

    Raises ValueError naming the bad entry: a profile is typed by a person on the command line.
    """
    accuracies: list[float | None] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == SPAM:
            accuracies.append(None)
            continue
        try:
            value = float(entry)
        except ValueError:
            raise ValueError(f"annotator profile entry {raw.strip()!r} is neither an accuracy nor {SPAM!r}") from None
        if not 0 < value <= 1:
            raise ValueError(f"annotator accuracy must be in (0, 1], got {raw.strip()!r}")
        accuracies.append(value)
    if not accuracies:
        raise ValueError(f"annotator profile {text!r} names no annotator (e.g. 0.9,0.9,0.7,{SPAM})")
    return AnnotatorProfile(tuple(accuracies))


def noise_profile(rate: float) -> AnnotatorProfile:
    """One annotator who flips a share ``rate`` of the labels (to another class, uniformly)."""
    if not 0 <= rate < 1:
        raise ValueError(f"noise rate must be in [0, 1), got {rate!r}")
    return AnnotatorProfile((1.0 - rate,))


def answer(truth: np.ndarray, accuracy: float | None, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """One annotator's answers (class indices) to items whose true classes are ``truth``."""
    truth = np.asarray(truth, dtype=np.int64)
    if accuracy is None:
        return rng.integers(0, n_classes, size=truth.size)
    wrong = rng.random(truth.size) >= accuracy
    # A flip moves to one of the K - 1 other classes: add 1..K-1 modulo K.
    shift = rng.integers(1, max(2, n_classes), size=truth.size)
    return np.where(wrong & (n_classes > 1), (truth + shift) % n_classes, truth)


def draw_answers(truth: Sequence[int], profile: AnnotatorProfile, n_classes: int, seed: int,
                 per_item: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``per_item`` distinct annotators per item, drawn at random, and their answers.

    Returns ``(annotator, label)``, both ``(n_items, per_item)`` int64 arrays (annotator positions in
    the profile, class indices). Seeded by ``seed`` alone, so every arm of a replay sees the same answers.
    """
    truth = np.asarray(truth, dtype=np.int64)
    n_annotators = len(profile.accuracies)
    if not 1 <= per_item <= n_annotators:
        raise ValueError(f"per_item must be between 1 and the {n_annotators} annotators, got {per_item}")
    rng = np.random.default_rng([seed, 2])
    who = np.argsort(rng.random((truth.size, n_annotators)), axis=1)[:, :per_item]
    labels = np.empty_like(who)
    for j, accuracy in enumerate(profile.accuracies):
        mask = who == j
        rows = np.nonzero(mask)[0]
        labels[mask] = answer(truth[rows], accuracy, n_classes, rng)
    return who.astype(np.int64), labels.astype(np.int64)
