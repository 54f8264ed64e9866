"""`<Labels>` over `<Text>`: named-entity-style spans, any number per text (or none).

Label Studio stores a span region as ``{"type": "labels", "value": {"start", "end", "text", "labels"}}``
with character offsets into the task's text, ``end`` exclusive; the offsets are the truth (``value.text``
may differ from the text it covers, e.g. where the browser collapsed double spaces). A target or a
prediction is a JSON-able list ``[{"start", "end", "label"}]`` (predictions add ``score`` and ``text``),
one span per label: a region with several labels (``choice="multiple"``) is one span of each label, which
the model learns as overlapping spans. Two adjacent spans of one label stay two spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from backend.errors import BadInput
from backend.labelstudio.tasktypes.base import TaskType
from model.spans.metrics import evaluate_spans

Span = dict[str, Any]


@dataclass(frozen=True)
class LabelsTask(TaskType):
    """A span control. Targets are lists of ``{"start", "end", "label"}`` with character offsets."""

    tag: ClassVar[str] = "Labels"
    objects: ClassVar[tuple[str, ...]] = ("Text",)
    supported: ClassVar[str] = "<Labels> (spans) over a <Text>"
    region_control: ClassVar[bool] = True
    coverage_unit: ClassVar[str | None] = "span"

    labels: tuple[str, ...] = ()
    #: The object's granularity ("word" snaps selections to words in Label Studio; offsets stay characters).
    granularity: str = "symbol"

    @classmethod
    def from_control(cls, control: Any, obj: Any) -> LabelsTask:
        from backend.errors import UnsupportedConfig

        labels = tuple(control.labels)
        if not labels:
            raise UnsupportedConfig(f"<Labels name=\"{control.name}\"> has no <Label> values")
        granularity = str((getattr(obj, "attr", None) or {}).get("granularity") or "symbol")
        return cls(from_name=control.name, to_name=obj.name, data_key=obj.value_name, modality="text",
                   labels=labels, granularity=granularity)

    def target(self, annotation: dict[str, Any], where: str = "annotation") -> list[Span]:
        """Every span of this control in the annotation; an empty list means "no entity in this text"."""
        results = annotation.get("result") or []
        if not isinstance(results, list):
            raise BadInput(f"{where}.result must be a list", field=f"{where}.result")
        spans: list[Span] = []
        for i, item in enumerate(results):
            if isinstance(item, dict) and item.get("from_name") == self.from_name:
                spans.extend(self._spans(item.get("value"), f"{where}.result[{i}].value"))
        return sorted(spans, key=lambda s: (s["start"], s["end"], s["label"]))

    def _spans(self, value: Any, field: str) -> list[Span]:
        if not isinstance(value, dict):
            raise BadInput(f"{field} must be an object", field=field)
        names = value.get("labels")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise BadInput(f"{field}.labels must be a non-empty list of label names", field=f"{field}.labels")
        unknown = [n for n in names if n not in self.labels]
        if unknown:
            raise BadInput(f"{field}.labels has label(s) {unknown} not in the label config's <Labels name=\""
                           f"{self.from_name}\"> (known: {list(self.labels)})", field=f"{field}.labels")
        start, end = value.get("start"), value.get("end")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not 0 <= start < end:
            raise BadInput(f"{field} needs integer character offsets with 0 <= start < end (a text span; "
                           "HyperText regions with XPath offsets are not served)", field=f"{field}.start")
        return [{"start": start, "end": end, "label": name} for name in dict.fromkeys(names)]

    def prediction(self, predicted: Sequence[Span], score: float, version: str,
                   confidence: float | None = None) -> dict[str, Any]:
        """Span regions Label Studio highlights, each with its own probability of being right as its score."""
        result = []
        for i, span in enumerate(predicted):
            value = {"start": int(span["start"]), "end": int(span["end"]), "labels": [span["label"]]}
            if "text" in span:
                value["text"] = span["text"]
            result.append({"id": f"{self.from_name}-{i}", "from_name": self.from_name, "to_name": self.to_name,
                           "type": "labels", "value": value, "score": round(float(span.get("score", 1.0)), 6)})
        return {"result": result, "score": float(score), "model_version": version}

    def correct(self, predicted: Sequence[Span], truth: Sequence[Span]) -> bool:
        """The text is right when its predicted spans are exactly its true spans (offsets and labels)."""
        return _keys(predicted) == _keys(truth)

    def model_targets(self, targets: Sequence[Sequence[Span]]) -> list[list[Span]]:
        return [[{"start": s["start"], "end": s["end"], "label": s["label"]} for s in t] for t in targets]

    def evaluate(self, truth: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]],
                 probs: np.ndarray) -> dict[str, Any]:
        """Exact-span micro F1 (the headline ``accuracy``), token-overlap F1, per-label precision/recall/F1."""
        report = evaluate_spans(self.model_targets(truth), self.model_targets(predicted), labels=list(self.labels))
        per_label = {name: {k: row[k] for k in ("precision", "recall", "f1", "support")}
                     for name, row in report["per_label"].items()}
        supported = [row["f1"] for name, row in per_label.items() if row["support"]]
        return {"accuracy": report["f1"], "f1": report["f1"], "precision": report["precision"],
                "recall": report["recall"], "token_f1": report["token_f1"],
                "macro_f1": float(np.mean(supported)) if supported else None, "ece": None,
                "n": len(truth), "n_spans": report["n_true"], "per_class": per_label}

    def agreement(self, before: Sequence[Sequence[Span]], after: Sequence[Sequence[Span]]) -> float | None:
        """Exact-span F1 between two rounds' spans on the same texts (1 = the same spans)."""
        if not before:
            return None
        old = sum(len(_keys(b)) for b in before)
        new = sum(len(_keys(a)) for a in after)
        same = sum(len(_keys(b) & _keys(a)) for b, a in zip(before, after, strict=True))
        return 1.0 if old + new == 0 else 2 * same / (old + new)

    def threshold_rows(self, truth: Sequence[Sequence[Span]],
                       predicted: Sequence[Sequence[Span]]) -> dict[str, list[Any]]:
        """One row per predicted span (the guarantee holds per span): its score, whether a true span has its
        offsets and label, and its text's index."""
        rows: dict[str, list[Any]] = {"task": [], "score": [], "correct": [], "n_truth": []}
        for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
            true = _keys(t)
            rows["task"].extend([i] * len(p))
            rows["score"].extend(round(float(s.get("score", 1.0)), 6) for s in p)
            rows["correct"].extend(int((s["start"], s["end"], s["label"]) in true) for s in p)
            rows["n_truth"].append(len(t))
        return rows

    def unit_scores(self, predicted: Sequence[Span]) -> list[float]:
        return [float(s.get("score", 1.0)) for s in predicted]

    def item_confidence(self, predicted: Sequence[Span], decision: float) -> float:
        """The weakest span (a text is auto-labelled only when every span on it clears the threshold); a text
        with no predicted span: the probability that it has none (the best path's)."""
        return min(self.unit_scores(predicted), default=float(decision))


def _keys(spans: Sequence[Span]) -> set[tuple[int, int, str]]:
    return {(int(s["start"]), int(s["end"]), str(s["label"])) for s in spans}
