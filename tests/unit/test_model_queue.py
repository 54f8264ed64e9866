import math

import numpy as np
import pytest
import scipy.sparse as sp

from model.queue import (
    DEFAULT_QUEUE,
    QUEUES,
    ClusterAware,
    Exploration,
    Greedy,
    PowerSampling,
    QueueOrder,
    get_queue,
    scores_for_order,
)


def _is_permutation(order: np.ndarray, n: int) -> bool:
    return (
        order.shape == (n,) and np.issubdtype(order.dtype, np.integer) and np.array_equal(np.sort(order), np.arange(n))
    )


def _blobs(per_blob: int = 4, dim: int = 2, seed: int = 0) -> np.ndarray:
    """Three tight, far-apart blobs: rows 0..per_blob-1 in blob A, then B, then C."""
    rng = np.random.default_rng(seed)
    centers = np.zeros((3, dim))
    centers[1, 0] = 10.0
    centers[2, 1] = 10.0
    return np.concatenate([c + 0.1 * rng.standard_normal((per_blob, dim)) for c in centers])


# --- greedy -------------------------------------------------------------------------------------


def test_greedy_most_uncertain_first_with_stable_ties():
    u = np.array([0.1, 0.9, 0.5, 0.9, 0.0])
    result = Greedy().order(u)
    assert isinstance(result, QueueOrder)
    assert result.order.tolist() == [1, 3, 2, 0, 4]  # the two 0.9 keep pool order
    assert result.order.dtype == np.int64
    assert result.cluster is None


def test_queue_order_is_frozen():
    result = Greedy().order(np.array([0.2, 0.1]))
    with pytest.raises(AttributeError):
        result.order = np.array([0, 1])  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_every_queue_handles_an_empty_pool(name):
    result = get_queue(name).order(np.array([]), features=np.empty((0, 3)), random_state=0)
    assert result.order.shape == (0,)


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_every_queue_returns_a_permutation(name):
    rng = np.random.default_rng(1)
    u = rng.random(37)
    u[:5] = 0.0  # zeros and ties must not break anything
    u[5:8] = 1.0
    result = get_queue(name).order(u, features=rng.random((37, 4)), random_state=3)
    assert _is_permutation(result.order, 37)


@pytest.mark.parametrize("bad", [np.array([[0.1, 0.2]]), np.array([0.1, np.nan]), np.array([0.5, 1.5]), [-0.2]])
def test_queues_reject_bad_uncertainty(bad):
    with pytest.raises(ValueError, match="uncertainty"):
        Greedy().order(bad)


# --- exploration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fraction,n,expected",
    [
        (0.1, 20, [5, 15]),  # k = 2, spacing 10: floor(0.5 * 10), floor(1.5 * 10)
        (0.25, 10, [1, 5, 8]),  # k = floor(2.5 + 0.5) = 3, spacing 10/3: floor(1.67), floor(5), floor(8.33)
        (0.4, 5, [1, 3]),  # k = 2, spacing 2.5: floor(1.25), floor(3.75)
        (0.1, 4, []),  # 0.4 rounds to no random pick
        (0.0, 10, []),
        (1.0, 3, [0, 1, 2]),
    ],
)
def test_exploration_random_positions_hand_values(fraction, n, expected):
    assert Exploration(fraction).random_positions(n).tolist() == expected


def test_exploration_greedy_slots_take_the_most_uncertain_remaining_task():
    n, fraction = 100, 0.1
    u = np.linspace(1.0, 0.0, n)  # greedy order is 0, 1, ..., n-1, so index == greedy rank
    order = Exploration(fraction).order(u, random_state=7).order
    assert _is_permutation(order, n)
    slots = set(Exploration(fraction).random_positions(n).tolist())
    assert len(slots) == round(fraction * n) == 10
    for p in range(n):
        if p not in slots:
            assert order[p] == order[p:].min(), f"greedy slot {p} did not take the best remaining task"
    # Only random slots may deviate from greedy, and with 10 draws some certainly do.
    deviating = {p for p in range(n) if order[p] != order[p:].min()}
    assert deviating <= slots
    assert len(deviating) >= 5


def test_exploration_draws_uniformly_from_the_rest_of_the_pool():
    # N = 10, fraction 0.1: one random slot, at position floor(0.5 * 10) = 5. Positions 0-4 are
    # greedy (tasks 0-4); position 5 is uniform over the 5 tasks left; 6-9 serve the rest in order.
    u = np.linspace(0.9, 0.0, 10)
    seen = np.zeros(10, dtype=int)
    for seed in range(2000):
        order = Exploration(0.1).order(u, random_state=seed).order
        assert order[:5].tolist() == [0, 1, 2, 3, 4]
        rest = order[6:].tolist()
        assert rest == sorted(rest)
        seen[order[5]] += 1
    assert seen[:5].sum() == 0
    np.testing.assert_allclose(seen[5:] / 2000, 0.2, atol=0.04)


def test_exploration_is_deterministic_under_a_seed():
    u = np.random.default_rng(0).random(50)
    a = Exploration(0.3).order(u, random_state=11).order
    b = Exploration(0.3).order(u, random_state=11).order
    c = Exploration(0.3).order(u, random_state=12).order
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_exploration_extremes():
    u = np.random.default_rng(0).random(30)
    assert np.array_equal(Exploration(0.0).order(u, random_state=0).order, Greedy().order(u).order)
    full = Exploration(1.0).order(u, random_state=0).order
    assert _is_permutation(full, 30)
    assert not np.array_equal(full, Greedy().order(u).order)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "0.1", True])
def test_exploration_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        Exploration(fraction)


# --- power sampling -----------------------------------------------------------------------------


def test_power_sampling_deterministic_under_a_seed():
    u = np.random.default_rng(0).random(40)
    a = PowerSampling().order(u, random_state=5).order
    assert np.array_equal(a, PowerSampling().order(u, random_state=5).order)
    assert not np.array_equal(a, PowerSampling().order(u, random_state=6).order)
    assert _is_permutation(a, 40)


def test_power_sampling_with_huge_beta_is_greedy():
    u = np.random.default_rng(3).permutation(np.linspace(0.05, 1.0, 20))  # log-gaps >= 0.05 >> noise/beta
    greedy = Greedy().order(u).order
    for seed in range(5):
        assert np.array_equal(PowerSampling(beta=1e6).order(u, random_state=seed).order, greedy)
    assert np.array_equal(PowerSampling(beta=math.inf).order(u).order, greedy)


def test_power_sampling_handles_zero_uncertainty():
    u = np.array([0.0, 0.5, 0.0, 1.0, 0.0])
    orders = {tuple(PowerSampling(beta=1e6).order(u, random_state=s).order.tolist()) for s in range(30)}
    for order in orders:
        assert order[:2] == (3, 1)  # the non-zero tasks come first ...
        assert sorted(order[2:]) == [0, 2, 4]
    assert len(orders) > 1  # ... and the zeros are shuffled rather than tied at -inf


def test_power_sampling_first_pick_is_proportional_to_u_power_beta():
    # Gumbel-top-1 picks i with probability u_i^beta / sum_j u_j^beta.
    u = np.array([0.75, 0.25])
    first = [PowerSampling(beta=1.0).order(u, random_state=s).order[0] for s in range(3000)]
    assert np.mean(np.asarray(first) == 0) == pytest.approx(0.75, abs=0.04)
    # beta = 2: 0.5625 / (0.5625 + 0.0625) = 0.9
    first = [PowerSampling(beta=2.0).order(u, random_state=s).order[0] for s in range(3000)]
    assert np.mean(np.asarray(first) == 0) == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), None])
def test_power_sampling_rejects_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        PowerSampling(beta)


# --- cluster-aware ------------------------------------------------------------------------------


def test_cluster_default_n_clusters_rule():
    q = ClusterAware()
    # min(20, max(2, round(sqrt(N / 2)))), capped at N
    assert [q.resolve_n_clusters(n) for n in (0, 1, 2, 12, 100, 800, 10_000)] == [0, 1, 2, 2, 7, 20, 20]
    assert ClusterAware(n_clusters=5).resolve_n_clusters(3) == 3


def test_cluster_round_robin_on_three_blobs():
    x = _blobs()
    # Blob A holds the 4 most uncertain tasks, then B, then C: greedy would serve A, A, A, A, B, ...
    u = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.0])
    result = ClusterAware(n_clusters=3, random_state=0).order(u, x)
    assert result.order.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    # Clusters numbered by their most uncertain task: A = 0, B = 1, C = 2 (in pool order).
    assert result.cluster.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert result.cluster.dtype == np.int64


def test_cluster_rounds_follow_each_clusters_best_task_in_shuffled_pool():
    x = _blobs()
    u = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.0])
    # Make blob C the one holding the single most uncertain task, B the second.
    u = u[[8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]]  # C: 0.9..0.6, B: 0.5..0.2, A: 0.15..0.0
    perm = np.random.default_rng(4).permutation(12)
    result = ClusterAware(n_clusters=3, random_state=1).order(u[perm], x[perm])
    served = perm[result.order]  # back to the original row numbers
    assert served.tolist() == [8, 4, 0, 9, 5, 1, 10, 6, 2, 11, 7, 3]
    cluster_by_row = np.empty(12, dtype=int)
    cluster_by_row[perm] = result.cluster
    assert cluster_by_row.tolist() == [2] * 4 + [1] * 4 + [0] * 4


def test_cluster_uneven_clusters_drop_out_of_later_rounds():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 0.0]])
    u = np.array([0.9, 0.8, 0.7, 0.1])
    result = ClusterAware(n_clusters=2, random_state=0).order(u, x)
    assert result.order.tolist() == [0, 3, 1, 2]
    assert result.cluster.tolist() == [0, 0, 0, 1]


def test_cluster_sparse_tfidf_like_features_take_the_svd_path():
    # 3 "topics" of 30 rows, each using its own block of 200 columns: 90 x 600 sparse (> max_dim both ways).
    rng = np.random.default_rng(0)
    rows = []
    for topic in range(3):
        block = sp.random(30, 200, density=0.1, random_state=topic, format="csr")
        blocks = [sp.csr_matrix((30, 200))] * 3
        blocks[topic] = block + sp.csr_matrix(np.full((30, 200), 0.01))
        rows.append(sp.hstack(blocks, format="csr"))
    x = sp.vstack(rows, format="csr")
    assert x.shape[0] > ClusterAware.max_dim and x.shape[1] > ClusterAware.max_dim
    u = rng.random(90)
    result = ClusterAware(n_clusters=3, random_state=0).order(u, x)
    assert _is_permutation(result.order, 90)
    topics = np.repeat(np.arange(3), 30)
    for topic in range(3):  # each topic is exactly one cluster
        assert np.unique(result.cluster[topics == topic]).size == 1
    assert np.unique(result.cluster).size == 3
    # The first round serves one task of every topic, the most uncertain of each.
    head = result.order[:3]
    assert sorted(topics[head].tolist()) == [0, 1, 2]
    for i in head:
        assert u[i] == u[topics == topics[i]].max()


def test_cluster_small_sparse_and_wide_dense_inputs():
    x = _blobs(per_blob=20, dim=100, seed=2)  # dense, 60 x 100: PCA path
    u = np.random.default_rng(0).random(60)
    dense = ClusterAware(n_clusters=3, random_state=0).order(u, x.astype(np.float32))
    blob = np.repeat(np.arange(3), 20)
    assert all(np.unique(dense.cluster[blob == b]).size == 1 for b in range(3))
    small = _blobs()  # 12 rows: sparse but below max_dim, no reduction
    res = ClusterAware(n_clusters=3, random_state=0).order(np.linspace(0.9, 0.0, 12), sp.csr_matrix(small + 1.0))
    assert _is_permutation(res.order, 12)


def test_cluster_fewer_tasks_or_distinct_rows_than_clusters():
    x = _blobs()[:3]
    u = np.array([0.2, 0.9, 0.5])
    result = ClusterAware(n_clusters=5, random_state=0).order(u, x)
    # 3 tasks, each its own cluster: one round, clusters in order of uncertainty -> greedy.
    assert result.order.tolist() == [1, 2, 0]
    assert result.cluster.tolist() == [2, 0, 1]
    dupes = ClusterAware(n_clusters=3, random_state=0).order(np.linspace(1, 0, 6), np.ones((6, 2)))
    assert _is_permutation(dupes.order, 6)
    single = ClusterAware(random_state=0).order(np.array([0.3]), np.ones((1, 2)))
    assert single.order.tolist() == [0] and single.cluster.tolist() == [0]


def test_cluster_is_deterministic_and_call_seed_wins():
    x = np.random.default_rng(0).random((80, 5))
    u = np.random.default_rng(1).random(80)
    a = ClusterAware(random_state=3).order(u, x)
    b = ClusterAware(random_state=3).order(u, x)
    assert np.array_equal(a.order, b.order) and np.array_equal(a.cluster, b.cluster)
    c = ClusterAware(random_state=99).order(u, x, random_state=3)
    assert np.array_equal(a.order, c.order)


def test_cluster_requires_matching_features():
    with pytest.raises(ValueError, match="features"):
        ClusterAware().order(np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="features"):
        ClusterAware().order(np.array([0.1, 0.2]), np.ones((3, 2)))


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_cluster_rejects_bad_n_clusters(k):
    with pytest.raises(ValueError, match="n_clusters"):
        ClusterAware(n_clusters=k)


# --- registry -----------------------------------------------------------------------------------


def test_registry():
    assert set(QUEUES) == {"greedy", "explore", "power", "cluster"}
    assert DEFAULT_QUEUE == "greedy"
    assert isinstance(get_queue(), Greedy)
    for name, cls in QUEUES.items():
        assert cls.name == name
        assert isinstance(get_queue(name), cls)
    assert get_queue("explore", fraction=0.3).fraction == 0.3
    assert get_queue("power", beta=2).beta == 2.0
    q = get_queue("cluster", n_clusters=4, random_state=1)
    assert q.get_params() == {"n_clusters": 4, "random_state": 1}
    assert repr(q) == "ClusterAware(n_clusters=4, random_state=1)"


def test_get_queue_errors():
    with pytest.raises(ValueError, match="cluster, explore, greedy, power"):
        get_queue("nope")
    with pytest.raises(ValueError, match="valid parameters: fraction"):
        get_queue("explore", beta=1.0)
    with pytest.raises(ValueError, match="none"):
        get_queue("greedy", fraction=0.1)
    with pytest.raises(ValueError, match="beta"):
        get_queue("power", beta=-1)


# --- scores_for_order ---------------------------------------------------------------------------


def _check_scores(scores: np.ndarray, order: np.ndarray) -> None:
    along = scores[order]
    assert np.all(np.diff(along) > 0), "scores must strictly increase along the queue"
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    # Label Studio's ascending sort (any tie-breaking) reproduces the order.
    assert np.array_equal(np.argsort(scores, kind="stable"), order)


def test_scores_for_order_hand_values():
    confidence = np.array([0.3, 0.9, 0.1, 0.6])
    order = np.array([1, 0, 3, 2])
    scores = scores_for_order(confidence, order)
    # sorted confidences 0.1, 0.3, 0.6, 0.9 dealt to tasks 1, 0, 3, 2
    assert scores.tolist() == [0.3, 0.1, 0.9, 0.6]
    _check_scores(scores, order)
    assert sorted(scores.tolist()) == sorted(confidence.tolist())  # same multiset


def test_scores_for_greedy_order_are_the_confidences():
    u = np.random.default_rng(0).random(50)
    confidence = 1.0 - u
    order = Greedy().order(u).order
    np.testing.assert_array_equal(scores_for_order(confidence, order), confidence)


def test_scores_for_order_random_orders_keep_the_multiset():
    rng = np.random.default_rng(2)
    confidence = rng.random(200)
    for name in ("explore", "power"):
        order = get_queue(name).order(1.0 - confidence, random_state=1).order
        scores = scores_for_order(confidence, order)
        _check_scores(scores, order)
        np.testing.assert_array_equal(np.sort(scores), np.sort(confidence))


def test_scores_for_order_breaks_ties_with_tiny_nudges():
    confidence = np.array([0.5, 0.5, 0.5, 0.2])
    order = np.array([3, 2, 1, 0])
    scores = scores_for_order(confidence, order)
    _check_scores(scores, order)
    up = np.nextafter(0.5, 1.0)
    assert scores.tolist() == [np.nextafter(up, 1.0), up, 0.5, 0.2]


def test_scores_for_order_ties_at_the_bounds_stay_in_range():
    order = np.array([2, 0, 1, 3])
    zeros = scores_for_order(np.zeros(4), order)
    _check_scores(zeros, order)
    tiny = np.nextafter(0.0, 1.0)  # smallest positive float
    assert zeros[order].tolist() == [0.0, tiny, np.nextafter(tiny, 1.0), np.nextafter(np.nextafter(tiny, 1.0), 1.0)]
    # Confidence 1.0 cannot be nudged up: the top stays at 1 and the others step down.
    ones = scores_for_order(np.ones(4), order)
    _check_scores(ones, order)
    below = np.nextafter(1.0, 0.0)
    expected = [np.nextafter(np.nextafter(below, 0.0), 0.0), np.nextafter(below, 0.0), below, 1.0]
    assert ones[order].tolist() == expected


def test_scores_for_order_empty_and_single():
    assert scores_for_order(np.array([]), np.array([], dtype=int)).shape == (0,)
    assert scores_for_order(np.array([0.7]), np.array([0])).tolist() == [0.7]


@pytest.mark.parametrize(
    "confidence,order",
    [
        ([0.1, 0.2], [0, 0]),  # not a permutation
        ([0.1, 0.2], [0, 1, 2]),  # wrong length
        ([0.1, 0.2], [0.0, 1.0]),  # not integers
        ([0.1, 1.2], [0, 1]),  # confidence out of range
        ([0.1, np.nan], [0, 1]),
    ],
)
def test_scores_for_order_validation(confidence, order):
    with pytest.raises(ValueError):
        scores_for_order(np.asarray(confidence), np.asarray(order))
