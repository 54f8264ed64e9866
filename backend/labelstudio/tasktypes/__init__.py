"""Task types by Label Studio control tag (see base.py for the contract; families.py registers them)."""

from backend.labelstudio.tasktypes.base import TaskType, UnsupportedConfig
from backend.labelstudio.tasktypes.choices import ChoicesTask
from backend.labelstudio.tasktypes.multi import MultiControlTask
from backend.labelstudio.tasktypes.rectangles import RectanglesTask
from backend.labelstudio.tasktypes.spans import LabelsTask

__all__ = ["ChoicesTask", "LabelsTask", "MultiControlTask", "RectanglesTask", "TaskType", "UnsupportedConfig"]
