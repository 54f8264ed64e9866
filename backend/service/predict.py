"""`/predict`: tasks -> predictions with the project's serving model (the first room of the predict path).

Label Studio JSON -> labelstudio/tasks (inputs) -> store/artifacts (the serving estimator) ->
model.scoring (labels, confidence) -> labelstudio/tasks (prediction JSON).
"""

from __future__ import annotations

from typing import Any

from backend.labelstudio.labelconfig import cached_spec
from backend.labelstudio.tasks import task_inputs
from backend.service.container import Services
from model.scoring import score
from model.uncertainty import get_strategy

#: The model_version answered before a project's first round.
UNTRAINED = "untrained"


def predict_tasks(services: Services, project_id: int, tasks: list[dict[str, Any]],
                  label_config: str | None) -> tuple[list[dict[str, Any]], str]:
    """Predictions for ``tasks`` (same order) and the version that made them; none before the first round."""
    store = services.store
    state = store.serving_state(project_id)
    if state is None:
        services.ensure_project(project_id, label_config=label_config)
        state = store.serving_state(project_id)
        assert state is not None
    spec = cached_spec(label_config or state.label_config)
    if state.version is None or state.iteration_id is None:
        # No model yet: no predictions, and Label Studio keeps its normal order. Text tasks are
        # still checked so a malformed task is reported now rather than after the first round.
        if spec.modality == "text":
            task_inputs(tasks, spec, None)
        return [], UNTRAINED
    loader = services.image_loader(project_id) if spec.modality == "image" else None
    inputs = task_inputs(tasks, spec, loader)
    estimator = services.models.load(project_id, state.version, state.iteration_id)
    scored = score(estimator, get_strategy(state.strategy), inputs)
    results = [spec.prediction(lab, s, state.version)
               for lab, s in zip(scored.labels, scored.confidence, strict=True)]
    return results, state.version
