"""`labelloop simulate` end to end (digits, JSONL text, CSV images, Label Studio export) and its helpers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from backend.cli.main import main
from model import simulation

# ----------------------------------------------------------------------------- end to end


def test_digits_margin_beats_random_at_100_labels(tmp_path, capsys) -> None:
    plot, out = tmp_path / "curve.png", tmp_path / "curve.json"
    code = main([
        "simulate", "--dataset", "digits", "--strategies", "margin", "--queue", "greedy", "--initial", "10",
        "--batch-size", "10",
        "--budget", "100", "--seeds", "5", "--targets", "0.9,0.99", "--plot", str(plot), "--json", str(out),
        "--no-progress",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "margin" in printed and "random" in printed and "saving @90%" in printed

    report = json.loads(out.read_text())
    config = report["config"]
    assert config["dataset"] == "digits" and config["seeds"] == [0, 1, 2, 3, 4]
    assert (config["initial"], config["batch_size"], config["budget"]) == (10, 10, 100)
    assert config["n_pool"] + config["n_test"] == 1797 and config["n_test"] == 540
    assert set(report["strategies"]) == {"margin", "random"}  # random added as the control arm
    for entry in report["strategies"].values():
        assert entry["labels"] == list(range(10, 101, 10))  # same axis for every arm
        assert len(entry["accuracy_mean"]) == len(entry["accuracy_std"]) == 10
        assert len(entry["accuracy_per_seed"]) == 5
        assert all(0.0 <= a <= 1.0 for a in entry["accuracy_mean"])
        assert set(entry["labels_to_reach"]) == {"0.90", "0.99"}
        assert entry["labels_to_reach"]["0.99"] is None  # never reached in 100 labels: null
        assert set(entry["accuracy_at"]) == {"30", "50", "100"}
    margin, random = report["strategies"]["margin"], report["strategies"]["random"]
    assert margin["accuracy_mean"][-1] > random["accuracy_mean"][-1]  # the acceptance check
    assert margin["accuracy_at"]["100"] == margin["accuracy_mean"][-1]
    assert margin["queue"] == "greedy" and random["queue"] is None
    reached = margin["labels_to_reach"]["0.90"]
    assert reached is not None and margin["accuracy_mean"][margin["labels"].index(reached)] >= 0.9
    # The initial labels are shared: every arm's first point is the same model on the same data.
    assert margin["accuracy_per_seed"][0][0] == random["accuracy_per_seed"][0][0]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TOPICS = {
    "billing": ["invoice", "refund", "charge", "payment", "card", "price"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "package", "arrived"],
    "account": ["password", "login", "email", "username", "profile", "locked"],
}


def _texts(n_per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    filler = ["please", "help", "my", "the", "is", "not", "today", "again", "why", "with"]
    rows = []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            tokens = list(rng.choice(words, size=2)) + list(rng.choice(filler, size=4))
            rng.shuffle(tokens)
            rows.append((" ".join(tokens), label))
    return rows


def test_jsonl_text_dataset(tmp_path, capsys) -> None:
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in _texts(20)))
    out = tmp_path / "r.json"
    code = main(["simulate", "--data", str(data), "--strategies", "entropy+explore:fraction=0.5,margin",
                 "--initial", "6", "--batch-size", "6", "--budget", "24", "--seeds", "2", "--json", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["config"]["modality"] == "text" and report["config"]["classes"] == sorted(TOPICS)
    assert list(report["strategies"]) == ["entropy+explore:fraction=0.5", "margin", "random"]
    explore = report["strategies"]["entropy+explore:fraction=0.5"]
    assert explore["strategy"] == "entropy" and explore["queue"] == "explore"
    assert explore["queue_params"] == {"fraction": 0.5}
    assert explore["labels"] == [6, 12, 18, 24]
    assert report["strategies"]["margin"]["accuracy_mean"][-1] > 0.6  # keywords are learnable


def test_csv_image_paths(tmp_path, capsys) -> None:
    rows = []
    for i in range(30):
        label = "dark" if i % 2 else "light"
        value = 30 + i if label == "dark" else 200 + i
        Image.new("RGB", (6, 5), (value, value, value)).save(tmp_path / f"img{i}.png")
        rows.append({"image": f"img{i}.png", "label": label})
    data = tmp_path / "images.csv"
    with data.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "label"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "r.json"
    assert main(["simulate", "--data", str(data), "--initial", "4", "--batch-size", "4", "--budget", "12",
                 "--seeds", "1", "--json", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["config"]["modality"] == "image"
    assert report["strategies"]["margin"]["accuracy_mean"][-1] == 1.0


def _export(n_per_class: int = 12) -> list[dict]:
    tasks = []
    for i, (text, label) in enumerate(_texts(n_per_class, seed=1), 1):
        result = [{"from_name": "topic", "to_name": "body", "type": "choices", "value": {"choices": [label]}}]
        tasks.append({"id": i, "data": {"body": text, "meta": "x"},
                      "annotations": [{"id": 10 * i, "result": result, "updated_at": "2026-01-01"}]})
    # Not usable: unlabelled, only a cancelled annotation.
    tasks.append({"id": 1000, "data": {"body": "unlabelled", "meta": "x"}, "annotations": []})
    tasks.append({"id": 1001, "data": {"body": "skipped", "meta": "x"},
                  "annotations": [{"id": 9, "was_cancelled": True, "result": []}]})
    return tasks


@pytest.mark.parametrize("with_config", [False, True])
def test_label_studio_export(tmp_path, capsys, with_config) -> None:
    data = tmp_path / "export.json"
    data.write_text(json.dumps(_export()))
    args = ["simulate", "--data", str(data), "--initial", "6", "--batch-size", "6", "--budget", "18",
            "--seeds", "1", "--json", str(tmp_path / "r.json"), "--no-progress"]
    if with_config:
        config = tmp_path / "config.xml"
        config.write_text('<View><Text name="body" value="$body"/><Choices name="topic" toName="body">'
                          + "".join(f'<Choice value="{c}"/>' for c in [*TOPICS, "other"]) + "</Choices></View>")
        args += ["--label-config", str(config)]
    assert main(args) == 0
    assert "2 task(s) without a usable annotation skipped" in capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["config"]["n_rows"] == 36 and report["config"]["modality"] == "text"
    # The config's label set (with the never-used "other") wins over the labels seen in annotations.
    expected = [*TOPICS, "other"] if with_config else sorted(TOPICS)
    assert report["config"]["classes"] == expected


def test_label_studio_export_refuses_multi_label(tmp_path, capsys) -> None:
    tasks = _export(3)
    tasks[0]["annotations"][0]["result"][0]["value"]["choices"] = ["billing", "account"]
    data = tmp_path / "export.json"
    data.write_text(json.dumps(tasks))
    assert main(["simulate", "--data", str(data), "--no-progress"]) == 2
    assert "multi-label" in capsys.readouterr().err


def test_needs_a_data_source(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--dataset" in err and "--data" in err


def test_bad_strategy_is_a_clear_error(capsys) -> None:
    assert main(["simulate", "--dataset", "digits", "--strategies", "vibes", "--no-progress"]) == 2
    assert "unknown strategy 'vibes'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- helpers


def test_parse_arm() -> None:
    arm = simulation.parse_arm("margin")
    assert (arm.strategy, arm.queue, arm.estimator_strategy) == ("margin", "greedy", "margin")
    assert simulation.parse_arm("margin", default_queue="cluster").queue == "cluster"
    arm = simulation.parse_arm("entropy+power:beta=2")
    assert (arm.strategy, arm.queue, arm.queue_params) == ("entropy", "power", {"beta": 2})
    control = simulation.parse_arm("random")
    assert control.is_random and control.estimator_strategy == simulation.CONTROL_ESTIMATOR_STRATEGY
    assert simulation.parse_arm("random@entropy").estimator_strategy == "entropy"
    for bad in ("margin+nope", "random+cluster", "margin@entropy", "margin+power:beta", "Margin"):
        with pytest.raises(ValueError):
            simulation.parse_arm(bad)


def test_grid_reach_and_summary() -> None:
    assert simulation.label_grid(10, 10, 45, 1000) == [10, 20, 30, 40, 45]
    assert simulation.label_grid(10, 10, 300, 25) == [10, 20, 25]
    labels = [10, 20, 30, 40]
    assert simulation.labels_to_reach(labels, [0.5, 0.9, 0.85, 0.95], 0.9) == 20
    assert simulation.labels_to_reach(labels, [0.5, 0.9, 0.85, 0.95], 0.96) is None
    assert simulation.accuracy_at(labels, [0.5, 0.6, 0.7, 0.8], 35) == 0.7
    assert simulation.target_key(0.9) == "0.90" and simulation.target_key(0.925) == "0.925"

    results = {
        "margin": simulation.aggregate([{"labels": labels, "accuracy": [0.5, 0.9, 0.95, 0.96]}] * 2),
        "random": simulation.aggregate([{"labels": [*labels, 50], "accuracy": [0.5, 0.7, 0.9, 0.92, 0.94]}] * 2),
    }
    summary = simulation.summarise(results, [0.9, 0.95], [30], gap_from=30)
    assert summary["margin"]["labels_to_reach"] == {"0.90": 20, "0.95": 30}
    assert summary["margin"]["saving_vs_random"] == {"0.90": 1.5, "0.95": None}
    assert summary["margin"]["saving_vs_random_at_least"]["0.95"] == pytest.approx(50 / 30)
    assert summary["margin"]["worst_gap_vs_random"] == pytest.approx(0.04)
    assert summary["margin"]["accuracy_std"] == [0.0] * 4


def test_initial_draw_has_two_classes() -> None:
    y = ["a"] * 98 + ["b"] * 2
    for seed in range(5):
        picked = simulation.initial_indices(y, 3, seed)
        assert len(set(picked.tolist())) == 3 and {y[i] for i in picked} == {"a", "b"}


# ----------------------------------------------------------------------------- noisy labels


def test_noise_flips_the_revealed_labels_not_the_test_split(tmp_path, capsys) -> None:
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in _texts(30)))
    reports = {}
    for option in ([], ["--noise", "0.3"], ["--annotators", "0.9,0.9,spam"]):
        out = tmp_path / f"r{len(reports)}.json"
        code = main(["simulate", "--data", str(data), "--strategies", "margin", "--initial", "6", "--batch-size", "6",
                     "--budget", "36", "--seeds", "2", "--json", str(out), "--no-progress", *option])
        assert code == 0, capsys.readouterr().err
        reports[" ".join(option)] = json.loads(out.read_text())
    clean, flipped, crowd = reports[""], reports["--noise 0.3"], reports["--annotators 0.9,0.9,spam"]
    assert clean["config"]["annotators"] is None and clean["strategies"]["margin"]["wrong_labels_per_seed"] == [0, 0]
    assert flipped["config"]["annotators"] == "0.7" and flipped["config"]["expected_label_error"] == pytest.approx(0.3)
    assert crowd["config"]["expected_label_error"] == pytest.approx((0.1 + 0.1 + 2 / 3) / 3)
    for arm in ("margin", "random"):
        wrong = flipped["strategies"][arm]["wrong_labels_per_seed"]
        assert all(3 <= w <= 20 for w in wrong), wrong  # ~30 % of 36 labels
    # Same split, start and seeds: the noise is the only difference, and it costs accuracy on the clean test split.
    assert flipped["strategies"]["random"]["accuracy_mean"][-1] < clean["strategies"]["random"]["accuracy_mean"][-1]


def test_noise_options_are_checked(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--dataset", "digits", "--annotators", "0.9,maybe", "--no-progress"])
    assert "'maybe' is neither an accuracy nor 'spam'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--dataset", "digits", "--noise", "1.2", "--no-progress"])
    assert "--noise" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--dataset", "digits", "--noise", "0.1", "--annotators", "0.9", "--no-progress"])
    assert "not allowed with" in capsys.readouterr().err


def test_noisy_pool_labels_are_seeded_and_the_same_for_every_arm() -> None:
    from model.crowd.profiles import noise_profile

    y = ["a", "b", "c"] * 400
    first = simulation.noisy_pool_labels(y, ["a", "b", "c"], noise_profile(0.1), seed=4)
    assert first == simulation.noisy_pool_labels(y, ["a", "b", "c"], noise_profile(0.1), seed=4)
    assert first != simulation.noisy_pool_labels(y, ["a", "b", "c"], noise_profile(0.1), seed=5)
    assert np.mean([g != t for g, t in zip(first, y, strict=True)]) == pytest.approx(0.1, abs=0.03)
