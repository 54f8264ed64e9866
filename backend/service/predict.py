"""`/predict`: tasks -> predictions with the project's serving model (the first room of the predict path).

Label Studio JSON -> labelstudio/tasks (inputs) -> store/artifacts (the serving estimator) ->
model.scoring (labels, confidence) -> labelstudio/tasks (prediction JSON).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from backend.labelstudio.labelconfig import TaskType, cached_spec
from backend.labelstudio.tasks import ImageLoader, check_served, task_input, task_inputs
from backend.memory import release_free_heap
from backend.service.container import Services
from backend.service.models import resolve_strategy, trusted_types
from model.scoring import score_batches

#: The model_version answered before a project's first round.
UNTRAINED = "untrained"


def predict_tasks(services: Services, project_id: int, tasks: list[dict[str, Any]],
                  label_config: str | None) -> tuple[list[dict[str, Any]], str]:
    """Predictions for ``tasks`` (same order) and the version that made them; none before the first round.

    Scored ``settings.predict_batch_size`` tasks at a time, so the model's working memory (features,
    decoded images, probabilities per pass) stays bounded however many tasks one request brings.
    """
    store = services.store
    # A config the request brings is checked before it can create a project row that holds it.
    spec = cached_spec(label_config) if label_config else None
    state = store.serving_state(project_id)
    if state is None:
        services.ensure_project(project_id, label_config=label_config)
        state = store.serving_state(project_id)
        assert state is not None
    spec = spec or cached_spec(state.label_config)
    if state.version is None or state.iteration_id is None:
        # No model yet: no predictions, and Label Studio keeps its normal order. Text tasks are
        # still checked so a malformed task is reported now rather than after the first round.
        if spec.modality == "text":
            task_inputs(tasks, spec, None)
        return [], UNTRAINED
    if label_config and state.label_config:  # the config the request brings must be one the model can serve
        check_served(spec, cached_spec(state.label_config), state.version)
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    todo = _answer_from_round(services, project_id, state.iteration_id, state.version, spec, tasks, results)
    if todo:
        size = services.settings.predict_batch_size
        if spec.modality == "text":  # check every task before scoring any (text is cheap to read)
            inputs = [task_input(tasks[i], spec, None, where=f"tasks[{i}]") for i in todo]
            batches: Iterator[Sequence[Any]] = (inputs[i:i + size] for i in range(0, len(inputs), size))
        else:  # images are fetched and decoded one batch at a time
            batches = input_batches(tasks, todo, spec, services.image_loader(project_id), size)
        estimator = services.models.load(project_id, state.version, state.iteration_id,
                                         trusted_types(state.model, state.trusted_types))
        scored = score_batches(estimator, resolve_strategy(state.strategy, state.model, spec), batches)
        for i, lab, s, sure in zip(todo, scored.labels, scored.confidence, scored.display, strict=True):
            results[i] = spec.prediction(lab, s, state.version, sure)
        if len(todo) >= size:  # a full batch's features and samples are freed now: hand them back
            release_free_heap()
    return [r for r in results if r is not None], state.version


def _answer_from_round(services: Services, project_id: int, iteration_id: int, version: str, spec: TaskType,
                       tasks: list[dict[str, Any]], results: list[dict[str, Any] | None]) -> list[int]:
    """Fill ``results`` for the tasks the serving round already scored; returns the indices left to compute.

    A pool task gets exactly what its round pushed to Label Studio (prediction and queue score), from
    the serving iteration's own rows (held in this worker's memory, see poolcache.py): never another
    version's, and no model pass for it.
    """
    known = services.pool_answers.rows(project_id, iteration_id)
    todo = []
    for i, task in enumerate(tasks):
        task_id = task.get("id")
        hit = known.get(task_id) if type(task_id) is int else None  # not a bool, a float or a string id
        if hit is None:
            todo.append(i)
        else:
            results[i] = spec.prediction(hit[0], hit[1], version, hit[2])
    return todo


def input_batches(tasks: Sequence[dict[str, Any]], indices: Sequence[int], spec: TaskType,
                  loader: ImageLoader | None, size: int) -> Iterator[list[Any]]:
    """The model inputs of ``tasks[indices]``, ``size`` at a time, each named by its request index when refused."""
    for start in range(0, len(indices), size):
        yield [task_input(tasks[i], spec, loader, where=f"tasks[{i}]") for i in indices[start:start + size]]
