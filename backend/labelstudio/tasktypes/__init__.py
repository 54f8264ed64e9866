"""Task types by Label Studio control tag (see base.py for the contract)."""

from backend.labelstudio.tasktypes.base import TaskType, UnsupportedConfig
from backend.labelstudio.tasktypes.choices import ChoicesTask

#: Control tag -> task type. A new label type registers here.
TASK_TYPES: dict[str, type[TaskType]] = {ChoicesTask.tag: ChoicesTask}

__all__ = ["TASK_TYPES", "ChoicesTask", "TaskType", "UnsupportedConfig"]
