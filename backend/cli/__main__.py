"""`python -m backend.cli` runs the `labelloop` command."""

import sys

from backend.cli.main import main

sys.exit(main())
