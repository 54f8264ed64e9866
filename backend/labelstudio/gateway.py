"""The Label Studio API as the training loop needs it, through label-studio-sdk 2.x.

Kept narrow on purpose: read all tasks (with annotations), push predictions in bulk, and point the
project at a new model version. Errors surface as `LabelStudioError` with the step that failed, so an
iteration can be marked failed with a reason a person can act on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from label_studio_sdk import LabelStudio

#: After each pushed batch, pause this many times as long as the batch took (Label Studio's write lock is free then).
PUSH_YIELD = 0.5
#: Tries per batch, and the first pause between them (doubling).
PUSH_ATTEMPTS = 4
PUSH_BACKOFF_SECONDS = 0.5
#: Tries per read (a task page, the export) before a round gives up.
READ_ATTEMPTS = 3


class LabelStudioError(RuntimeError):
    """Label Studio was unreachable or answered an error during a step of training."""


def _dump(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    return item.model_dump(mode="json") if hasattr(item, "model_dump") else dict(item)


class LabelStudioGateway:
    def __init__(self, url: str, api_key: str, timeout: float = 60.0,
                 key_source: str = "LABEL_STUDIO_API_KEY") -> None:
        if not url or not api_key:
            raise LabelStudioError(
                "no Label Studio to talk to: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY "
                "(or connect the backend from Label Studio so /setup provides them)"
            )
        self.url = url.rstrip("/")
        #: Where the key came from, for a fix a person can apply (backend/labelstudio/diagnosis.py).
        self.key_source = key_source
        self.client = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout)

    def auth_headers(self) -> Mapping[str, str]:
        """Headers that authenticate file downloads (/data/upload/...) the way the SDK authenticates.

        The SDK resolves legacy tokens vs. personal access tokens (refresh -> access) itself; reuse it
        rather than re-implementing the token exchange.
        """
        headers = self.client._client_wrapper.get_headers()  # noqa: SLF001 - the SDK has no public accessor
        return {"Authorization": headers["Authorization"]} if "Authorization" in headers else {}

    def iter_tasks(self, project_id: int, page_size: int = 500, view: int | None = None) -> Iterator[dict[str, Any]]:
        """Every task of the project (or of one Data Manager view) with annotations and predictions, all pages."""
        where = f"view {view} of project {project_id}" if view is not None else f"project {project_id}"
        try:
            for task in self.client.tasks.list(project=project_id, fields="all", page_size=page_size, view=view):
                yield _dump(task)
        except Exception as exc:  # the SDK raises ApiError, httpx errors, ...
            raise LabelStudioError(f"reading tasks of {where} failed: {exc}") from exc

    def labelled_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with at least one annotation (cancelled ones included), with its annotations.

        Through the project's JSON export: Label Studio serialises a labelled task there in about a
        third of the time its task list takes (2,000 tasks: 6 s against 19 s).
        """
        response = self._get(f"api/projects/{project_id}/export", {"exportType": "JSON", "download_all_tasks": "false"},
                             f"reading the labelled tasks of project {project_id} (export)")
        tasks = response.json()
        if not isinstance(tasks, list):
            raise LabelStudioError(f"exporting project {project_id} returned {type(tasks).__name__}, not a list")
        return tasks

    def task_count(self, project_id: int) -> int:
        """How many tasks the project has (one tiny page of the task list: Label Studio counts them)."""
        body = self._get("api/tasks", {"project": project_id, "fields": "task_only", "page_size": 1, "page": 1},
                         f"reading the task count of project {project_id}").json()
        return int(body.get("total") or 0)

    def list_tasks(self, project_id: int, updated_after: str | None = None,
                   page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Task objects without annotations (id, data, updated_at), all of them or those updated after a stamp."""
        params: dict[str, Any] = {"project": project_id, "fields": "task_only", "page_size": page_size}
        if updated_after:
            params["query"] = json.dumps({"filters": {"conjunction": "and", "items": [
                {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime",
                 "value": updated_after}]}})
        seen, page = 0, 1
        while True:
            body = self._get("api/tasks", {**params, "page": page},
                             f"reading tasks of project {project_id} (page {page})").json()
            tasks = body.get("tasks") or []
            yield from tasks
            seen += len(tasks)
            if not tasks or seen >= int(body.get("total") or 0):
                return
            page += 1

    def _get(self, path: str, params: dict[str, Any], what: str) -> Any:
        """A GET through the SDK's own HTTP client (its authentication), retried; raises for an error status."""
        def call() -> Any:
            response = self.client._client_wrapper.httpx_client.request(  # noqa: SLF001 - no public wrapper
                path, method="GET", params=params)
            response.raise_for_status()
            return response
        return self._with_retries(call, what, attempts=READ_ATTEMPTS)

    def create_task_view(self, project_id: int, title: str, task_ids: Sequence[int]) -> int:
        """A saved Data Manager tab listing exactly ``task_ids`` (an OR of id filters); returns its id."""
        items = [
            {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": int(t)} for t in task_ids
        ]
        data = {"title": title, "filters": {"conjunction": "or", "items": items}}
        try:
            return int(self.client.views.create(project=project_id, data=data).id)
        except Exception as exc:
            raise LabelStudioError(f"creating view {title!r} in project {project_id} failed: {exc}") from exc

    def label_config(self, project_id: int, timeout: float | None = None) -> str:
        options = {"timeout_in_seconds": timeout, "max_retries": 0} if timeout is not None else None
        try:
            return self.client.projects.get(id=project_id, request_options=options).label_config or ""
        except Exception as exc:
            raise LabelStudioError(f"reading project {project_id} failed: {exc}") from exc

    def import_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]], batch_size: int,
                           pace: Callable[[], float] = lambda: PUSH_YIELD) -> int:
        """Push predictions ({task, result, score, model_version}) in batches, paced; returns how many.

        Label Studio 1.23 inserts a batch, then recounts the annotations and predictions of every task
        in the project (in write transactions of 1,000 tasks), whatever the batch holds: a call costs
        1.6 s on a 12,000-task project for 1 or 500 predictions (benchmarks/push_cost.py). So the
        fewer calls the better, for the round and for annotators waiting on Label Studio's SQLite write
        lock alike. After each batch the push pauses for ``pace()`` times as long as the batch took
        (annotators' writes get in between; asked per batch, so a crowd that starts mid-push is paced
        for), and a failed batch is retried with backoff before the round gives up.
        """
        pushed = 0
        for start in range(0, len(predictions), batch_size):
            chunk = list(predictions[start : start + batch_size])
            began = time.monotonic()
            self._with_retries(lambda c=chunk: self.client.projects.import_predictions(id=project_id, request=c),
                               f"pushing predictions {start}..{start + len(chunk)} to project {project_id}")
            pushed += len(chunk)
            if pushed < len(predictions):
                took = time.monotonic() - began
                time.sleep(max(0.0, pace()) * took)
        return pushed

    @staticmethod
    def _with_retries(call: Callable[[], Any], what: str, attempts: int = PUSH_ATTEMPTS) -> Any:
        """``call()``, retried with exponential backoff; LabelStudioError naming ``what`` after the last try."""
        for attempt in range(attempts):
            try:
                return call()
            except Exception as exc:  # the SDK raises ApiError, httpx errors, ...
                if attempt + 1 == attempts:
                    raise LabelStudioError(f"{what} failed after {attempts} attempts: {exc}") from exc
                time.sleep(PUSH_BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    def delete_version(self, project_id: int, version: str) -> int:
        """Delete every prediction of ``version`` in the project; returns how many went.

        Label Studio's model-versions endpoint (``ProjectModelVersions.delete`` in 1.23), which
        label-studio-sdk 2.x does not wrap: called through the SDK's own HTTP client so authentication
        stays the SDK's business. Label Studio reads ``model_version`` from the JSON body (400 without
        it), deletes that version's predictions in one transaction and answers
        ``{"deleted_predictions": n}``. It also clears the project's ``model_version`` when that is
        the version deleted, so callers never delete the version Label Studio serves.
        """
        try:
            response = self.client._client_wrapper.httpx_client.request(  # noqa: SLF001 - no public wrapper
                f"api/projects/{project_id}/model-versions/", method="DELETE", json={"model_version": version}
            )
            response.raise_for_status()
            body = response.json()
            return int(body.get("deleted_predictions", 0)) if isinstance(body, dict) else 0
        except Exception as exc:
            raise LabelStudioError(f"deleting predictions of {version} in project {project_id} failed: {exc}") from exc

    def model_versions(self, project_id: int) -> dict[str, int]:
        """``version -> how many predictions`` Label Studio holds in the project (versions with none left out).

        One GROUP BY over the project's predictions on Label Studio's side (a read: no write lock). Label
        Studio adds the project's own ``model_version`` with 0 when no prediction carries it; that is
        dropped here, so the answer is what there is to delete.
        """
        body = self._get(f"api/projects/{project_id}/model-versions/", {},
                         f"reading the model versions of project {project_id}").json()
        if not isinstance(body, dict):
            raise LabelStudioError(f"model versions of project {project_id}: expected an object, got {body!r:.200}")
        return {str(v): int(n) for v, n in body.items() if isinstance(n, int) and n > 0}

    def project_model_version(self, project_id: int) -> str | None:
        """The version Label Studio serves the project's predictions of (its ``model_version``), if any."""
        try:
            return self.client.projects.get(id=project_id).model_version or None
        except Exception as exc:
            raise LabelStudioError(f"reading project {project_id} failed: {exc}") from exc

    def unlabelled_without(self, project_id: int, version: str, page_size: int = 1000) -> set[int]:
        """Ids of the tasks with no annotation (cancelled ones aside) that hold no prediction of ``version``.

        Two light listings (ids only): the unlabelled tasks, then those of them whose predictions'
        versions *contain* ``version`` (Label Studio's filter is a substring match: "it-1" also finds
        "it-10"), each checked for the exact version in the versions Label Studio lists with it. A list
        Label Studio cut short (it trims the column to a few hundred characters) counts as holding it:
        a task left out is served by ``/predict``, a task pushed twice would hold two predictions.
        """
        unlabelled = {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}
        holding = {"filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List",
                   "value": [version]}
        todo = {int(t["id"]) for t in self._filtered_tasks(project_id, [unlabelled], "id", page_size)}
        for task in self._filtered_tasks(project_id, [unlabelled, holding], "id,predictions_model_versions",
                                         page_size):
            if _holds(task.get("predictions_model_versions"), version):
                todo.discard(int(task["id"]))
        return todo

    def _filtered_tasks(self, project_id: int, filters: list[dict[str, Any]], include: str,
                        page_size: int) -> Iterator[dict[str, Any]]:
        """The tasks matching every filter, only the ``include`` fields, all pages."""
        params = {"project": project_id, "fields": "task_only", "include": include, "page_size": page_size,
                  "query": json.dumps({"filters": {"conjunction": "and", "items": filters}})}
        seen, page = 0, 1
        while True:
            body = self._get("api/tasks", {**params, "page": page},
                             f"listing tasks of project {project_id} (page {page})").json()
            tasks = body.get("tasks") or []
            yield from tasks
            seen += len(tasks)
            if not tasks or seen >= int(body.get("total") or 0):
                return
            page += 1

    def publish_version(self, project_id: int, version: str, uncertainty_sampling: bool) -> None:
        """Make Label Studio use `version`'s predictions (and order the queue by their score)."""
        fields: dict[str, Any] = {"model_version": version}
        if uncertainty_sampling:
            fields["sampling"] = "Uncertainty sampling"
        try:
            self.client.projects.update(id=project_id, **fields)
        except Exception as exc:
            raise LabelStudioError(f"setting model_version={version} on project {project_id} failed: {exc}") from exc


#: Label Studio's Data Manager cuts a list column at 500 characters (DataManagerTaskSerializer.CHAR_LIMITS), then
#: strips the quotes PostgreSQL's list had: a listing this long may have been cut.
_MAYBE_CUT_CHARS = 300


def _holds(listed: Any, version: str) -> bool:
    """Whether a task's ``predictions_model_versions`` (as Label Studio lists it) names ``version`` exactly.

    SQLite's Label Studio lists "it-1,it-10", PostgreSQL's "it-1, it-10"; a listing that may have been
    cut may have lost the version (or cut "it-25" to "it-2"), so it counts as holding it.
    """
    if isinstance(listed, list):
        return version in {str(v).strip() for v in listed}
    text = str(listed or "")
    return version in {v.strip() for v in text.split(",")} or len(text) >= _MAYBE_CUT_CHARS
