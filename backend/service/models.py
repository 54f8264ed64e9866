"""Which estimator a project trains and which strategy scores it: its policy, asked of its label family.

The one place that turns a ``ProjectPolicy`` into an estimator request, so training, simulate and the
`/setup` check agree. What each family builds (a classifier, the detector, one model per control) is
declared in the registry of label families (backend/labelstudio/families.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.config import ProjectPolicy
from backend.errors import BadInput, UnsupportedConfig
from backend.labelstudio.families import (
    CLASSES,
    EstimatorRequest,
    calibration_for,
    family_of,
    family_params,
    import_model_modules,
)
from backend.labelstudio.tasktypes import TaskType
from backend.service.access import Forbidden
from model import persistence
from model.custom import FactoryError, is_factory_spec, load_factory, trusted_type_names
from model.uncertainty import AUTO, DEFAULT_STRATEGY

__all__ = ["build_estimator", "calibration_for", "check_custom_model", "check_strategy", "resolve_strategy",
           "strategy_for",
           "trusted_types", "verify_loadable"]


def resolve_strategy(strategy: str, model: str, spec: TaskType | None) -> str:
    """The strategy a project's rounds and /predict use: ``strategy`` itself unless it is "auto", which
    becomes the label family's default for the config (several controls: their common default, else margin).
    """
    if strategy != AUTO:
        return strategy
    return family_of(spec).default_strategy(spec, model) if spec is not None else DEFAULT_STRATEGY


def strategy_for(strategy: str, model: str, modality: str | None) -> str:
    """:func:`resolve_strategy` for a classification replay that knows its input (``labelloop simulate``):
    the classification family's default for ``modality``; unknown input keeps margin."""
    if strategy != AUTO:
        return strategy
    return CLASSES.default_for(modality, model) if modality is not None else DEFAULT_STRATEGY


def build_estimator(policy: ProjectPolicy, spec: TaskType, random_state: int | None = 0,
                    strategy: str | None = None) -> Any:
    """An unfitted estimator for the project, built by its label family.

    ``strategy``: the resolved one (see :func:`resolve_strategy`, the default), passed down so every
    control of a multi-control project gets the estimator the project's one strategy needs.
    """
    request = EstimatorRequest(strategy=strategy or resolve_strategy(policy.strategy, policy.model, spec),
                               model=policy.model, calibration=policy.calibration, params=family_params(policy),
                               random_state=random_state)
    return family_of(spec).build_estimator(spec, request)


def check_strategy(spec: TaskType, policy: ProjectPolicy) -> None:
    """Refuse a strategy the config's label families cannot score (e.g. box ``localization`` for
    ``<Choices>``), naming the control and the names it takes: BadInput on ``extra_params.strategy``."""
    try:
        family_of(spec).check_strategy(spec, policy.strategy)
    except UnsupportedConfig as exc:
        raise BadInput(f"extra_params.strategy: {exc}", field="extra_params.strategy") from exc


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
    import_model_modules()
    try:
        persistence.loads(artifact, trusted_types(model, declared))
    except persistence.UntrustedModelError as exc:
        raise FactoryError(f"model {model!r} holds types labelloop does not trust: {', '.join(exc.types)}; "
                           "declare them in trusted_types (extra params) or LABELLOOP_TRUSTED_TYPES "
                           "(a bare class name means one defined in the model's file)") from exc


def check_custom_model(policy: ProjectPolicy, allowed: Sequence[str], spec: TaskType) -> None:
    """Refuse, before any round, a factory the operator did not allow, one that fails, one the config's label
    families cannot serve, or one that cannot serve the strategy. Raises :class:`Forbidden` or
    :class:`FactoryError` naming the problem."""
    if not is_factory_spec(policy.model):
        return
    if policy.model not in allowed:
        raise Forbidden(f"model {policy.model!r} is not one the operator allowed: list it in LABELLOOP_CUSTOM_MODELS "
                        "(or set it as LABELLOOP_MODEL) on the server", field="extra_params.model")
    family_of(spec).check_factory(spec, policy.model, resolve_strategy(policy.strategy, policy.model, spec))
