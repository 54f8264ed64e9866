"""`labelloop simulate-spans` end to end (synthetic set, a Label Studio export, JSONL) and its report helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.cli import simulate_spans as cli
from backend.cli.main import main
from model.simulation import curve_area
from model.spans import simulation
from model.spans.synthetic import make_documents

SMALL = ["--initial", "4", "--batch-size", "4", "--budget", "12", "--tagger-param", "max_iterations=30", "--quiet"]


def test_synthetic_two_seeds_reports_both_axes(tmp_path, capsys) -> None:
    plot, out = tmp_path / "curves.png", tmp_path / "curves.json"
    code = main(["simulate-spans", "--dataset", "synthetic", "--documents", "60", "--seeds", "2", "--test-size", "20",
                 "--strategies", "least_confidence,token_entropy", "--queue", "greedy", "--report-at", "4,8,12",
                 *SMALL, "--plot", str(plot), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for words in ("exact-span F1 (%) against documents labelled", "token F1 (%) against tokens labelled", "W/T/L",
                  "docs to 90 % of full", "predict ms/doc"):
        assert words in printed
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = json.loads(out.read_text())
    config, arms = report["config"], report["arms"]
    assert config["arms"] == ["least_confidence", "token_entropy", "random"]
    assert (config["n_pool"], config["n_test"], config["queue"]) == (40, 20, "greedy")
    assert [p["n_pool"] for p in report["full_pool"]["per_seed"]] == [40, 40]
    random = arms["random"]
    for name in ("least_confidence", "token_entropy"):
        entry = arms[name]
        assert entry["labels"] == [4, 8, 12] and list(entry["f1_at_documents"]) == ["4", "8", "12"]
        # the document-axis area is the paired difference of each seed's curve areas
        by_hand = [curve_area([4, 8, 12], mine) - curve_area([4, 8, 12], theirs)
                   for mine, theirs in zip(entry["f1_per_seed"], random["f1_per_seed"], strict=True)]
        area = entry["f1_area_vs_random_documents"]
        assert area["per_seed"] == pytest.approx(by_hand)
        assert area["mean"] == pytest.approx(np.mean(by_hand))
        for key in ("f1_area_vs_random_tokens", "token_f1_area_vs_random_documents", "token_f1_area_vs_random_tokens"):
            assert entry[key]["wins"] + entry[key]["ties"] + entry[key]["losses"] == 2
        # a token budget reads each seed's last round within it
        budget = config["report_tokens"][-1]
        seeds = [[f for f, t in zip(f1, tokens, strict=True) if t <= budget][-1]
                 for f1, tokens in zip(entry["f1_per_seed"], entry["tokens_per_seed"], strict=True)]
        assert entry["f1_at_tokens"][str(budget)]["mean"] == pytest.approx(np.mean(seeds))
        reached = entry["to_full_share"]
        if reached["documents"] is not None:
            assert reached["tokens"] == entry["tokens_labelled_mean"][entry["labels"].index(reached["documents"])]
    # every token budget was reached by every arm in every seed
    assert config["report_tokens"][-1] <= min(t[-1] for a in arms.values() for t in a["tokens_per_seed"])


def _region(k: int, start: int, end: int, labels: list[str], text: str) -> dict:
    return {"id": f"r{k}", "from_name": "ner", "to_name": "body", "type": "labels", "origin": "manual",
            "value": {"start": start, "end": end, "text": text[start:end], "labels": labels}}


def _export(n: int = 36) -> list[dict]:
    """A Label Studio 1.x JSON export of a <Labels name="ner" toName="body"> project, with its usual oddities."""
    texts, spans = make_documents(n, seed=4)
    tasks = []
    for i, (text, doc) in enumerate(zip(texts, spans, strict=True), 1):
        result = [_region(k, s["start"], s["end"], [s["label"]], text) for k, s in enumerate(doc)]
        tasks.append({"id": i, "data": {"body": text, "source": "synthetic"}, "predictions": [],
                      "annotations": [{"id": 100 + i, "was_cancelled": False, "ground_truth": False,
                                       "created_at": "2026-01-02T10:00:00Z", "updated_at": "2026-01-02T10:00:00Z",
                                       "result": result}]})
    first = tasks[0]
    # an older annotation with different spans: the newer one is the label
    first["annotations"].insert(0, {"id": 1, "was_cancelled": False, "created_at": "2025-12-01T10:00:00Z",
                                    "updated_at": "2025-12-01T10:00:00Z", "result": []})
    # a region with two labels is one span of each; a Choices result of another control is not a span
    text = tasks[1]["data"]["body"]
    tasks[1]["annotations"][0]["result"].append(_region(99, 0, 5, ["PER", "ORG"], text))
    tasks[1]["annotations"][0]["result"].append({"id": "c", "from_name": "topic", "to_name": "body",
                                                 "type": "choices", "value": {"choices": ["news"]}})
    tasks.append({"id": 900, "data": {"body": "Nobody labelled this.", "source": "x"}, "annotations": []})
    tasks.append({"id": 901, "data": {"body": "Skipped by the annotator.", "source": "x"},
                  "annotations": [{"id": 9, "was_cancelled": True, "result": []}]})
    return tasks


def test_label_studio_export(tmp_path, capsys) -> None:
    tasks = _export()
    data = tmp_path / "export.json"
    data.write_text(json.dumps(tasks))
    out = tmp_path / "r.json"
    assert main(["simulate-spans", "--data", str(data), "--seeds", "1", "--test-size", "12",
                 "--strategies", "mnlp", *SMALL, "--json", str(out)]) == 0
    assert "2 task(s) without a usable annotation skipped" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["config"]["n_documents"] == 36 and report["config"]["labels"] == ["DATE", "LOC", "ORG", "PER"]
    assert report["config"]["queue"] == "cluster"  # the server's default queue

    read = cli.spans_from_label_studio("export.json", tasks)
    texts, spans = make_documents(36, seed=4)
    assert read.texts == texts
    assert read.spans[0] == sorted(spans[0], key=lambda s: (s["start"], s["end"], s["label"]))
    extra = [s for s in read.spans[1] if (s["start"], s["end"]) == (0, 5)]
    assert sorted(s["label"] for s in extra) == ["ORG", "PER"]
    assert len(read.spans[1]) == len(spans[1]) + 2


def test_label_studio_export_errors(tmp_path, capsys) -> None:
    tasks = _export(6)
    other = dict(tasks[0]["annotations"][-1]["result"][0], from_name="ner2")
    tasks[0]["annotations"][-1]["result"].append(other)
    with pytest.raises(cli.SimulationInputError, match="--from-name"):
        cli.spans_from_label_studio("e.json", tasks)
    assert len(cli.spans_from_label_studio("e.json", tasks, from_name="ner2").spans[0]) == 1

    xpath = _export(6)
    xpath[2]["annotations"][0]["result"][0]["value"].update(start="/p[1]/text()[1]", end="/p[1]/text()[1]")
    with pytest.raises(cli.SimulationInputError, match=r"task 3 result\[0\].*XPath"):
        cli.spans_from_label_studio("e.json", xpath)

    choices = [{"id": 1, "data": {"text": "a"}, "annotations": [{"result": [
        {"from_name": "c", "to_name": "text", "type": "choices", "value": {"choices": ["x"]}}]}]}]
    path = tmp_path / "choices.json"
    path.write_text(json.dumps(choices))
    assert main(["simulate-spans", "--data", str(path), "--quiet"]) == 2
    assert "no 'labels' (span) results" in capsys.readouterr().err


def test_jsonl_reading_and_its_errors(tmp_path, capsys) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text('{"text": "Alice met Bob.", "spans": [{"start": 10, "end": 13, "label": "PER"}, '
                    '{"start": 0, "end": 5, "label": "PER"}]}\n\n{"text": "Nothing here."}\n')
    data = cli.load_span_file(path)
    assert data.texts == ["Alice met Bob.", "Nothing here."] and data.labels == ["PER"]
    assert data.spans == [[{"start": 0, "end": 5, "label": "PER"}, {"start": 10, "end": 13, "label": "PER"}], []]

    path.write_text('{"text": "ok", "spans": []}\n{"text": "short", "spans": [{"start": 2, "end": 9, "label": "X"}]}\n')
    assert main(["simulate-spans", "--data", str(path), "--quiet"]) == 2
    assert "spans.jsonl:2: spans[0]: offsets 2..9 do not lie inside the text (5 characters" in capsys.readouterr().err
    path.write_text('{"text": "ok", "spans": [{"start": 0, "end": 2}]}\n')
    with pytest.raises(cli.SimulationInputError, match="label must be a non-empty string"):
        cli.load_span_file(path)


def test_bad_options_are_clear_errors(capsys) -> None:
    assert main(["simulate-spans", "--dataset", "synthetic", "--strategies", "vibes", "--quiet"]) == 2
    assert "unknown span strategy 'vibes'" in capsys.readouterr().err
    assert main(["simulate-spans", "--dataset", "synthetic", "--queue", "fifo", "--quiet"]) == 2
    assert "--queue 'fifo'" in capsys.readouterr().err
    assert main(["simulate-spans", "--dataset", "synthetic", "--documents", "30", "--budget", "500", "--initial",
                 "40", "--quiet"]) == 2
    assert "exceed the budget / pool size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate-spans", "--dataset", "synthetic", "--test-size", "1.5"])
    assert cli._test_size("0.25") == 0.25 and cli._test_size("40") == 40


def test_token_axis_compares_at_equal_reading() -> None:
    """An arm that doubles its F1 by reading twice the tokens wins per document and ties per token."""
    arm = {"labels": [1, 2], "f1_per_seed": [[0.0, 1.0]], "tokens_per_seed": [[10, 30]]}
    control = {"labels": [1, 2], "f1_per_seed": [[0.0, 0.5]], "tokens_per_seed": [[10, 20]]}
    assert simulation.area_differences(arm, control, axis="documents") == [pytest.approx(0.25)]
    assert simulation.area_differences(arm, control, axis="tokens") == [pytest.approx(0.0)]
    assert simulation.values_at_tokens(arm, 25) == [0.0]
    assert simulation.values_at_tokens(arm, 30) == [1.0]
    assert simulation.values_at_tokens(arm, 5) == [None]
    with pytest.raises(ValueError):
        simulation.area_differences(arm, {**control, "labels": [1, 3]})


def test_token_budgets_every_arm_reached() -> None:
    curves = {"a": [{"tokens_labelled": [120, 2000, 5180]}], "b": [{"tokens_labelled": [120, 900, 4999]}]}
    assert cli.token_budgets(curves) == [1200, 2400, 3700, 4900]
    assert cli.token_budgets({"a": [{"tokens_labelled": [3000, 4000]}]}) == [3000, 4000]
