"""Queue orderings: per-task uncertainty (and optionally features) -> the order tasks are served in.

Label Studio serves the task with the lowest prediction ``score`` first, and labelloop pushes
``score = 1 - uncertainty`` (:func:`model.uncertainty.confidence_score`). On its own that is
pure greedy uncertainty sampling: the next K tasks are the K most uncertain ones, and those are
often near-duplicates of each other -- the annotator labels the same hard case ten times while
the rest of the pool waits. The orderings here trade a little greed for diversity:

* ``greedy`` (:class:`Greedy`): most uncertain first -- what the plain score already does;
* ``explore`` (:class:`Exploration`): a fixed share of queue positions, spread evenly, serve
  random tasks;
* ``power`` (:class:`PowerSampling`): sample the queue without replacement proportionally to
  ``u ** beta``;
* ``cluster`` (:class:`ClusterAware`): k-means on the features, round-robin over the clusters.

Every ordering is a small class (as in baal's heuristics, and like :mod:`model.uncertainty`)
with a ``name`` for the registry and its parameters on the instance, and one method::

    order(uncertainty, features=None, random_state=None) -> QueueOrder

``uncertainty`` is the float array ``(N,)`` in [0, 1] from :mod:`model.uncertainty`;
``features`` the ``(N, d)`` dense or scipy-sparse matrix of the same pool (only ``cluster``
needs it; the others ignore it so the backend can call every ordering the same way);
``random_state`` follows scikit-learn (None, an int seed or a ``np.random.RandomState``).

Cold start (:func:`representative_order`, :func:`blend_orders`, :func:`cold_start_share`): while a
project has fewer than a few labels per class, uncertainty mostly points at outliers, so
:func:`model.scoring.order` can serve the typical tasks of distinct k-means clusters first and hand
over to the ordering above as labels grow (its ``warmup`` argument).

Because Label Studio only understands scores, :func:`scores_for_order` turns an order back into
the scores to push (and ``QueueOrder.cluster`` fills Label Studio's per-prediction ``cluster``).
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import normalize
from sklearn.utils import check_random_state

# Uncertainties come out of model.uncertainty clipped to [0, 1]; anything further out is a bug.
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class QueueOrder:
    """The result of a queue ordering.

    Attributes
    ----------
    order:
        int64 ``(N,)``, a permutation of ``range(N)``: ``order[0]`` is the pool index of the task
        served first.
    cluster:
        int64 ``(N,)`` cluster id per task *in pool order* (not queue order), for Label Studio's
        ``cluster`` field; None when the ordering does not cluster.
    """

    order: np.ndarray
    cluster: np.ndarray | None = None


class QueueStrategy:
    """Base class: validates the input; subclasses implement :meth:`_order`."""

    name: ClassVar[str] = ""
    #: Whether :meth:`order` needs the pool's features (callers compute them only then).
    needs_features: ClassVar[bool] = False

    def order(
        self,
        uncertainty: np.ndarray,
        features: Any = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> QueueOrder:
        """Return the serving order of the pool (see :class:`QueueOrder`)."""
        u = _validate_uncertainty(uncertainty)
        return self._order(u, features, random_state)

    def _order(self, u: np.ndarray, features: Any, random_state: Any) -> QueueOrder:
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters and their current values (scikit-learn style)."""
        return {p: getattr(self, p) for p in _param_names(type(self))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class Greedy(QueueStrategy):
    """Most uncertain first; equal uncertainties keep pool order (stable sort).

    This is exactly the order Label Studio already gets from ``score = 1 - u``; it is here so
    "no diversity" is a named, selectable choice and the default.
    """

    name = "greedy"

    def _order(self, u: np.ndarray, features: Any, random_state: Any) -> QueueOrder:
        return QueueOrder(order=_greedy(u))


class Exploration(QueueStrategy):
    """Greedy, except that a fixed share of queue positions serve a random task instead.

    The idea of superintendent's ``shuffle_prop``: pure uncertainty sampling never looks at the
    parts of the pool the model is (wrongly) confident about, so a few random tasks keep
    checking them. Unlike a plain shuffle-the-tail, the random picks are spread evenly through
    the queue, because annotators only ever reach its head.

    The exact rule, for a pool of N tasks:

    1. ``k = floor(fraction * N + 0.5)`` positions (``fraction * N`` rounded half up) are
       random slots, at ``floor((j + 0.5) * N / k)`` for ``j = 0 .. k-1`` -- evenly spaced, the
       first half a spacing from the head, so every prefix of the queue holds about
       ``fraction`` random picks (see :meth:`random_positions`).
    2. The queue is filled front to back. A greedy slot takes the most uncertain task not yet
       queued (ties: lowest pool index); a random slot takes a task drawn uniformly from all
       tasks not yet queued ("the rest of the pool").

    ``fraction=0`` is :class:`Greedy`, ``fraction=1`` a uniformly random permutation.
    """

    name = "explore"

    def __init__(self, fraction: float = 0.1):
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)):
            raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}")
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
        self.fraction = float(fraction)

    def random_positions(self, n: int) -> np.ndarray:
        """Queue positions (int64, ascending) that serve a random task in a pool of ``n``."""
        k = math.floor(self.fraction * n + 0.5)
        k = min(k, n)
        if k == 0:
            return np.empty(0, dtype=np.int64)
        # Spacing n / k >= 1 keeps the floors distinct; the largest is floor(n - n/(2k)) <= n - 1.
        return np.floor((np.arange(k) + 0.5) * (n / k)).astype(np.int64)

    def _order(self, u: np.ndarray, features: Any, random_state: Any) -> QueueOrder:
        n = u.shape[0]
        greedy = _greedy(u)
        slots = self.random_positions(n)
        if slots.size == 0:
            return QueueOrder(order=greedy)
        rng = check_random_state(random_state)
        # At random slot p, exactly n - p tasks are still unqueued, so every draw is known upfront.
        draws = rng.randint(0, n - slots).tolist()

        # Work in greedy ranks (0 = most uncertain). `pool` lists the unqueued ranks in arbitrary
        # order (swap-remove, O(1)), `where` is each rank's index in it; `frontier` is the lowest
        # rank that may still be unqueued, which is what a greedy slot takes.
        pool = list(range(n))
        where = list(range(n))
        queued = [False] * n
        is_random = [False] * n
        for p in slots.tolist():
            is_random[p] = True
        frontier = 0
        next_draw = 0
        ranks = [0] * n
        for pos in range(n):
            if is_random[pos]:
                rank = pool[draws[next_draw]]
                next_draw += 1
            else:
                while queued[frontier]:
                    frontier += 1
                rank = frontier
            queued[rank] = True
            i, last = where[rank], pool[n - pos - 1]
            pool[i], where[last] = last, i
            ranks[pos] = rank
        return QueueOrder(order=greedy[np.asarray(ranks, dtype=np.int64)])


class PowerSampling(QueueStrategy):
    """Stochastic power acquisition (Kirsch et al., 2023, "Stochastic Batch Acquisition").

    Taking the top-K scores as a batch over-commits to whatever the model is wrong about right
    now, and the top K are often redundant. Sampling the queue instead, without replacement and
    with probability proportional to ``u ** beta``, keeps the most uncertain tasks near the head
    while mixing in others. It is done with the Gumbel-top-k trick: sort by
    ``log(u + eps) + G / beta`` descending, with ``G`` i.i.d. standard Gumbel noise (the same
    order as ``beta * log u + G``). ``eps`` keeps ``u == 0`` finite, so such tasks still get a
    random order among themselves after everything else instead of tying at ``-inf``.

    ``beta`` -> infinity is greedy (``beta=np.inf`` gives exactly :class:`Greedy`), ``beta`` -> 0
    uniformly random; the paper uses ``beta = 1``.
    """

    name = "power"
    #: Added to u before the log; far below any meaningful uncertainty difference.
    eps: ClassVar[float] = 1e-12

    def __init__(self, beta: float = 1.0):
        if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating, np.integer)):
            raise ValueError(f"beta must be a positive number, got {beta!r}")
        if not float(beta) > 0.0:  # also rejects NaN
            raise ValueError(f"beta must be > 0, got {beta!r}")
        self.beta = float(beta)

    def _order(self, u: np.ndarray, features: Any, random_state: Any) -> QueueOrder:
        if math.isinf(self.beta):
            return QueueOrder(order=_greedy(u))
        rng = check_random_state(random_state)
        keys = np.log(u + self.eps) + rng.gumbel(size=u.shape[0]) / self.beta
        return QueueOrder(order=np.argsort(-keys, kind="stable").astype(np.int64))


class ClusterAware(QueueStrategy):
    """Round-robin over k-means clusters of the features, most uncertain first in each cluster.

    Near-duplicates land in the same cluster, so consecutive tasks come from different regions
    of the pool. The queue is built in rounds: round r serves the r-th most uncertain task of
    every cluster that still has one, and within a round clusters go in order of their most
    uncertain task (so the overall most uncertain task is still served first). The returned
    cluster ids are numbered in that same order -- cluster 0 holds the most uncertain task --
    and are what Label Studio's ``cluster`` field expects: its uncertainty sampling then also
    favours the cluster an annotator has solved least.

    Parameters
    ----------
    n_clusters:
        Number of k-means clusters; None picks ``min(20, max(2, round(sqrt(N / 2))))`` (the
        ``sqrt(N/2)`` rule of thumb, capped so a big pool does not get tiny clusters). Always
        capped at N. Fewer clusters may come out when the pool has fewer distinct rows.
    random_state:
        Seed for the dimensionality reduction and k-means; a ``random_state`` passed to
        :meth:`order` takes precedence.

    Features may be a scipy sparse matrix (tf-idf) or a dense array (pixels). Wider than
    :attr:`max_dim` columns (and more than :attr:`max_dim` rows) they are first reduced to
    :attr:`max_dim` dimensions -- ``TruncatedSVD`` for sparse input, rows then L2-normalised
    (latent semantic analysis: k-means then groups by cosine similarity, as tf-idf is meant to
    be compared), ``PCA`` for dense input. That keeps ~10 000 sparse 10 000-dim rows to a couple of
    seconds on two cores, and k-means behaves better in a few dense dimensions than in
    thousands of sparse ones.
    """

    name = "cluster"
    needs_features = True
    #: Dimensions kept by the reduction before k-means.
    max_dim: ClassVar[int] = 50

    def __init__(self, n_clusters: int | None = None, random_state: int | np.random.RandomState | None = None):
        if n_clusters is not None and (
            isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1
        ):
            raise ValueError(f"n_clusters must be a positive integer or None, got {n_clusters!r}")
        self.n_clusters = None if n_clusters is None else int(n_clusters)
        self.random_state = random_state

    def resolve_n_clusters(self, n: int) -> int:
        """The number of clusters asked of k-means for a pool of ``n`` tasks."""
        if n == 0:
            return 0
        k = self.n_clusters if self.n_clusters is not None else min(20, max(2, round(math.sqrt(n / 2))))
        return min(k, n)

    def _order(self, u: np.ndarray, features: Any, random_state: Any) -> QueueOrder:
        if features is None:
            raise ValueError("the 'cluster' queue needs features: pass features= (one row per task)")
        n = u.shape[0]
        x = features if sp.issparse(features) else np.asarray(features)
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"features must have shape ({n}, n_features) to match uncertainty, got {x.shape}")
        if n == 0:
            return QueueOrder(order=np.empty(0, dtype=np.int64), cluster=np.empty(0, dtype=np.int64))
        seed = check_random_state(random_state if random_state is not None else self.random_state)
        labels = self._cluster(x, self.resolve_n_clusters(n), seed)
        return _round_robin(u, labels)

    def _cluster(self, x: Any, k: int, rng: np.random.RandomState) -> np.ndarray:
        if k == 1:
            return np.zeros(x.shape[0], dtype=np.int64)
        return _kmeans(_reduce(x, self.max_dim, rng), k, rng).labels_.astype(np.int64)


def _reduce(x: Any, max_dim: int, rng: np.random.RandomState) -> Any:
    """Features k-means can work with: at most ``max_dim`` dense dimensions, sparse rows L2-normalised.

    ``TruncatedSVD`` for sparse input (latent semantic analysis: k-means then groups by cosine
    similarity, as tf-idf is meant to be compared), ``PCA`` for dense input; only when both the
    width and the row count exceed ``max_dim``.
    """
    from sklearn.decomposition import PCA, TruncatedSVD  # training only: kept out of serving workers

    sparse = sp.issparse(x)
    if x.shape[1] > max_dim and x.shape[0] > max_dim:
        if sparse:
            x = TruncatedSVD(n_components=max_dim, random_state=rng).fit_transform(x)
        else:
            x = PCA(n_components=max_dim, svd_solver="randomized", random_state=rng).fit_transform(x)
    return normalize(x) if sparse else x


def _kmeans(x: Any, k: int, rng: np.random.RandomState) -> Any:
    """A fitted ``KMeans``. Imported here: scikit-learn's clustering (~6 MB) is needed only by a round,
    and a worker that only serves never loads it."""
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():
        # Fewer distinct rows than clusters: k-means warns and leaves clusters empty, which
        # the round-robins simply skip.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # One k-means++ initialisation (scikit-learn's "auto"): restarts would triple the cost,
        # and a slightly worse partition only changes which tasks share a round.
        return KMeans(n_clusters=k, n_init=1, random_state=rng).fit(x)


def _round_robin(u: np.ndarray, labels: np.ndarray) -> QueueOrder:
    """Interleave clusters: order by (rank within cluster, cluster's first appearance in greedy)."""
    n = u.shape[0]
    greedy = _greedy(u)
    # Renumber clusters by first appearance in the greedy order: 0 holds the most uncertain task.
    _, first, inverse = np.unique(labels[greedy], return_index=True, return_inverse=True)
    renumber = np.empty(first.size, dtype=np.int64)
    renumber[np.argsort(first, kind="stable")] = np.arange(first.size)
    cluster_g = renumber[inverse.reshape(-1)]  # new cluster id of greedy[i]
    # Rank of greedy[i] inside its cluster: stable-sort by cluster keeps greedy order per group.
    by_cluster = np.argsort(cluster_g, kind="stable")
    sizes = np.bincount(cluster_g)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    rank_g = np.empty(n, dtype=np.int64)
    rank_g[by_cluster] = np.arange(n) - starts
    queue = greedy[np.lexsort((cluster_g, rank_g))]
    cluster = np.empty(n, dtype=np.int64)
    cluster[greedy] = cluster_g
    return QueueOrder(order=queue.astype(np.int64), cluster=cluster)


# ----------------------------------------------------------------------------- cold start

#: Labels per class the cold start of ``labelloop simulate``'s ``:warmup`` arms and the docs refer to.
DEFAULT_WARMUP = 3.0
#: Dimensions kept before the cold start's k-means (as :attr:`ClusterAware.max_dim`).
COLD_START_DIM = 50


def cold_start_share(labels_per_class: float | None, warmup: float) -> float:
    """Share of queue positions that serve representative tasks: ``1 - labels_per_class / warmup``.

    With fewer than a few labels per class the model's uncertainty is mostly noise, and its most
    uncertain tasks are outliers (odd texts, far from everything labelled), which teach little
    about the bulk of the pool. Representative tasks do, until the model has seen a few examples
    of every class; from then on uncertainty knows better. The share falls linearly from 1 (no
    labels) to 0 (``warmup`` labels per class), so the hand-over is gradual rather than a switch
    at one round. ``warmup <= 0`` (the default of :func:`model.scoring.order`) is always 0.
    """
    if warmup is None or warmup <= 0:
        return 0.0
    if labels_per_class is None or not math.isfinite(labels_per_class) or labels_per_class < 0:
        raise ValueError(f"labels_per_class must be a number >= 0 when warmup > 0, got {labels_per_class!r}")
    return float(min(1.0, max(0.0, 1.0 - labels_per_class / warmup)))


def representative_order(
    uncertainty: np.ndarray, features: Any, n_clusters: int, random_state: int | np.random.RandomState | None = None
) -> QueueOrder:
    """Typical tasks of distinct k-means clusters first, least-known clusters first.

    The pool is clustered into ``n_clusters`` (k-means on at most :data:`COLD_START_DIM`
    dimensions, as :class:`ClusterAware`). Round r of the queue serves the r-th most *typical*
    task of every cluster: the one closest to its cluster's centre (TypiClust's point, Hacohen et
    al. 2022: at tiny budgets, typical examples beat uncertain ones). Within a round the clusters
    go in order of their uncertainty mass (size x mean uncertainty), highest first: the queue never
    sees which tasks are labelled, but the model is confident near what it was taught, so a cluster
    that already holds labels comes after one nobody has labelled yet, and a big cluster before a
    small one -- never a cluster of a few outliers first just because they are very uncertain.
    """
    u = _validate_uncertainty(uncertainty)
    n = u.shape[0]
    if n == 0:
        return QueueOrder(order=np.empty(0, dtype=np.int64), cluster=np.empty(0, dtype=np.int64))
    if features is None:
        raise ValueError("a representative order needs features: pass features= (one row per task)")
    x = features if sp.issparse(features) else np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"features must have shape ({n}, n_features) to match uncertainty, got {x.shape}")
    k = max(1, min(int(n_clusters), n))
    rng = check_random_state(random_state)
    reduced = _reduce(x, COLD_START_DIM, rng)
    # Still sparse only when it was small (<= COLD_START_DIM rows or columns): cheap to densify.
    reduced = reduced.toarray() if sp.issparse(reduced) else np.asarray(reduced, dtype=np.float64)
    if k == 1:
        labels = np.zeros(n, dtype=np.int64)
        centres = reduced.mean(axis=0, keepdims=True)
    else:
        fitted = _kmeans(reduced, k, rng)
        labels, centres = fitted.labels_.astype(np.int64), fitted.cluster_centers_
    distance = np.linalg.norm(reduced - centres[labels], axis=1)
    return _typical_round_robin(u, labels, distance)


def _typical_round_robin(u: np.ndarray, labels: np.ndarray, distance: np.ndarray) -> QueueOrder:
    """Order by (rank of typicality within cluster, cluster's uncertainty mass descending)."""
    n = u.shape[0]
    _, cluster = np.unique(labels, return_inverse=True)  # drop empty clusters, ids 0..m-1
    cluster = cluster.reshape(-1).astype(np.int64)
    sizes = np.bincount(cluster)
    mass = np.bincount(cluster, weights=u)
    # Most uncertainty mass first; ties (e.g. every uncertainty 0) by size, then id.
    by_need = np.lexsort((np.arange(sizes.size), -sizes, -mass))
    priority = np.empty(sizes.size, dtype=np.int64)
    priority[by_need] = np.arange(sizes.size)
    # Within a cluster: closest to the centre first, ties in pool order.
    within = np.lexsort((np.arange(n), distance, cluster))
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    rank = np.empty(n, dtype=np.int64)
    rank[within] = np.arange(n) - starts
    queue = np.lexsort((np.arange(n), priority[cluster], rank))
    return QueueOrder(order=queue.astype(np.int64), cluster=priority[cluster])


def blend_orders(lead: np.ndarray, rest: np.ndarray, share: float) -> np.ndarray:
    """Merge two queues of the same pool: ``share`` of the positions, evenly spread, follow ``lead``.

    Positions are those of :meth:`Exploration.random_positions` (every prefix of the merged queue
    holds about ``share`` of ``lead``'s picks); each takes the first task of its queue that is not
    queued yet. ``share=1`` returns ``lead``, ``share=0`` returns ``rest``.
    """
    lead = np.asarray(lead, dtype=np.int64)
    rest = np.asarray(rest, dtype=np.int64)
    n = rest.shape[0]
    if lead.shape != rest.shape:
        raise ValueError(f"both orders must cover the same pool, got {lead.shape} and {rest.shape}")
    slots = Exploration(fraction=min(1.0, max(0.0, float(share)))).random_positions(n)
    if slots.size == 0:
        return rest.copy()
    if slots.size == n:
        return lead.copy()
    from_lead = np.zeros(n, dtype=bool)
    from_lead[slots] = True
    queued = np.zeros(n, dtype=bool)
    merged = np.empty(n, dtype=np.int64)
    cursors = {True: 0, False: 0}
    sources = {True: lead, False: rest}
    for pos in range(n):
        source, i = sources[bool(from_lead[pos])], cursors[bool(from_lead[pos])]
        while queued[source[i]]:
            i += 1
        merged[pos] = source[i]
        queued[source[i]] = True
        cursors[bool(from_lead[pos])] = i + 1
    return merged


QUEUES: dict[str, type[QueueStrategy]] = {cls.name: cls for cls in (Greedy, Exploration, PowerSampling, ClusterAware)}

DEFAULT_QUEUE = "greedy"


def get_queue(name: str = DEFAULT_QUEUE, **params: Any) -> QueueStrategy:
    """Return a new instance of the queue ordering registered under ``name`` with ``params``.

    Raises ValueError for an unknown name (listing the valid ones), an unknown parameter
    (listing the ordering's parameters) or an invalid parameter value, so a configuration
    mistake is reported when it is made rather than at the next queue refresh.
    """
    try:
        cls = QUEUES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown queue {name!r}; valid names: {', '.join(sorted(QUEUES))}") from None
    allowed = _param_names(cls)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"queue {name!r} got unknown parameter(s) {', '.join(unknown)}; "
            f"valid parameters: {', '.join(allowed) or '(none)'}"
        )
    return cls(**params)


def scores_for_order(confidence: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Return per-task scores (pool order) whose ascending sort is exactly ``order``.

    Label Studio only sorts by score, so a non-greedy order has to be expressed as scores. The
    sorted confidences are dealt out along the queue: position 0 gets the smallest confidence,
    position 1 the next, and so on. Why this and not, say, ``position / N``:

    * the pushed values stay confidence levels in [0, 1] with the same distribution as the
      model's confidences, so score filters and histograms in Label Studio keep their meaning
      ("the tasks below 0.5") -- a task's score is the confidence *of its queue position*;
    * for :class:`Greedy` it returns the confidences themselves (when distinct), so switching
      the ordering on changes nothing else.

    Equal confidences would give equal scores, and Label Studio breaks ties arbitrarily, so the
    order would be lost. Ties are therefore nudged up by one float step at a time
    (``np.nextafter``) until the scores strictly increase along the queue; if that would pass
    1.0 the top is pushed down instead. The nudges are ~1e-16, far below any meaningful
    difference in confidence.

    Parameters
    ----------
    confidence:
        float ``(N,)`` in [0, 1], e.g. :func:`model.uncertainty.confidence_score`.
    order:
        int ``(N,)`` permutation of ``range(N)``, first = served first (``QueueOrder.order``).
    """
    c = np.asarray(confidence, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"confidence must be 1-D, got shape {c.shape}")
    if c.size and (not np.all(np.isfinite(c)) or c.min() < -_TOLERANCE or c.max() > 1.0 + _TOLERANCE):
        raise ValueError("confidence must be finite and within [0, 1]")
    n = c.shape[0]
    o = np.asarray(order)
    if o.shape != (n,) or (n and not np.issubdtype(o.dtype, np.integer)):
        raise ValueError(f"order must be an integer array of shape ({n},), got {o.dtype} {o.shape}")
    if n and not np.array_equal(np.sort(o), np.arange(n)):
        raise ValueError("order must be a permutation of range(N)")

    along = np.sort(np.clip(c, 0.0, 1.0))  # along[i] = score at queue position i
    if n > 1 and not np.all(np.diff(along) > 0):
        along = _strictly_increasing(along)
    scores = np.empty(n, dtype=np.float64)
    scores[o] = along
    return scores


def _strictly_increasing(values: np.ndarray) -> np.ndarray:
    """Smallest float nudges turning a sorted [0, 1] sequence into a strictly increasing one in [0, 1]."""
    out = values.tolist()
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            out[i] = math.nextafter(out[i - 1], math.inf)
    if out[-1] > 1.0:
        # The nudges ran past 1 (many tasks at confidence 1.0): cap at 1 and step down instead.
        out[-1] = 1.0
        for i in range(len(out) - 2, -1, -1):
            if out[i] >= out[i + 1]:
                out[i] = math.nextafter(out[i + 1], -math.inf)
    return np.asarray(out, dtype=np.float64)


def _greedy(u: np.ndarray) -> np.ndarray:
    # Stable sort on -u: most uncertain first, equal uncertainties in pool order.
    return np.argsort(-u, kind="stable").astype(np.int64)


def _param_names(cls: type) -> list[str]:
    # Greedy has no __init__ of its own: object's (*args, **kwargs) means "no parameters".
    sig = inspect.signature(cls.__init__)
    return [
        name for name, p in sig.parameters.items() if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _validate_uncertainty(uncertainty: np.ndarray) -> np.ndarray:
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.ndim != 1:
        raise ValueError(f"uncertainty must be 1-D (one value per task), got shape {u.shape}")
    if u.size and (not np.all(np.isfinite(u)) or u.min() < -_TOLERANCE or u.max() > 1.0 + _TOLERANCE):
        raise ValueError("uncertainty must be finite and within [0, 1]")
    return np.clip(u, 0.0, 1.0)


def place_at_random(main_order: np.ndarray, reserved: np.ndarray, random_state: int | None = None) -> np.ndarray:
    """Merge a strategy's queue with reserved items put at uniformly random positions.

    ``main_order`` lists the strategy's items (first served first); ``reserved`` the items that must
    reach annotators regardless of what the model thinks of them (a random validation or control
    stream). Each reserved item gets a position drawn uniformly over the whole queue, so the reserved
    items that a crowd labels are a random sample of the pool, not the ones the model found hard.
    Returns the merged order (a permutation of ``main_order`` and ``reserved`` together).
    """
    main_order = np.asarray(main_order, dtype=int)
    reserved = np.asarray(reserved, dtype=int)
    n = main_order.size + reserved.size
    rng = np.random.default_rng(random_state)
    slots = np.zeros(n, dtype=bool)
    slots[rng.choice(n, size=reserved.size, replace=False)] = True
    merged = np.empty(n, dtype=int)
    merged[slots] = rng.permutation(reserved)
    merged[~slots] = main_order
    return merged
