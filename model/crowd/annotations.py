"""Several annotations per item, in long format: one row per (item, annotator, label).

Label Studio gives a task any number of annotations, each by a user, some flagged ``ground_truth``.
A long table holds that without padding (most tasks have one annotation, a few have three), and
every estimator in :mod:`model.crowd` works on its integer codes: items ``0..n_items-1`` (the
caller's row order, e.g. the training tasks), annotators ``0..n_annotators-1`` (in order of first
appearance, their ids kept in :attr:`Annotations.annotators`), classes ``0..K-1`` in the configured
order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from model.evaluation import check_known_labels


@dataclass(frozen=True)
class Annotations:
    """One row per annotation; build it with :meth:`from_records`.

    ``item``, ``annotator``, ``label`` are int64 codes (see the module docstring), ``ground_truth``
    a bool per row: a trusted answer (Label Studio's ground-truth flag) that fixes the item's
    consensus and is the yardstick of the annotators who labelled that item too.
    """

    item: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    ground_truth: np.ndarray
    n_items: int
    classes: tuple[str, ...]
    annotators: tuple[Hashable, ...]

    @classmethod
    def from_records(cls, items: Sequence[int], annotators: Sequence[Hashable], labels: Sequence[str],
                     classes: Sequence[str], n_items: int | None = None,
                     ground_truth: Sequence[bool] | None = None) -> Annotations:
        """Validate and encode parallel lists of (item index, annotator id, label name).

        An annotator who labelled the same item twice counts once, with the last label given (a
        corrected answer replaces the first); an unknown label or a negative item index is refused,
        naming it -- a mismatch with the label config to fix, not to skip. ``n_items`` defaults to
        the largest item index + 1 (items without annotations are allowed: they get no consensus).
        """
        if not len(items) == len(annotators) == len(labels):
            raise ValueError(f"items, annotators and labels differ in length: {len(items)}, {len(annotators)}, "
                             f"{len(labels)}")
        flags = [False] * len(items) if ground_truth is None else [bool(v) for v in ground_truth]
        if len(flags) != len(items):
            raise ValueError(f"ground_truth has {len(flags)} entries for {len(items)} annotations")
        classes = tuple(str(c) for c in classes)
        check_known_labels(list(labels), classes)
        item = np.asarray(items, dtype=np.int64).reshape(-1)
        if item.size and item.min() < 0:
            raise ValueError(f"item indices must be >= 0, got {int(item.min())}")
        size = int(item.max()) + 1 if item.size else 0
        n_items = size if n_items is None else int(n_items)
        if n_items < size:
            raise ValueError(f"n_items={n_items} but an annotation names item {size - 1}")
        codes: dict[Hashable, int] = {}
        who = np.asarray([codes.setdefault(a, len(codes)) for a in annotators], dtype=np.int64)
        index = {c: k for k, c in enumerate(classes)}
        label = np.asarray([index[v] for v in labels], dtype=np.int64)
        keep = _last_per_pair(item, who)
        return cls(item=item[keep], annotator=who[keep], label=label[keep],
                   ground_truth=np.asarray(flags, dtype=bool)[keep], n_items=n_items, classes=classes,
                   annotators=tuple(codes))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_annotators(self) -> int:
        return len(self.annotators)

    def __len__(self) -> int:
        return int(self.item.size)

    def per_item(self) -> np.ndarray:
        """Number of annotations of each item (int64, length ``n_items``)."""
        return np.bincount(self.item, minlength=self.n_items)

    def votes(self, weights: np.ndarray | None = None) -> np.ndarray:
        """``(n_items, K)`` vote counts, or weighted sums with one weight per *annotator*."""
        w = np.ones(len(self)) if weights is None else np.asarray(weights, dtype=np.float64)[self.annotator]
        out = np.zeros((self.n_items, self.n_classes))
        np.add.at(out, (self.item, self.label), w)
        return out

    def truth(self) -> np.ndarray:
        """Per item the ground-truth class, or -1 where no annotation of the item is flagged ground truth."""
        out = np.full(self.n_items, -1, dtype=np.int64)
        out[self.item[self.ground_truth]] = self.label[self.ground_truth]  # the last flagged one wins
        return out


def _last_per_pair(item: np.ndarray, annotator: np.ndarray) -> np.ndarray:
    """Row positions keeping the last row of each (item, annotator) pair, in the original order."""
    if item.size == 0:
        return np.zeros(0, dtype=np.int64)
    pair = item * (int(annotator.max()) + 1) + annotator
    reversed_first = np.unique(pair[::-1], return_index=True)[1]
    return np.sort(item.size - 1 - reversed_first)
