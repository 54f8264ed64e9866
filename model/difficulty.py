"""Coarse difficulty buckets over uncertainty, for humans (filters, dashboards, routing).

A raw score such as 0.43 means little to an annotator or a project manager; three named
buckets do, and they let the backend route "hard" tasks to experienced annotators.
"""

from __future__ import annotations

import numpy as np

EASY = "easy"
MEDIUM = "medium"
HARD = "hard"


def bucket(uncertainty: np.ndarray, easy_below: float = 0.2, hard_above: float = 0.6) -> np.ndarray:
    """Return an object array of "easy" / "medium" / "hard", same shape as ``uncertainty``.

    ``u < easy_below`` is easy, ``u > hard_above`` is hard, everything in between (bounds
    included) is medium. Thresholds are on the [0, 1] uncertainty scale of
    :mod:`model.uncertainty`, so they mean the same whatever the number of classes.
    """
    if not (0.0 <= easy_below <= hard_above <= 1.0):
        raise ValueError(
            "need 0 <= easy_below <= hard_above <= 1, "
            f"got easy_below={easy_below!r}, hard_above={hard_above!r}"
        )
    u = np.asarray(uncertainty, dtype=np.float64)
    if not np.all(np.isfinite(u)):
        # NaN compares False with everything and would quietly land in "medium".
        raise ValueError("uncertainty contains NaN or infinite values")
    out = np.full(u.shape, MEDIUM, dtype=object)
    out[u < easy_below] = EASY
    out[u > hard_above] = HARD
    return out
