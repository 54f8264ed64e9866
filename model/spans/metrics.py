"""Span metrics: exact-span and token-overlap precision / recall / F1, micro and per label.

* **exact span** (CoNLL's measure): a predicted span counts only if its start, end and label all equal
  a gold span's; each gold span is matched at most once (duplicates are counted as often as they occur).
  It is the strict "would the annotator accept it unchanged" figure.
* **token overlap**: every (token, label) pair is a unit -- a token belongs to a span of a label if
  its characters overlap the span -- and precision / recall / F1 count matching units. It gives
  partial credit for a span whose borders are one token off, which exact match scores as one miss
  plus one false alarm. Tokens are :func:`model.spans.tokens.tokenize`'s; without the texts the
  units are characters instead.

Conventions, so every figure is a plain JSON number: precision with no predicted span is 1.0 when
there is no gold span either and 0.0 otherwise, recall likewise with the roles swapped ("nothing to
find, nothing found" is agreement); F1 is 0.0 when precision + recall is 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from model.spans.tokens import tokenize


def prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    """Precision, recall and F1 from counts (see the module docstring for empty cases)."""
    precision = tp / n_pred if n_pred else (1.0 if n_gold == 0 else 0.0)
    recall = tp / n_gold if n_gold else (1.0 if n_pred == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def evaluate_spans(y_true: Sequence[Sequence[dict[str, Any]]], y_pred: Sequence[Sequence[dict[str, Any]]],
                   texts: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Exact-span micro P/R/F1, token-overlap micro P/R/F1 and per-label exact P/R/F1/support.

    ``labels`` orders the per-label table (labels found in the spans but not listed are appended,
    sorted). Returns ``precision``, ``recall``, ``f1``, ``n_true``, ``n_pred``, ``true_positives``,
    ``token_precision``, ``token_recall``, ``token_f1``, ``token_unit`` ("token" or "char") and
    ``per_label`` ({label: precision, recall, f1, support, n_pred}).
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold documents but {len(y_pred)} predicted")
    if texts is not None and len(texts) != len(y_true):
        raise ValueError(f"{len(texts)} texts for {len(y_true)} documents")
    gold, pred = _exact(y_true), _exact(y_pred)
    hits = gold & pred
    out: dict[str, Any] = prf(sum(hits.values()), sum(pred.values()), sum(gold.values()))
    out.update(n_true=int(sum(gold.values())), n_pred=int(sum(pred.values())), true_positives=int(sum(hits.values())))
    token = _overlap(y_true, y_pred, texts)
    out.update({f"token_{k}": v for k, v in token.items()}, token_unit="char" if texts is None else "token")
    out["per_label"] = _per_label(gold, pred, hits, labels)
    return out


def _exact(docs: Sequence[Sequence[dict[str, Any]]]) -> Counter:
    return Counter((i, int(s["start"]), int(s["end"]), str(s["label"])) for i, doc in enumerate(docs) for s in doc)


def _per_label(gold: Counter, pred: Counter, hits: Counter, labels: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    def count(c: Counter) -> Counter:
        out: Counter = Counter()
        for key, n in c.items():
            out[key[3]] += n
        return out

    g, p, h = count(gold), count(pred), count(hits)
    listed = list(dict.fromkeys(labels or []))
    names = listed + sorted((set(g) | set(p)) - set(listed))
    table = {}
    for name in names:
        row: dict[str, Any] = prf(h[name], p[name], g[name])
        row.update(support=int(g[name]), n_pred=int(p[name]))
        table[name] = row
    return table


def _overlap(y_true: Sequence[Sequence[dict[str, Any]]], y_pred: Sequence[Sequence[dict[str, Any]]],
             texts: Sequence[str] | None) -> dict[str, float]:
    """Micro P/R/F1 over (document, unit, label) triples, units being tokens (with ``texts``) or characters."""
    gold: set[tuple[int, int, str]] = set()
    pred: set[tuple[int, int, str]] = set()
    for i, (true_doc, pred_doc) in enumerate(zip(y_true, y_pred, strict=True)):
        bounds = None if texts is None else [(t.start, t.end) for t in tokenize(texts[i])]
        gold |= _units(i, true_doc, bounds)
        pred |= _units(i, pred_doc, bounds)
    return prf(len(gold & pred), len(pred), len(gold))


def _units(doc: int, spans: Sequence[dict[str, Any]],
           bounds: list[tuple[int, int]] | None) -> set[tuple[int, int, str]]:
    out = set()
    for s in spans:
        start, end, label = int(s["start"]), int(s["end"]), str(s["label"])
        if bounds is None:
            out.update((doc, c, label) for c in range(start, end))
        else:
            out.update((doc, t, label) for t, (a, b) in enumerate(bounds) if a < end and start < b)
    return out
