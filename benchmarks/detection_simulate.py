"""Active learning for object detection on synthetic scenes (the `labelloop simulate-detection` command).

    .venv/bin/python benchmarks/detection_simulate.py [--seeds 3] [--budget 80] [--strategies entropy,localization]

See backend/cli/simulate_detection.py for what it prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.cli.simulate_detection import main  # noqa: E402

if __name__ == "__main__":
    main()
