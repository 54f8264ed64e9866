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

import platformdirs
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


#: The data location before there was one per user: relative, so it moved with the working directory.
LEGACY_MODEL_DIR = Path("var/labelloop")
SQLITE_NAME = "labelloop.sqlite3"


def default_model_dir() -> Path:
    """Where models, the journal and the default SQLite file live when MODEL_DIR is unset: the user's data
    directory (``~/.local/share/labelloop`` on Linux, or under ``$XDG_DATA_HOME``), the same whatever the
    working directory, so `labelloop serve` and `labelloop history` run anywhere agree."""
    return Path(platformdirs.user_data_dir("labelloop", appauthor=False))


def legacy_model_dir(cwd: Path | None = None) -> Path | None:
    """``./var/labelloop`` in ``cwd`` when it holds a database (the old default), else None.

    Such a database is kept in use rather than silently abandoned for an empty new one; the CLI says so
    on every command and how to move it (see backend/cli/main.py ``_data_notice``).
    """
    legacy = (cwd or Path.cwd()) / LEGACY_MODEL_DIR
    return legacy.resolve() if (legacy / SQLITE_NAME).is_file() else None


#: Built-in model kinds; "auto" lets the strategy choose (MC-dropout strategies an MLP, committee
#: strategies a committee, the rest logistic regression). Anything with a ":" names a factory.
BUILTIN_MODELS = ("auto", "logreg", "mlp", "committee")


class ProjectPolicy(BaseModel):
    """Per-project knobs, declared once: here. Stored as one JSON column; env defaults are LABELLOOP_<FIELD>.

    Defaults come from the environment; `/setup` `extra_params` may override. Unknown keys are
    refused so a typo in extra_params is reported instead of silently ignored.
    """

    model_config = ConfigDict(extra="forbid")

    # Each field's `description` is the user's documentation: docs/configuration.md is generated from it
    # (python -m backend.configdoc --write). The validators below check the names a field accepts.
    strategy: str = Field(default=AUTO, description=(
        "How the model's doubt about a task is measured. `auto`: the label family's default for the input "
        "(BALD for text classes; margin for image classes, for boxes, and for a model that cannot sample: "
        "`logreg`, `committee` or your own). Classes: `least_confidence`, `margin`, `entropy` (logistic model); "
        "`bald`, `predictive_entropy`, `variation_ratio`, `mean_std` (an MLP with Monte-Carlo dropout); "
        "`vote_entropy`, `kl_consensus` (a bootstrapped committee). Boxes: `entropy`, `margin`, `least_confidence`, "
        "`localization` (alias `mc_dropout`), `missed`, `random`, and the class names, mapped onto box ones. "
        "`/setup` refuses a name the config's controls cannot be scored by, naming the ones they can."))
    queue: str = Field(default="cluster", description=(
        "How the scored pool becomes a queue: `greedy` (most uncertain first), `explore` (a share placed at "
        "random), `power` (stochastic power sampling), `cluster` (k-means over the pool's features, round-robin "
        "over the clusters)."))
    model: str = Field(default="auto", description=(
        "The estimator: `auto` (the strategy chooses: logistic regression; an MLP for Monte-Carlo-dropout "
        "strategies such as the text default `bald`; a committee for committee strategies), `logreg`, `mlp`, "
        "`committee`, or your own factory `path/to/file.py:make` / `package.module:make` returning an unfitted "
        "scikit-learn classifier (see *Bring your own model*). In extra params a factory must also be allowed by "
        "`LABELLOOP_CUSTOM_MODELS`."))
    trusted_types: list[str] = Field(default_factory=list, description=(
        "Classes a bring-your-own model file may contain besides scikit-learn, numpy and scipy ones (a bare name "
        "means a class defined in the model's own file); loading refuses any other."))
    retrain_every: int = Field(default=10, ge=1, description=(
        "Train once this many new labels arrived (Label Studio's *Start training* button trains at once)."))
    retrain_interval_s: int = Field(default=0, ge=0, description=(
        "Also train every this many seconds when new labels arrived (0 = off)."),
        json_schema_extra={"env": "LABELLOOP_RETRAIN_INTERVAL"})
    idle_train_s: int = Field(default=30, ge=0, description=(
        "Labels short of `retrain_every` (those that came while the last round ran, or the last few before a "
        "break) are trained on once no label came for this many seconds, so the model serving after the last "
        "label has learnt from every label (0 = off)."),
        json_schema_extra={"env": "LABELLOOP_IDLE_TRAIN"})
    validation_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description=(
        "The random validation stream: tasks whose id hash falls under this share are never trained on, and "
        "every round places them at random positions of the queue, so the ones annotators label are a random "
        "sample of the pool (an unbiased yardstick, not the hard cases the strategy picked). Tasks whose "
        "annotation is marked *ground truth* replace it when there are any; the history says which "
        "(`metrics.validation_source`: `ground_truth` or `random_stream`). 0 = no validation."))
    control_fraction: float = Field(default=0.0, ge=0.0, lt=1.0, description=(
        "The control stream: this share of the tasks outside the validation stream (by task-id hash) is queued "
        "at random positions, and each round compares a shadow model fitted on those random labels with the "
        "active picks at equal label counts: *active vs random on your data* in the history and the report "
        "(0 = off)."))
    warmup: float = Field(default=0.0, ge=0.0, le=100.0, description=(
        "Cold start: below this many labels per class, a share (1 - labels per class / warmup) of the queue's "
        "positions serves representative tasks (the most typical task of k-means clusters of the pool's "
        "features) before uncertainty takes over. 0 = off: on the real text sets it tied with the default."))
    set_sampling: bool = Field(default=True, description=(
        "Switch the Label Studio project to *Uncertainty sampling* after each round, so Label Studio serves "
        "tasks in labelloop's order."))
    calibration: str = Field(default="auto", description=(
        "Probability calibration fitted on out-of-fold training predictions: `none`, `temperature`, `sigmoid`, "
        "`isotonic`, or `auto` (temperature or sigmoid once there are enough labels; none under a sampled "
        "strategy such as BALD, whose scores are the raw samples' mean). The one used is recorded per round."))
    stop_kappa: float = Field(default=0.99, gt=0.0, le=1.0, description=(
        "The stopping signal: \"stop suggested\" once consecutive rounds' predictions on a fixed sample of the "
        "pool agree with Cohen's kappa of at least this, `stop_window` rounds in a row."))
    stop_window: int = Field(default=3, ge=1, description="How many rounds in a row `stop_kappa` must hold.")
    keep_versions: int = Field(default=2, ge=0, description=(
        "Between rounds, delete from Label Studio the predictions of labelloop's versions older than the newest "
        "N (0 = keep all); versions an auto-labelling run used are always kept. Without it every round adds "
        "predictions and reading the project's tasks slows down round after round. Pruning waits until no round "
        "runs or waits (two versions per pause; while annotators are at work, only once 8 versions wait), since "
        "each delete holds Label Studio's write lock."))
    detector: dict[str, Any] = Field(default_factory=dict, description=(
        "Object detection: the built-in detector's parameters (`model.detection.BoxDetector`), e.g. "
        "`{\"image_size\": 128, \"epochs\": 150, \"mc_samples\": 8}`; JSON in the environment. An unknown "
        "name is refused."))
    tagger: dict[str, Any] = Field(default_factory=dict, description=(
        "Spans (NER): the built-in tagger's parameters (`model.spans.SpanTagger`: a CRF), e.g. "
        "`{\"c1\": 0.05, \"c2\": 0.05, \"max_iterations\": 100}`; JSON in the environment. An unknown name is "
        "refused."))

    @field_validator("strategy", "queue", "calibration")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        choices = _choices(info.field_name or "")
        if value not in choices:
            raise ValueError(f"unknown {info.field_name} {value!r}; choose one of {choices}")
        return value

    @field_validator("detector", "tagger")
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

    label_studio_url: str | None = Field(default=None, description=(
        "The Label Studio labelloop reads labels from and pushes predictions to, e.g. `http://localhost:8080`. "
        "Unset: each project uses the `hostname` Label Studio sends to `/setup`."))
    label_studio_api_key: str | None = Field(default=None, description=(
        "A Label Studio legacy token or personal access token (*Account & Settings*), used with "
        "`LABEL_STUDIO_URL`. Unset: each project uses the `access_token` Label Studio sends to `/setup`."))
    model_dir: Path = Field(default_factory=default_model_dir, description=(
        "Models, the webhook journal and (without `DATABASE_URL`) the SQLite history. Unset: the user's data "
        "directory (`~/.local/share/labelloop` on Linux), whatever the working directory; an old "
        "`./var/labelloop` holding a database in the working directory is used instead, with a notice."))
    database_url: str | None = Field(default=None, description=(
        "The history store, as an SQLAlchemy URL. Unset: SQLite in `MODEL_DIR` (`labelloop.sqlite3`). "
        "PostgreSQL: `postgresql+psycopg://user:pass@host/db`; serving replicas and training workers share one."))
    basic_auth_user: str | None = Field(default=None, description=(
        "With `BASIC_AUTH_PASS`, every route needs HTTP basic auth. Label Studio's auto-created webhook sends no "
        "auth header: add one (`Authorization: Basic ...`) to the project's webhook in *Settings -> Webhooks*."))
    basic_auth_pass: str | None = Field(default=None, description="The password for `BASIC_AUTH_USER`.")
    policy: ProjectPolicy = Field(default=ProjectPolicy(), description=(
        "Every project's defaults, from the `LABELLOOP_<FIELD>` variables; `/setup` extra params override them."))
    role: Literal["all", "serve", "worker"] = Field(default="all", description=(
        "What this process does: `all` serves and trains; `serve` answers Label Studio and only queues training "
        "and jobs (`labelloop serve --no-train`); `worker` trains and runs jobs without serving (`labelloop "
        "worker`, e.g. on a GPU box sharing the database)."))
    operator_token: str | None = Field(default=None, description=(
        "When set, the operators' routes (`/projects/...`, `/jobs/...`) need it in the "
        "`X-Labelloop-Operator-Token` header, and re-pointing a project to another Label Studio needs it too. "
        "Unset: those routes are open."))
    custom_models: list[str] = Field(default_factory=list, description=(
        "Bring-your-own model factories a project may name in `/setup` extra params (running a factory runs its "
        "code: the operator decides which). The environment's own `LABELLOOP_MODEL` is always allowed."))
    max_projects: int = Field(default=1000, ge=1, description=(
        "New project rows stop here, so requests naming unknown project ids cannot grow the database."))
    lease_seconds: int = Field(default=120, description=(
        "How long a training lease lasts without a heartbeat: a crashed trainer frees the project after this."))
    tick_seconds: float = Field(default=5.0, description=(
        "How often each process looks for due timers (interval and idle training) and orphaned queued rounds."))
    # Label Studio 1.23 recounts every task of the project after each import call (1.65 s on 12,000 tasks,
    # whatever the call holds), in write transactions annotators wait behind: one call per round costs least.
    push_batch_size: int = Field(default=500, ge=1, description=(
        "Predictions pushed to Label Studio per API call (paced and retried). Label Studio recounts the whole "
        "project after every call, so one call for the queue's head costs least (`benchmarks/push_cost.py`)."))
    push_limit: int = Field(default=500, ge=0, description=(
        "The most predictions a round pushes: the head of the queue, what annotators reach before the next "
        "round (0 = every pool task). The first round pushes this many; later ones push 4x the labels that "
        "arrived over the last round's cycle, at least 100 and 4 x `LABELLOOP_RETRAIN_EVERY`. A task past the "
        "head gets the round's prediction from `/predict` (from the round's stored rows) when it is opened."))
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description=(
        "A request body over this is refused with 413 before it is read."))
    max_predict_tasks: int = Field(default=10_000, ge=1, description=(
        "The most tasks one `/predict` takes (Label Studio gives up on a request after 100 s); more get a 413 "
        "saying how to split them."))
    predict_batch_size: int = Field(default=500, ge=1, description=(
        "Tasks `/predict` scores per model pass, so a worker's memory stays bounded."))
    max_event_bytes: int = Field(default=64 * 1024, ge=1024, description=(
        "A webhook's payload is stored trimmed to at most this much JSON (the events table is a record, not a "
        "copy of Label Studio)."))
    image_allow: list[str] = Field(default_factory=list, description=(
        "Image fetches refuse loopback, private, link-local, multicast and reserved addresses (checked after DNS "
        "and on every redirect) unless named here: hosts, IPs or CIDR networks, e.g. "
        "`127.0.0.1` for a local image server. Label Studio's own origin may always serve images."))
    image_deadline_seconds: float = Field(default=15.0, gt=0, description=(
        "One image's total time (DNS, connect, redirects, body), so a server that drips bytes cannot hold a "
        "request or a round."))
    image_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1, description="One image's largest size, in bytes.")
    image_max_pixels: int = Field(default=40_000_000, ge=1, description=(
        "One image's largest pixel count, checked on the header before decoding: a small file may claim a huge "
        "canvas (RGB costs 3 bytes a pixel)."))

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
        return f"sqlite:///{(self.model_dir / SQLITE_NAME).resolve()}"

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
        for field in ("detector", "tagger"):  # a label family's model parameters: JSON in the environment
            if field in policy_raw:
                try:
                    policy_raw[field] = json.loads(str(policy_raw[field]))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{env_names[field]}={policy_raw[field]!r}: not JSON ({exc})") from exc
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
        elif not get("DATABASE_URL") and (legacy := legacy_model_dir()) is not None:
            raw["model_dir"] = legacy  # the old default's data, kept in use (the CLI says so)
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
