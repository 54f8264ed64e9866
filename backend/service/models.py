"""Which estimator a project trains: the policy's `model` (built-in kind or a user's factory) for its spec.

The one place that turns ``ProjectPolicy.model`` into an estimator, so training, simulate and the
`/setup` check agree. Built-in kinds are model.estimators.ChoiceClassifier; a factory is wrapped in
model.custom.BringYourOwn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.config import ProjectPolicy
from backend.labelstudio.tasktypes import ChoicesTask
from backend.service.access import Forbidden
from model.custom import BringYourOwn, FactoryError, is_factory_spec, make_user_estimator
from model.estimators import make_estimator
from model.uncertainty import get_strategy


def build_estimator(policy: ProjectPolicy, spec: ChoicesTask, random_state: int | None = 0) -> Any:
    """An unfitted estimator for the project (see module docstring)."""
    if is_factory_spec(policy.model):
        return BringYourOwn(factory=policy.model, classes=list(spec.labels), multi_label=spec.multi_label,
                            random_state=random_state)
    params: dict[str, Any] = {"calibration": policy.calibration}
    if policy.model != "auto":
        params["model"] = policy.model
    return make_estimator(policy.strategy, spec.modality, list(spec.labels), spec.multi_label,
                          random_state=random_state, **params)


def check_custom_model(policy: ProjectPolicy, allowed: Sequence[str]) -> None:
    """Refuse, before any round, a factory the operator did not allow, one that fails, or one that
    cannot serve the strategy. Raises :class:`Forbidden` or :class:`FactoryError` naming the problem."""
    if not is_factory_spec(policy.model):
        return
    if policy.model not in allowed:
        raise Forbidden(f"model {policy.model!r} is not one the operator allowed: list it in LABELLOOP_CUSTOM_MODELS "
                        "(or set it as LABELLOOP_MODEL) on the server", field="extra_params.model")
    estimator = make_user_estimator(policy.model)
    if get_strategy(policy.strategy).input_ndim == 3 and not callable(getattr(estimator, "predict_proba_samples",
                                                                                None)):
        raise FactoryError(f"model {policy.model!r} has no predict_proba_samples, which strategy "
                           f"{policy.strategy!r} needs; choose margin, entropy or least_confidence")
