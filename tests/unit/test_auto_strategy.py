"""strategy="auto" (the default): BALD for text, margin for images, and margin wherever BALD cannot serve."""

from __future__ import annotations

import json

import pytest

from backend.cli.main import main
from backend.config import ProjectPolicy
from backend.labelstudio.labelconfig import parse_label_config
from backend.service.models import build_estimator, resolve_strategy, strategy_for
from model.uncertainty import default_strategy

TEXT = ('<View><Text name="text" value="$text"/><Choices name="topic" toName="text">'
        '<Choice value="a"/><Choice value="b"/></Choices></View>')
IMAGE = ('<View><Image name="img" value="$image"/><Choices name="scene" toName="img">'
         '<Choice value="in"/><Choice value="out"/></Choices></View>')
TWO_TEXT_CONTROLS = ('<View><Text name="text" value="$text"/><Choices name="topic" toName="text">'
                     '<Choice value="a"/><Choice value="b"/></Choices><Choices name="tone" toName="text">'
                     '<Choice value="calm"/><Choice value="angry"/></Choices></View>')
IMAGE_AND_BOXES = ('<View><Image name="img" value="$image"/><Choices name="scene" toName="img">'
                   '<Choice value="in"/><Choice value="out"/></Choices><RectangleLabels name="box" toName="img">'
                   '<Label value="cat"/></RectangleLabels></View>')


def test_the_default_policy_is_auto_and_each_input_gets_its_measured_default() -> None:
    assert ProjectPolicy().strategy == "auto"
    assert (default_strategy("text"), default_strategy("image")) == ("bald", "margin")
    assert resolve_strategy("auto", "auto", parse_label_config(TEXT)) == "bald"
    assert resolve_strategy("auto", "auto", parse_label_config(IMAGE)) == "margin"
    assert resolve_strategy("auto", "auto", parse_label_config(TWO_TEXT_CONTROLS)) == "bald"


@pytest.mark.parametrize(("strategy", "model", "config", "expected"), [
    ("entropy", "auto", TEXT, "entropy"),           # a named strategy is kept as named
    ("bald", "auto", IMAGE, "bald"),
    ("auto", "logreg", TEXT, "margin"),             # logistic regression cannot sample: margin
    ("auto", "committee", TEXT, "margin"),          # a model the project chose keeps the one every model serves
    ("auto", "my_model.py:build", TEXT, "margin"),  # a factory may have no predict_proba_samples
    ("auto", "mlp", TEXT, "bald"),
    ("auto", "auto", IMAGE_AND_BOXES, "margin"),    # mixed inputs: one strategy scores all controls
])
def test_auto_resolves_to_what_the_model_can_serve(strategy: str, model: str, config: str, expected: str) -> None:
    assert resolve_strategy(strategy, model, parse_label_config(config)) == expected


def test_unknown_input_keeps_margin() -> None:
    assert strategy_for("auto", "auto", None) == "margin"
    assert resolve_strategy("auto", "auto", None) == "margin"


def test_auto_text_builds_the_sampling_model_and_every_control_gets_it() -> None:
    text = build_estimator(ProjectPolicy(), parse_label_config(TEXT))
    assert text.get_params()["model"] == "mlp"  # BALD needs Monte-Carlo samples
    assert build_estimator(ProjectPolicy(), parse_label_config(IMAGE)).get_params()["model"] == "logreg"
    both = build_estimator(ProjectPolicy(), parse_label_config(TWO_TEXT_CONTROLS))
    assert {m.get_params()["model"] for m in both.estimators.values()} == {"mlp"}
    assert build_estimator(ProjectPolicy(model="logreg"), parse_label_config(TEXT)).get_params()["model"] == "logreg"


def test_policy_accepts_auto_with_any_model_and_still_refuses_logreg_for_bald() -> None:
    assert ProjectPolicy(strategy="auto", model="logreg").model == "logreg"
    with pytest.raises(ValueError, match="needs sampled probabilities"):
        ProjectPolicy(strategy="bald", model="logreg")
    with pytest.raises(ValueError, match="choose one of \\['auto', 'bald'"):
        ProjectPolicy(strategy="vibes")


def test_simulate_default_runs_the_servers_strategy_for_the_data(tmp_path, capsys) -> None:
    data = tmp_path / "t.jsonl"
    rows = [{"text": f"{word} {word} item {i}", "label": word} for i in range(12) for word in ("apple", "pear")]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "r.json"
    code = main(["simulate", "--data", str(data), "--initial", "4", "--batch-size", "4", "--budget", "8",
                 "--seeds", "1", "--json", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert list(json.loads(out.read_text())["strategies"]) == ["bald", "random"]
    code = main(["simulate", "--data", str(data), "--strategies", "auto+greedy", "--model-param", "model=logreg",
                 "--initial", "4", "--batch-size", "4", "--budget", "8", "--seeds", "1", "--json", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert list(json.loads(out.read_text())["strategies"]) == ["margin+greedy", "random"]


def test_a_sampled_strategy_fits_no_calibrator_unless_one_is_asked_for() -> None:
    """BALD's scores are the raw samples' mean: an "auto" calibrator would be three network fits never read."""
    assert build_estimator(ProjectPolicy(), parse_label_config(TEXT)).get_params()["calibration"] == "none"
    assert build_estimator(ProjectPolicy(), parse_label_config(IMAGE)).get_params()["calibration"] == "auto"
    explicit = ProjectPolicy(calibration="temperature")
    assert build_estimator(explicit, parse_label_config(TEXT)).get_params()["calibration"] == "temperature"
