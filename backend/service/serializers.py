"""Iterations and jobs as JSON: one shape for the HTTP API, the CLI and the HTML report."""

from __future__ import annotations

from typing import Any

from backend.store import as_utc
from backend.store.schema import Iteration, Job, utcnow


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def accuracy_interval(it: Iteration) -> list[float] | None:
    """The round's 95 % interval of its headline figure, as recorded by evaluate_split."""
    evaluation = (it.metrics or {}).get("evaluation") or {}
    low, high = evaluation.get("accuracy_low"), evaluation.get("accuracy_high")
    return [float(low), float(high)] if low is not None and high is not None else None


def iteration_json(it: Iteration, full: bool = True) -> dict[str, Any]:
    """One iteration for the JSON API. ``full=False`` leaves out the per-task validation arrays (kept in
    SQL for auto-labelling; they grow with the validation split and would repeat in every listing)."""
    return {
        "number": it.number,
        "version": it.version,
        "status": it.status,
        "trigger": it.trigger,
        "error": it.error,
        "worker": it.worker,
        "queued_at": iso(it.queued_at),
        "started_at": iso(it.started_at),
        "finished_at": iso(it.finished_at),
        "labels_used": it.labels_used,
        "n_train": it.n_train,
        "n_validation": it.n_validation,
        "n_pool": it.n_pool,
        "n_skipped": it.n_skipped,
        "strategy": it.strategy,
        "queue": it.queue,
        "accuracy": it.accuracy,
        # 95 % interval of the headline figure over the n_validation tasks (None before any validation).
        "accuracy_interval": accuracy_interval(it),
        "macro_f1": it.macro_f1,
        "metrics": it.metrics if full or not it.metrics else {k: v for k, v in it.metrics.items() if k != "validation"},
        "fit_seconds": it.fit_seconds,
        "ece": it.ece,
        "calibration": it.calibration,
        "kappa": it.kappa,
        "mean_uncertainty": it.mean_uncertainty,
        "stop_suggested": it.stop_suggested,
    }


def job_json(job: Job, stale_seconds: float | None = None) -> dict[str, Any]:
    """One background job for the JSON API; ``stale`` says an unfinished job has stopped reporting
    (its worker probably died: rerun it, the work is resumable)."""
    updated = as_utc(job.updated_at)
    stale = bool(stale_seconds is not None and job.status in ("queued", "running") and updated is not None
                 and (utcnow() - updated).total_seconds() > stale_seconds)
    return {
        "id": job.id,
        "project": job.project_id,
        "kind": job.kind,
        "status": job.status,
        "stage": job.stage,
        "done": job.done,
        "total": job.total,
        "params": job.params,
        "result": job.result,
        "error": job.error,
        "worker": job.worker,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "finished_at": iso(job.finished_at),
        "stale": stale,
    }


