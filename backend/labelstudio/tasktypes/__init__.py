"""Task types by Label Studio control tag (see base.py for the contract)."""

from backend.labelstudio.tasktypes.base import TaskType, UnsupportedConfig
from backend.labelstudio.tasktypes.choices import ChoicesTask
from backend.labelstudio.tasktypes.multi import MultiControlTask
from backend.labelstudio.tasktypes.rectangles import RectanglesTask

#: Control tag -> task type. A new label type registers here.
TASK_TYPES: dict[str, type[TaskType]] = {ChoicesTask.tag: ChoicesTask, RectanglesTask.tag: RectanglesTask}

__all__ = ["TASK_TYPES", "ChoicesTask", "MultiControlTask", "RectanglesTask", "TaskType", "UnsupportedConfig"]
