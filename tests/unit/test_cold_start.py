"""Cold start in the kernel: representative tasks first while labels are few, the plain queue after.

Also the replay's wiring of it (`margin+cluster:warmup=3`) and the figures `labelloop simulate`
reports about it: learning-curve area against random, wins/ties/losses, labels to 90 % of the
full-pool accuracy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.cli.main import main
from model import simulation
from model.estimators import make_estimator
from model.queue import blend_orders, cold_start_share, representative_order
from model.scoring import Scored, order, score
from tests.support.corpus import CLASSES, LABELS, TEXTS

CENTRES = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])


def _scored(uncertainty: np.ndarray, features: np.ndarray | None, n_classes: int = 3) -> Scored:
    """A scored pool with the given uncertainty and features (probabilities only set the class count)."""
    u = np.asarray(uncertainty, dtype=np.float64)
    n = u.shape[0]
    probs = np.full((n, n_classes), 1.0 / n_classes)
    return Scored(probs=probs, labels=[["a"]] * n, uncertainty=u, confidence=1.0 - u,
                  decision=np.full(n, 0.5), features=features)


def _blobs_with_centres(per_blob: int = 15, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three far-apart blobs; row ``b * per_blob`` of blob b sits exactly on its centre.

    The centre rows get the *lowest* uncertainty of the pool, so any uncertainty-led order serves
    them last, and a typicality-led one first.
    """
    rng = np.random.default_rng(seed)
    rows, blob = [], []
    for b, centre in enumerate(CENTRES):
        ring = centre + rng.normal(scale=1.0, size=(per_blob - 1, 2))
        rows.append(np.vstack([centre, ring - ring.mean(axis=0) + centre]))  # keeps the mean on the centre row
        blob += [b] * per_blob
    x = np.vstack(rows)
    u = rng.uniform(0.3, 0.9, size=x.shape[0])
    centre_rows = np.arange(3) * per_blob
    u[centre_rows] = 0.05
    return x, u, np.asarray(blob)


# ----------------------------------------------------------------------------- the share


@pytest.mark.parametrize(("labels_per_class", "warmup", "share"), [
    (0.0, 3.0, 1.0), (1.5, 3.0, 0.5), (3.0, 3.0, 0.0), (7.0, 3.0, 0.0), (0.0, 0.0, 0.0), (None, 0.0, 0.0),
])
def test_share_falls_linearly_from_one_to_zero_over_the_warmup(labels_per_class, warmup, share) -> None:
    assert cold_start_share(labels_per_class, warmup) == pytest.approx(share)


def test_share_needs_the_label_count_when_warming_up() -> None:
    with pytest.raises(ValueError, match="labels_per_class"):
        cold_start_share(None, 3.0)
    with pytest.raises(ValueError, match="labels_per_class"):
        cold_start_share(-1.0, 3.0)


def test_blend_takes_evenly_spread_positions_from_the_lead_queue() -> None:
    # share 0.5 of 4 positions: Exploration's slots 1 and 3 follow `lead`, 0 and 2 follow `rest`.
    assert blend_orders(np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0]), 0.5).tolist() == [3, 0, 2, 1]
    lead, rest = np.arange(10), np.arange(10)[::-1]
    assert blend_orders(lead, rest, 1.0).tolist() == lead.tolist()
    assert blend_orders(lead, rest, 0.0).tolist() == rest.tolist()
    merged = blend_orders(lead, rest, 0.3)
    assert sorted(merged.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="same pool"):
        blend_orders(np.arange(3), np.arange(4), 0.5)


# ----------------------------------------------------------------------------- the head of the queue


def test_no_labels_head_is_the_typical_task_of_each_cluster_not_the_most_uncertain() -> None:
    x, u, _ = _blobs_with_centres()
    scored = _scored(u, x, n_classes=3)
    # warmup 1 label per class x 3 classes = 3 clusters: one per blob.
    cold = order("greedy", scored, random_state=0, warmup=1.0, labels_per_class=0.0)
    assert sorted(cold.order[:3].tolist()) == [0, 15, 30]  # the centre rows
    plain = order("greedy", scored, random_state=0)
    assert not set(plain.order[:3].tolist()) & {0, 15, 30}  # uncertainty alone serves them last
    assert plain.order[-3:].tolist() == [0, 15, 30]


def test_no_labels_head_covers_every_blob_and_skips_outliers() -> None:
    x, u, blob = _blobs_with_centres(per_blob=20)
    outliers = np.array([[60.0, 60.0], [-60.0, 40.0], [45.0, -70.0]])
    x = np.vstack([x, outliers])
    u = np.concatenate([u, [0.99, 0.98, 0.97]])  # the most uncertain tasks of the pool
    blob = np.concatenate([blob, [-1, -1, -1]])
    scored = _scored(u, x, n_classes=3)
    for queue in ("greedy", "cluster"):
        cold = order(queue, scored, random_state=0, warmup=3.0, labels_per_class=0.0)  # 9 clusters
        head = cold.order[:6]
        assert set(blob[head].tolist()) == {0, 1, 2}, queue
        assert -1 not in blob[head], queue
    assert blob[order("greedy", scored).order[:3]].tolist() == [-1, -1, -1]


def test_the_cluster_queue_head_with_few_labels_is_a_blend() -> None:
    x, u, _ = _blobs_with_centres()
    scored = _scored(u, x, n_classes=3)
    half = order("greedy", scored, random_state=0, warmup=2.0, labels_per_class=1.0)  # share 0.5
    plain = order("greedy", scored, random_state=0).order
    typical = representative_order(u, x, n_clusters=6, random_state=0).order
    assert half.order.tolist() == blend_orders(typical, plain, 0.5).tolist()
    assert half.order.tolist() != plain.tolist()


@pytest.fixture(scope="module")
def corpus_scored() -> Scored:
    model = make_estimator("margin", "text", CLASSES, False, random_state=0).fit(TEXTS, LABELS)
    return score(model, "margin", TEXTS, with_features=True)


@pytest.mark.parametrize("queue", ["greedy", "cluster", "explore"])
@pytest.mark.parametrize("labels_per_class", [3.0, 4.0, 50.0])
def test_enough_labels_gives_exactly_the_plain_queue(corpus_scored, queue, labels_per_class) -> None:
    plain = order(queue, corpus_scored, random_state=5)
    warm = order(queue, corpus_scored, random_state=5, warmup=3.0, labels_per_class=labels_per_class)
    assert warm.order.tolist() == plain.order.tolist()
    assert np.array_equal(warm.scores, plain.scores)


def test_cold_start_is_deterministic_per_random_state(corpus_scored) -> None:
    runs = [order("cluster", corpus_scored, random_state=11, warmup=3.0, labels_per_class=0.5).order.tolist()
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert sorted(runs[0]) == list(range(len(TEXTS)))


def test_reserved_stream_stays_random_during_the_cold_start(corpus_scored) -> None:
    reserved = np.zeros(len(TEXTS), dtype=bool)
    reserved[[1, 4]] = True
    warm = order("cluster", corpus_scored, random_state=2, reserved=reserved, warmup=3.0, labels_per_class=0.0)
    plain = order("cluster", corpus_scored, random_state=2, reserved=reserved)
    # The reserved items take the same random positions; only the strategy's items are re-ordered.
    assert np.flatnonzero(reserved[warm.order]).tolist() == np.flatnonzero(reserved[plain.order]).tolist()
    assert sorted(warm.order.tolist()) == list(range(len(TEXTS)))


# ----------------------------------------------------------------------------- edge cases


def test_pool_smaller_than_the_clusters_is_one_task_per_cluster() -> None:
    u = np.array([0.2, 0.9, 0.5, 0.7])
    x = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    scored = _scored(u, x, n_classes=5)  # 3 x 5 = 15 clusters asked, 4 tasks
    cold = order("greedy", scored, random_state=0, warmup=3.0, labels_per_class=0.0)
    assert cold.order.tolist() == [1, 3, 2, 0]  # singletons: most uncertainty mass first = greedy
    one = order("greedy", _scored(np.array([0.4]), np.zeros((1, 2))), warmup=3.0, labels_per_class=0.0)
    assert one.order.tolist() == [0]
    empty = order("greedy", _scored(np.zeros(0), np.zeros((0, 2))), warmup=3.0, labels_per_class=0.0)
    assert empty.order.tolist() == []


def test_identical_rows_fewer_than_clusters() -> None:
    u = np.array([0.1, 0.8, 0.3, 0.6, 0.2])
    result = representative_order(u, np.ones((5, 3)), n_clusters=4, random_state=0)
    assert sorted(result.order.tolist()) == list(range(5))


def test_without_features_the_cold_start_is_skipped() -> None:
    u = np.array([0.2, 0.9, 0.5])
    scored = _scored(u, None)
    assert order("greedy", scored, warmup=3.0, labels_per_class=0.0).order.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="needs features"):
        representative_order(u, None, n_clusters=2)
    with pytest.raises(ValueError, match="shape"):
        representative_order(u, np.zeros((2, 2)), n_clusters=2)


def test_sparse_features_take_the_svd_path() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    topics = np.repeat(np.arange(3), 40)
    dense = np.zeros((120, 300))
    for i, t in enumerate(topics):
        dense[i, t * 100 + rng.choice(100, size=8, replace=False)] = 1.0
    u = rng.uniform(0.2, 0.8, size=120)
    result = representative_order(u, sp.csr_matrix(dense), n_clusters=3, random_state=0)
    assert set(topics[result.order[:3]].tolist()) == {0, 1, 2}


# ----------------------------------------------------------------------------- the replay


def test_parse_arm_reads_warmup_as_the_kernels_cold_start() -> None:
    arm = simulation.parse_arm("margin+cluster:warmup=3")
    assert (arm.strategy, arm.queue, arm.queue_params, arm.warmup) == ("margin", "cluster", {}, 3.0)
    arm = simulation.parse_arm("entropy+explore:fraction=0.2:warmup=1.5")
    assert arm.queue_params == {"fraction": 0.2} and arm.warmup == 1.5
    assert simulation.parse_arm("margin+cluster").warmup == 0.0
    for bad in ("margin+cluster:warmup=-1", "margin+cluster:warmup=x", "margin+cluster:warmup=true"):
        with pytest.raises(ValueError, match="warmup"):
            simulation.parse_arm(bad)


def test_replay_passes_the_label_count_to_the_kernel(monkeypatch) -> None:
    calls = []
    real_order = simulation.order

    def spy(*args, **kwargs):
        calls.append((kwargs["warmup"], kwargs["labels_per_class"], args[1].features is not None))
        return real_order(*args, **kwargs)

    monkeypatch.setattr(simulation, "order", spy)
    texts = TEXTS * 3
    labels = LABELS * 3
    curve = simulation.run_curve(texts, labels, TEXTS, LABELS, CLASSES, "margin+greedy:warmup=2",
                                 initial=4, batch_size=4, budget=12, seed=0, modality="text")
    assert curve["labels"] == [4, 8, 12]
    # 4 classes configured: 4 labels = 1 per class, then 2; greedy needs no features, the cold start does.
    assert calls == [(2.0, 1.0, True), (2.0, 2.0, True)]


# ----------------------------------------------------------------------------- the figures


def test_curve_area_is_the_mean_accuracy_over_the_label_axis() -> None:
    assert simulation.curve_area([10, 20, 40], [0.5, 0.7, 0.7]) == pytest.approx((0.6 * 10 + 0.7 * 20) / 30)
    assert simulation.curve_area([10], [0.4]) == 0.4
    with pytest.raises(ValueError):
        simulation.curve_area([10, 20], [0.5])


def test_area_differences_are_paired_by_seed_on_shared_label_counts() -> None:
    arm = simulation.aggregate([{"labels": [10, 20], "accuracy": [0.5, 0.9]},
                                {"labels": [10, 20], "accuracy": [0.5, 0.5]}])
    control = simulation.aggregate([{"labels": [10, 20, 30], "accuracy": [0.5, 0.7, 1.0]},
                                    {"labels": [10, 20, 30], "accuracy": [0.5, 0.5, 1.0]}])
    assert simulation.area_differences(arm, control) == pytest.approx([0.1, 0.0])
    record = simulation.wins_ties_losses([0.1, 0.0, -0.004, -0.02], tie=0.005)
    assert record == {"wins": 1, "ties": 2, "losses": 1, "tie_below": 0.005}
    summary = simulation.summarise({"a": arm, "random": control}, [], [20], full_pool=0.75, full_share=0.9)
    assert summary["a"]["area_vs_random"]["mean"] == pytest.approx(0.05)
    assert summary["a"]["wins_ties_losses"]["wins"] == 1
    # 0.9 x 0.75 = 0.675: the arm's mean curve (0.5, 0.7) gets there at 20, random's (0.5, 0.6, 1.0) at 30.
    assert summary["a"]["labels_to_full_share"] == 20 and summary["random"]["labels_to_full_share"] == 30


def test_simulate_reports_area_wins_and_labels_to_full_pool_share(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    words = {"billing": ["invoice", "refund", "charge", "payment"], "shipping": ["parcel", "courier", "tracking"],
             "account": ["password", "login", "username", "profile"]}
    rows = [{"text": " ".join([*rng.choice(vocab, size=2), "please", "help", "today"]), "label": label}
            for label, vocab in words.items() for _ in range(15)]
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "r.json"
    code = main(["simulate", "--data", str(data), "--strategies", "margin+cluster:warmup=2", "--initial", "6",
                 "--batch-size", "6", "--budget", "18", "--seeds", "2", "--json", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "area vs random" in printed and "W/T/L" in printed and "labels to 90% of full" in printed
    report = json.loads(out.read_text())
    full = report["config"]["full_pool_accuracy"]
    assert len(full["per_seed"]) == 2 and full["share"] == 0.9 and 0 < full["mean"] <= 1
    arm = report["strategies"]["margin+cluster:warmup=2"]
    assert arm["warmup"] == 2.0 and arm["queue"] == "cluster"
    assert len(arm["area_vs_random"]["per_seed"]) == 2
    assert sum(arm["wins_ties_losses"][k] for k in ("wins", "ties", "losses")) == 2
    assert "labels_to_full_share" in arm
