"""One registry of label families: everything labelloop serves, and what each family brings with it.

A label family is one kind of answer an annotator gives: classes (``<Choices>``), boxes
(``<RectangleLabels>``), spans (``<Labels>``). A family declares, in one place:

- its **task type** (``tasktypes/``): the control's Label Studio JSON, targets, predictions, metrics,
  agreement between rounds;
- its **model factory**: the estimator a project trains for one such control, from the project's
  resolved strategy and policy;
- its **strategies**: the acquisition names its models can be scored by, and its default under
  ``auto``;
- its **scoring**: class probabilities go through the kernel's own path (``model.scoring.score``);
  any other answer is scored by the estimator itself (``score_items``);
- its **persistence**: the modules whose estimator classes its saved models hold (model files only
  resolve classes of imported modules, see ``model.persistence``);
- what else it supports: cross-fitted rows for auto-labelling, the control-stream comparison, an
  offline replay from a Label Studio export.

Every caller asks :func:`family_of`; no other module chooses by label family. Several controls on one
object (``MultiControlTask``) are served by :class:`Composite`, which asks each control's family.
Adding a label type: a task-type module, a model package under ``model/``, one entry in
:data:`FAMILIES` (and a policy field, when its model takes parameters of its own).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from backend.errors import UnsupportedConfig
from backend.labelstudio.tasktypes import ChoicesTask, LabelsTask, MultiControlTask, RectanglesTask, TaskType

#: The strategy name that means "the family's default for this input".
AUTO = "auto"
#: What a project with several controls gets under "auto" when their defaults differ: every family
#: takes it (the detection family maps it to box margin).
COMMON_STRATEGY = "margin"


@dataclass(frozen=True)
class EstimatorRequest:
    """What a family's model factory is given: the project's choices, already resolved.

    ``params`` holds every family's model parameters from the policy (``{family name: {...}}``, e.g.
    the detector's), so a family reads its own and a composite passes the same request down.
    """

    strategy: str
    model: str = "auto"
    calibration: str = "auto"
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    random_state: int | None = 0


class LabelFamily:
    """One family's declarations (see the module docstring). Subclasses are registered in :data:`FAMILIES`."""

    #: The family's name (history, messages): "classification", "detection", "spans".
    name: ClassVar[str] = ""
    #: Its Label Studio adapter, chosen by control tag.
    task_type: ClassVar[type[TaskType]]
    #: Modules whose estimator classes this family's model files hold.
    model_modules: ClassVar[tuple[str, ...]] = ()
    #: The ``ProjectPolicy`` field holding its model's parameters (``detector``), if it has any.
    params_field: ClassVar[str | None] = None
    #: Auto-labelling may add cross-fitted rows over the training labels (five refits of the model).
    crossfit: ClassVar[bool] = False
    #: The control stream's active-vs-random comparison is computed for it.
    compares_streams: ClassVar[bool] = False
    #: How to replay it offline (``labelloop simulate --data`` replays the families where this is "").
    replay_elsewhere: ClassVar[str] = ""

    def strategies(self) -> list[str]:
        """The strategy names its models can be scored by (names it maps onto its own included)."""
        raise NotImplementedError

    def default_strategy(self, task_type: TaskType, model: str) -> str:
        """The strategy under ``auto`` for this control and the project's ``model`` setting."""
        raise NotImplementedError

    def build_estimator(self, task_type: TaskType, request: EstimatorRequest) -> Any:
        """An unfitted estimator for one control of this family."""
        raise NotImplementedError

    def param_names(self) -> set[str]:
        """The parameters its model accepts in ``params_field`` (empty: it takes none)."""
        return set()

    def check_factory(self, task_type: TaskType, factory: str, strategy: str) -> None:
        """Refuse (``model.custom.FactoryError``) a bring-your-own factory this family cannot serve under
        ``strategy``: build its estimator once and check the methods the family's contract needs."""
        from model.custom import FactoryError

        raise FactoryError(f"model {factory!r}: a bring-your-own model cannot serve <{task_type.tag} name="
                           f"\"{task_type.from_name}\"> ({self.name}) yet; bring-your-own models serve <Choices> "
                           "and <Labels> controls")

    def check_strategy(self, task_type: TaskType, strategy: str) -> None:
        """Refuse, naming the control and the valid names, a strategy this family cannot score."""
        if strategy != AUTO and strategy not in self.strategies():
            raise UnsupportedConfig(
                f"strategy {strategy!r} cannot score <{task_type.tag} name=\"{task_type.from_name}\"> ({self.name}); "
                f"choose one of {[AUTO, *sorted(self.strategies())]}")

    def params_of(self, request: EstimatorRequest) -> dict[str, Any]:
        return dict(request.params.get(self.name) or {})


class Classes(LabelFamily):
    """``<Choices>``: class probabilities per task, scored by the kernel (margin, BALD, committees...)."""

    name = "classification"
    task_type = ChoicesTask
    model_modules = ("model.estimators", "model.features", "model.calibration", "model.custom")
    crossfit = True
    compares_streams = True

    def strategies(self) -> list[str]:
        from model.uncertainty import STRATEGIES

        return sorted(STRATEGIES)

    def default_strategy(self, task_type: TaskType, model: str) -> str:
        return self.default_for(task_type.modality, model)

    @staticmethod
    def default_for(modality: str, model: str) -> str:
        """BALD for text when labelloop picks the model (``auto`` or ``mlp``), else margin (see
        ``model.uncertainty.default_strategy`` for the measurements): a model the project named or
        brought may not sample, and margin is what every classifier can serve."""
        from model.uncertainty import DEFAULT_STRATEGY, default_strategy

        return default_strategy(modality) if model in ("auto", "mlp") else DEFAULT_STRATEGY

    def check_factory(self, task_type: TaskType, factory: str, strategy: str) -> None:
        from model.custom import FactoryError, make_user_estimator
        from model.uncertainty import STRATEGIES

        estimator = make_user_estimator(factory)
        sampled = strategy in STRATEGIES and STRATEGIES[strategy].input_ndim == 3
        if sampled and not callable(getattr(estimator, "predict_proba_samples", None)):
            raise FactoryError(f"model {factory!r} has no predict_proba_samples, which strategy {strategy!r} "
                               "needs; choose margin, entropy or least_confidence")

    def build_estimator(self, task_type: TaskType, request: EstimatorRequest) -> Any:
        from model.custom import BringYourOwn, is_factory_spec
        from model.estimators import make_estimator

        assert isinstance(task_type, ChoicesTask)
        if is_factory_spec(request.model):
            return BringYourOwn(factory=request.model, classes=list(task_type.labels),
                                multi_label=task_type.multi_label, random_state=request.random_state)
        params: dict[str, Any] = {"calibration": calibration_for(request.calibration, request.strategy)}
        if request.model != "auto":
            params["model"] = request.model
        return make_estimator(request.strategy, task_type.modality, list(task_type.labels), task_type.multi_label,
                              random_state=request.random_state, **params)


class Boxes(LabelFamily):
    """``<RectangleLabels>``: boxes per image from the built-in detector, which scores itself."""

    name = "detection"
    task_type = RectanglesTask
    model_modules = ("model.detection.detector",)
    params_field = "detector"
    replay_elsewhere = "`labelloop simulate-detection` (model.detection.simulation)"

    def strategies(self) -> list[str]:
        """Its own heuristics, ``mc_dropout``, and every classification name (mapped onto box
        heuristics by ``model.detection.kernel.detection_strategy_name``)."""
        from model.detection.uncertainty import ALIASES, DETECTION_STRATEGIES
        from model.uncertainty import STRATEGIES

        return sorted({*DETECTION_STRATEGIES, *ALIASES, *STRATEGIES})

    def default_strategy(self, task_type: TaskType, model: str) -> str:
        return "margin"  # box margin: the best-scored box's class margin, per image

    def build_estimator(self, task_type: TaskType, request: EstimatorRequest) -> Any:
        from model.detection.detector import BoxDetector

        assert isinstance(task_type, RectanglesTask)
        return BoxDetector(classes=list(task_type.labels), random_state=request.random_state or 0,
                           **self.params_of(request))

    def param_names(self) -> set[str]:
        from model.detection.detector import BoxDetector

        return set(BoxDetector().get_params()) - {"classes"}


class Spans(LabelFamily):
    """``<Labels>`` over ``<Text>``: spans per text from a CRF tagger trained on the project's own spans,
    which scores itself (sequence uncertainty: least confidence of the best path by default)."""

    name = "spans"
    task_type = LabelsTask
    model_modules = ("model.spans.tagger", "model.spans.custom")
    params_field = "tagger"
    replay_elsewhere = "`labelloop simulate-spans` (model.spans.simulation)"

    def strategies(self) -> list[str]:
        """Its own heuristics and every classification name (mapped by ``span_strategy_name``: margin to
        least confidence, entropy to token entropy, sampled names to the default while the CRF cannot sample)."""
        from model.spans.uncertainty import SPAN_STRATEGIES
        from model.uncertainty import STRATEGIES

        return sorted({*SPAN_STRATEGIES, *STRATEGIES})

    def default_strategy(self, task_type: TaskType, model: str) -> str:
        from model.spans.uncertainty import DEFAULT_SPAN_STRATEGY

        return DEFAULT_SPAN_STRATEGY

    def build_estimator(self, task_type: TaskType, request: EstimatorRequest) -> Any:
        from model.custom import is_factory_spec
        from model.spans.custom import BringYourOwnTagger
        from model.spans.tagger import SpanTagger

        assert isinstance(task_type, LabelsTask)
        if is_factory_spec(request.model):
            return BringYourOwnTagger(factory=request.model, labels=list(task_type.labels),
                                      random_state=request.random_state)
        return SpanTagger(labels=list(task_type.labels), random_state=request.random_state,
                          **self.params_of(request))

    def check_factory(self, task_type: TaskType, factory: str, strategy: str) -> None:
        from model.custom import make_user_estimator
        from model.spans.custom import REQUIRED

        make_user_estimator(factory, required=REQUIRED, kind="a span tagger")

    def param_names(self) -> set[str]:
        from model.spans.tagger import SpanTagger

        return set(SpanTagger().get_params()) - {"labels", "random_state"}


class Composite(LabelFamily):
    """Several controls on one object: a model per control (``model.percontrol.PerControl``)."""

    name = "multi"
    task_type = MultiControlTask
    replay_elsewhere = "one control at a time (edit the label config down to that control)"

    def default_strategy(self, task_type: TaskType, model: str) -> str:
        """The controls' common default, or :data:`COMMON_STRATEGY` when they differ: one strategy
        scores every control of a task."""
        defaults = {family_of(c).default_strategy(c, model) for c in controls_of(task_type)}
        return defaults.pop() if len(defaults) == 1 else COMMON_STRATEGY

    def build_estimator(self, task_type: TaskType, request: EstimatorRequest) -> Any:
        from model.percontrol import PerControl

        return PerControl({c.from_name: family_of(c).build_estimator(c, request) for c in controls_of(task_type)})

    def check_strategy(self, task_type: TaskType, strategy: str) -> None:
        for c in controls_of(task_type):
            family_of(c).check_strategy(c, strategy)

    def check_factory(self, task_type: TaskType, factory: str, strategy: str) -> None:
        for c in controls_of(task_type):
            family_of(c).check_factory(c, factory, strategy)


CLASSES = Classes()
#: Label family name -> family. A new label type registers here.
FAMILIES: dict[str, LabelFamily] = {f.name: f for f in (CLASSES, Boxes(), Spans())}
COMPOSITE = Composite()
#: Control tag -> task type, for the label-config parser.
TASK_TYPES: dict[str, type[TaskType]] = {f.task_type.tag: f.task_type for f in FAMILIES.values()}
_BY_TASK_TYPE: dict[type[TaskType], LabelFamily] = {f.task_type: f for f in (*FAMILIES.values(), COMPOSITE)}


def family_of(task_type: TaskType) -> LabelFamily:
    """The family serving a parsed control (or :data:`COMPOSITE` for several controls on one object)."""
    try:
        return _BY_TASK_TYPE[type(task_type)]
    except KeyError:
        raise UnsupportedConfig(f"no label family serves {type(task_type).__name__}") from None


def controls_of(task_type: TaskType) -> tuple[TaskType, ...]:
    """The single controls a parsed config holds."""
    return task_type.controls if isinstance(task_type, MultiControlTask) else (task_type,)


def all_strategies() -> list[str]:
    """Every strategy name some family takes, and ``auto``: what a policy may name before a config is known."""
    return [AUTO, *sorted({name for f in FAMILIES.values() for name in f.strategies()})]


def params_family(policy_field: str) -> LabelFamily:
    """The family whose model parameters live in ``policy_field``."""
    return next(f for f in FAMILIES.values() if f.params_field == policy_field)


def family_params(policy: Any) -> dict[str, dict[str, Any]]:
    """Each family's model parameters from a ``ProjectPolicy`` (by the families' ``params_field``)."""
    return {f.name: dict(getattr(policy, f.params_field) or {}) for f in FAMILIES.values() if f.params_field}


def import_model_modules(families: Sequence[LabelFamily] | None = None) -> None:
    """Import the modules whose classes model files hold, so ``model.persistence`` can resolve them (it
    never imports a module a file names: that would run code the file's author chose)."""
    for family in families if families is not None else FAMILIES.values():
        for module in family.model_modules:
            importlib.import_module(module)


def calibration_for(calibration: str, strategy: str) -> str:
    """The calibration a classifier fits: "none" for "auto" under a sampled strategy, else as asked.

    A sampled strategy scores tasks (labels, confidence, auto-labelling) by the mean of the raw samples,
    which no calibrator touches (ChoiceClassifier.predict_proba_samples): fitting one would cost a round
    three more fits of the network for nothing. An explicit calibration is still fitted.
    """
    from model.uncertainty import get_strategy

    return "none" if calibration == "auto" and get_strategy(strategy).input_ndim == 3 else calibration


def supported_text() -> str:
    """What labelloop serves, for error messages: each family's task type says it."""
    return "; ".join(f.task_type.supported for f in FAMILIES.values()) + \
        "; several such controls on one object get a model each"
