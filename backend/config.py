"""Settings read from the environment, once per process.

Everything a serving replica and a training worker must agree on (database, model directory,
Label Studio address) comes from here; per-project policy (strategy, retrain threshold) is only
*defaulted* here and then lives in SQL, so every worker sees the same policy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from backend.labelstudio.families import all_strategies, params_family
from model.calibration import CALIBRATIONS
from model.uncertainty import AUTO, STRATEGIES


def _choices(field: str) -> list[str]:
    """The names a policy field accepts (model.queue is imported late: it pulls in k-means). Strategies:
    every label family's (a config's own families check theirs at `/setup`)."""
    if field == "queue":
        from model.queue import QUEUES

        return sorted(QUEUES)
    return all_strategies() if field == "strategy" else list(CALIBRATIONS)


#: Built-in model kinds; "auto" lets the strategy choose (MC-dropout strategies an MLP, committee
#: strategies a committee, the rest logistic regression). Anything with a ":" names a factory.
BUILTIN_MODELS = ("auto", "logreg", "mlp", "committee")


class ProjectPolicy(BaseModel):
    """Per-project knobs, declared once: here. Stored as one JSON column; env defaults are LABELLOOP_<FIELD>.

    Defaults come from the environment; `/setup` `extra_params` may override. Unknown keys are
    refused so a typo in extra_params is reported instead of silently ignored.
    """

    model_config = ConfigDict(extra="forbid")

    # Uncertainty: how the model's doubt about a task is measured (model/uncertainty.py, and each label family's
    # own: backend/labelstudio/families.py). "auto": the family's default for the input (BALD for text classes,
    # margin for image classes and boxes).
    strategy: str = AUTO
    # How the scored pool becomes a queue (model/queue.py): greedy, explore, power, cluster.
    queue: str = "cluster"
    # The estimator: a built-in kind, or bring your own: "path/to/file.py:factory" or "package.module:factory"
    # returning a scikit-learn classifier (fit, predict_proba; optional transform, predict_proba_samples).
    model: str = "auto"
    # Types (besides scikit-learn, numpy, scipy) a bring-your-own model file may contain; loading refuses others.
    # A bare class name means a class defined in the model's own file.
    trusted_types: list[str] = Field(default_factory=list)
    retrain_every: int = Field(default=10, ge=1, description="train once this many new labels arrived")
    retrain_interval_s: int = Field(default=0, ge=0, description="also train every T seconds (0 = off)",
                                    json_schema_extra={"env": "LABELLOOP_RETRAIN_INTERVAL"})
    # Labels short of ``retrain_every`` (those that arrived during the last round, or the last few before a
    # break) are trained on once no new label came for this long, so the model serving after the last label
    # has learnt from every label; 0 = off.
    idle_train_s: int = Field(default=30, ge=0, description="train on waiting labels after T quiet seconds",
                              json_schema_extra={"env": "LABELLOOP_IDLE_TRAIN"})
    validation_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    # Control stream (opt-in): this share of the tasks outside the validation stream (by task-id hash) is queued
    # at random positions, and each round compares a shadow model fitted on those random labels with the active
    # ones at equal label counts: "active vs random on your data" in the history and the report; 0 = off.
    control_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Cold start: below this many labels per class part of the queue serves representative tasks (typical
    # tasks of k-means clusters of the pool), handing over to the strategy as labels grow; 0 = off. On the
    # real text sets it tied with the default (README, "Cold start"), so it is opt-in.
    warmup: float = Field(default=0.0, ge=0.0, le=100.0)
    set_sampling: bool = True
    # Probability calibration fitted on out-of-fold training predictions (model/calibration.py).
    calibration: str = "auto"
    # Stopping signal: "stop suggested" once kappa >= stop_kappa for stop_window iterations in a row.
    stop_kappa: float = Field(default=0.99, gt=0.0, le=1.0)
    stop_window: int = Field(default=3, ge=1)
    # Predictions of this many newest versions stay in Label Studio (0 = keep all); older ones are deleted,
    # except versions an auto-labelling run used.
    keep_versions: int = Field(default=2, ge=0)
    # Object detection (RectangleLabels): parameters of the built-in detector (model.detection.BoxDetector),
    # e.g. {"image_size": 128, "epochs": 60}; LABELLOOP_DETECTOR takes them as JSON.
    detector: dict[str, Any] = Field(default_factory=dict)

    @field_validator("strategy", "queue", "calibration")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        choices = _choices(info.field_name or "")
        if value not in choices:
            raise ValueError(f"unknown {info.field_name} {value!r}; choose one of {choices}")
        return value

    @field_validator("detector")
    @classmethod
    def _family_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Only the family's model's own parameters (not its classes: those come from the label config)."""
        if not value:
            return value  # nothing to check: the model is not imported for a project that has none
        known = params_family(info.field_name or "").param_names()
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown {info.field_name} parameter(s) {unknown}; choose from {sorted(known)}")
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str, info: ValidationInfo) -> str:
        """A built-in kind or a factory; "logreg" cannot serve a strategy that needs sampled probabilities."""
        if value not in BUILTIN_MODELS and ":" not in value:
            raise ValueError(f"unknown model {value!r}; choose one of {list(BUILTIN_MODELS)} or name a factory "
                             "as 'path/to/file.py:function' or 'package.module:function'")
        strategy = info.data.get("strategy")  # validated before this field (declaration order)
        if value == "logreg" and strategy in STRATEGIES and STRATEGIES[strategy].model != "logreg":
            raise ValueError(f"model 'logreg' gives one probability per class; strategy {strategy!r} needs "
                             "sampled probabilities ('mlp' or 'committee', or 'auto')")
        return value

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Each field's environment variable: LABELLOOP_<FIELD> unless the field names another."""
        names = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            names[name] = str(extra.get("env") or f"LABELLOOP_{name.upper()}")
        return names

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> ProjectPolicy:
        """A project's policy as stored; fields added since it was written take their defaults."""
        return cls.model_validate(stored or {})


class Settings(BaseModel):
    """Process-wide settings. Build with :meth:`from_env`; tests pass values directly."""

    label_studio_url: str | None = None
    label_studio_api_key: str | None = None
    model_dir: Path = Path("var/labelloop")
    database_url: str | None = None
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = None
    policy: ProjectPolicy = ProjectPolicy()
    # What this process does: "all" serves and trains (the default single process); "serve" answers Label
    # Studio and only queues training and jobs (`labelloop serve --no-train`); "worker" trains and runs jobs
    # without serving (`labelloop worker`, e.g. on a GPU box sharing the database).
    role: Literal["all", "serve", "worker"] = "all"
    # Sent by people and scripts in X-Labelloop-Operator-Token: needed for the operator routes
    # (/projects/..., /jobs/...) and to re-point a project to another Label Studio. Unset: routes open.
    operator_token: str | None = None
    # Bring-your-own model factories a project may name in /setup extra_params (running a factory runs the
    # user's code: the operator decides which). The environment's own LABELLOOP_MODEL is always allowed.
    custom_models: list[str] = Field(default_factory=list)
    # New project rows stop here, so ids nobody uses cannot grow the database without bound.
    max_projects: int = Field(default=1000, ge=1)
    # How long a training lease lasts without a heartbeat: a crashed worker frees the project after this.
    lease_seconds: int = 120
    # How often each serving worker looks for due timers and orphaned queued iterations.
    tick_seconds: float = 5.0
    # Predictions pushed to Label Studio per API call. Label Studio 1.23 recounts every task of the project
    # after each call (1.65 s on 12,000 tasks, 0.17 s on 1,200, whatever the batch holds; ~1 ms a prediction
    # on top), in write transactions of 1,000 tasks each: one call for the whole head costs the least time
    # and the fewest write locks annotators wait behind (benchmarks/push_cost.py measures it).
    push_batch_size: int = Field(default=500, ge=1)
    # Predictions pushed per round: the head of the queue, what annotators reach before the next round (0 =
    # every pool task). Tasks past it get their prediction from /predict when opened, from the round's rows.
    push_limit: int = Field(default=500, ge=0)
    # Request limits (backend/web/). A body over max_body_bytes is refused with 413 before it is read; /predict
    # takes at most max_predict_tasks tasks (Label Studio gives up on a request after 100 s) and scores them
    # predict_batch_size at a time so a worker's memory stays bounded; a webhook's payload is stored trimmed to
    # at most max_event_bytes of JSON (the events table is a record, not a copy of Label Studio).
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_predict_tasks: int = Field(default=10_000, ge=1)
    predict_batch_size: int = Field(default=500, ge=1)
    max_event_bytes: int = Field(default=64 * 1024, ge=1024)
    # Task images (backend/labelstudio/images.py). Loopback, private, link-local, multicast and reserved
    # addresses are refused unless named here (hosts, IPs or CIDR networks); Label Studio's own origin always
    # may serve images. A laptop with a local image server needs e.g. LABELLOOP_IMAGE_ALLOW=127.0.0.1.
    image_allow: list[str] = Field(default_factory=list)
    # One image may take this long in all (DNS, connect, redirects, body), so a server that drips bytes
    # cannot hold a request or a training round.
    image_deadline_seconds: float = Field(default=15.0, gt=0)
    image_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # Checked on the header, before decoding: a small file may claim a huge canvas (RGB costs 3 bytes a pixel).
    image_max_pixels: int = Field(default=40_000_000, ge=1)

    @field_validator("image_allow")
    @classmethod
    def _allow_entries(cls, value: list[str]) -> list[str]:
        """Refuse a malformed entry at start-up rather than at the first image fetch."""
        from backend.labelstudio.images import parse_allowlist

        parse_allowlist(value)
        return value

    @property
    def allowed_models(self) -> list[str]:
        """Factories a project may use: the operator's list plus the environment's default model."""
        return [*self.custom_models, self.policy.model]

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or the embedded SQLite file inside MODEL_DIR."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.model_dir / 'labelloop.sqlite3').resolve()}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        env_names = ProjectPolicy.env_names()
        policy_raw: dict[str, Any] = {key: get(name) for key, name in env_names.items() if get(name) is not None}
        if "trusted_types" in policy_raw:  # a comma-separated list in the environment
            policy_raw["trusted_types"] = [t.strip() for t in str(policy_raw["trusted_types"]).split(",") if t.strip()]
        if "detector" in policy_raw:  # JSON in the environment
            try:
                policy_raw["detector"] = json.loads(str(policy_raw["detector"]))
            except json.JSONDecodeError as exc:
                raise ValueError(f"LABELLOOP_DETECTOR={policy_raw['detector']!r}: not JSON ({exc})") from exc
        try:
            policy = ProjectPolicy.model_validate(policy_raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = env_names.get(str(first["loc"][0]), str(first["loc"][0]))
            raise ValueError(f"{name}={env.get(name)!r}: {first['msg']}") from exc

        raw: dict[str, object] = {
            "label_studio_url": get("LABEL_STUDIO_URL"),
            "label_studio_api_key": get("LABEL_STUDIO_API_KEY"),
            "database_url": get("DATABASE_URL"),
            "basic_auth_user": get("BASIC_AUTH_USER"),
            "basic_auth_pass": get("BASIC_AUTH_PASS"),
            "policy": policy,
        }
        if get("MODEL_DIR"):
            raw["model_dir"] = Path(get("MODEL_DIR"))  # type: ignore[arg-type]
        if get("LABELLOOP_ROLE"):
            raw["role"] = get("LABELLOOP_ROLE")
        if get("LABELLOOP_OPERATOR_TOKEN"):
            raw["operator_token"] = get("LABELLOOP_OPERATOR_TOKEN")
        if get("LABELLOOP_CUSTOM_MODELS"):
            raw["custom_models"] = [m.strip() for m in str(get("LABELLOOP_CUSTOM_MODELS")).split(",") if m.strip()]
        if get("LABELLOOP_MAX_PROJECTS"):
            raw["max_projects"] = get("LABELLOOP_MAX_PROJECTS")
        if get("LABELLOOP_LEASE_SECONDS"):
            raw["lease_seconds"] = get("LABELLOOP_LEASE_SECONDS")
        if get("LABELLOOP_PUSH_LIMIT"):
            raw["push_limit"] = get("LABELLOOP_PUSH_LIMIT")
        if get("LABELLOOP_PUSH_BATCH_SIZE"):
            raw["push_batch_size"] = get("LABELLOOP_PUSH_BATCH_SIZE")
        if get("LABELLOOP_TICK_SECONDS"):
            raw["tick_seconds"] = get("LABELLOOP_TICK_SECONDS")
        for name, key in (("LABELLOOP_MAX_BODY_BYTES", "max_body_bytes"),
                          ("LABELLOOP_MAX_PREDICT_TASKS", "max_predict_tasks"),
                          ("LABELLOOP_PREDICT_BATCH_SIZE", "predict_batch_size"),
                          ("LABELLOOP_MAX_EVENT_BYTES", "max_event_bytes")):
            if get(name):
                raw[key] = get(name)
        if get("LABELLOOP_IMAGE_ALLOW"):
            raw["image_allow"] = [h.strip() for h in str(get("LABELLOOP_IMAGE_ALLOW")).split(",") if h.strip()]
        for name, key in (("LABELLOOP_IMAGE_DEADLINE_SECONDS", "image_deadline_seconds"),
                          ("LABELLOOP_IMAGE_MAX_BYTES", "image_max_bytes"),
                          ("LABELLOOP_IMAGE_MAX_PIXELS", "image_max_pixels")):
            if get(name):
                raw[key] = get(name)
        return cls.model_validate(raw)
