"""`labelloop simulate`: offline active-learning replay with a random control arm (in progress)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the `simulate` subcommand (filled in by the simulate work)."""
