"""Which estimator a project trains: the policy's `model` (built-in kind or a user's factory) for its spec.

The one place that turns ``ProjectPolicy.model`` into an estimator, so training, simulate and the
`/setup` check agree. Built-in kinds are model.estimators.ChoiceClassifier; a factory is wrapped in
model.custom.BringYourOwn; a detection control gets model.detection.BoxDetector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.config import ProjectPolicy
from backend.labelstudio.tasktypes import ChoicesTask, MultiControlTask, TaskType
from backend.service.access import Forbidden
from model import persistence
from model.custom import (
    BringYourOwn,
    FactoryError,
    is_factory_spec,
    load_factory,
    make_user_estimator,
    trusted_type_names,
)
from model.estimators import make_estimator
from model.percontrol import PerControl
from model.uncertainty import AUTO, DEFAULT_STRATEGY, default_strategy, get_strategy


def resolve_strategy(strategy: str, model: str, spec: TaskType | None) -> str:
    """The strategy a project's rounds and /predict use: ``strategy`` itself unless it is "auto".

    A project with several controls gets the text default only when every control is text, since
    one strategy scores all of them. Detection (boxes) has its own scoring and ignores the strategy.
    """
    modality = None
    if spec is not None:
        controls = spec.controls if isinstance(spec, MultiControlTask) else (spec,)
        kinds = {"box" if c.kind == "detection" else c.modality for c in controls}
        modality = kinds.pop() if len(kinds) == 1 else None
    return strategy_for(strategy, model, modality)


def strategy_for(strategy: str, model: str, modality: str | None) -> str:
    """``strategy``, or for "auto" the input's default (model.uncertainty.default_strategy: BALD for
    text, margin for images) when labelloop chooses the model too. A model the project named
    ("logreg", "committee") or brought (a factory, which may not sample), and mixed or unknown
    input, keep margin, which every classifier can serve."""
    if strategy != AUTO:
        return strategy
    if modality is None or model not in ("auto", "mlp"):
        return DEFAULT_STRATEGY
    return default_strategy(modality)


def calibration_for(calibration: str, strategy: str) -> str:
    """The calibration to fit: "none" for "auto" under a sampled strategy, else as asked.

    A sampled strategy scores tasks (labels, confidence, auto-labelling) by the mean of the raw samples,
    which no calibrator touches (ChoiceClassifier.predict_proba_samples): fitting one would cost a round
    three more fits of the network for nothing. An explicit calibration is still fitted.
    """
    return "none" if calibration == "auto" and get_strategy(strategy).input_ndim == 3 else calibration


def build_estimator(policy: ProjectPolicy, spec: TaskType, random_state: int | None = 0,
                    strategy: str | None = None) -> Any:
    """An unfitted estimator for the project (see module docstring).

    ``strategy``: the resolved one (see :func:`resolve_strategy`, the default), passed down so every
    control of a multi-control project gets the estimator the project's one strategy needs.
    """
    strategy = strategy or resolve_strategy(policy.strategy, policy.model, spec)
    if isinstance(spec, MultiControlTask):  # a model per control, each built as for that control alone
        return PerControl({c.from_name: build_estimator(policy, c, random_state, strategy) for c in spec.controls})
    if spec.kind == "detection":  # boxes: the built-in detector, with the project's detector parameters
        from model.detection.detector import BoxDetector

        return BoxDetector(classes=list(spec.labels), random_state=random_state or 0, **policy.detector)
    assert isinstance(spec, ChoicesTask)
    if is_factory_spec(policy.model):
        return BringYourOwn(factory=policy.model, classes=list(spec.labels), multi_label=spec.multi_label,
                            random_state=random_state)
    params: dict[str, Any] = {"calibration": calibration_for(policy.calibration, strategy)}
    if policy.model != "auto":
        params["model"] = policy.model
    return make_estimator(strategy, spec.modality, list(spec.labels), spec.multi_label,
                          random_state=random_state, **params)


def trusted_types(model: str, declared: Sequence[str]) -> list[str]:
    """The class names a project's model file may hold beyond labelloop's own, as persistence wants them.

    For a factory this also imports the user's module, so the classes it defines resolve on load.
    """
    if not is_factory_spec(model):
        return []
    load_factory(model)
    return trusted_type_names(model, declared)


def verify_loadable(artifact: bytes, model: str, declared: Sequence[str]) -> None:
    """Refuse, at the round that wrote it, a bring-your-own model file that could not be loaded to serve."""
    if not is_factory_spec(model):
        return
    try:
        persistence.loads(artifact, trusted_types(model, declared))
    except persistence.UntrustedModelError as exc:
        raise FactoryError(f"model {model!r} holds types labelloop does not trust: {', '.join(exc.types)}; "
                           "declare them in trusted_types (extra params) or LABELLOOP_TRUSTED_TYPES "
                           "(a bare class name means one defined in the model's file)") from exc


def check_custom_model(policy: ProjectPolicy, allowed: Sequence[str]) -> None:
    """Refuse, before any round, a factory the operator did not allow, one that fails, or one that
    cannot serve the strategy. Raises :class:`Forbidden` or :class:`FactoryError` naming the problem."""
    if not is_factory_spec(policy.model):
        return
    if policy.model not in allowed:
        raise Forbidden(f"model {policy.model!r} is not one the operator allowed: list it in LABELLOOP_CUSTOM_MODELS "
                        "(or set it as LABELLOOP_MODEL) on the server", field="extra_params.model")
    estimator = make_user_estimator(policy.model)
    sampled = get_strategy(resolve_strategy(policy.strategy, policy.model, None)).input_ndim == 3
    if sampled and not callable(getattr(estimator, "predict_proba_samples", None)):
        raise FactoryError(f"model {policy.model!r} has no predict_proba_samples, which strategy "
                           f"{policy.strategy!r} needs; choose margin, entropy or least_confidence")
