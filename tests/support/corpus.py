"""A tiny labelled news corpus shared by the model unit tests (one class, "weather", never labelled)."""

from __future__ import annotations

CLASSES = ["sports", "politics", "tech", "weather"]

TRAIN = [
    ("the team won the football match", "sports"),
    ("a late goal decided the soccer game", "sports"),
    ("the striker scored twice in the final", "sports"),
    ("tennis champion wins the open tournament", "sports"),
    ("the coach praised the players after the match", "sports"),
    ("parliament passed the new budget law", "politics"),
    ("the minister resigned after the election", "politics"),
    ("voters elect a new president", "politics"),
    ("the senate debated the tax bill", "politics"),
    ("the government announced new policy on migration", "politics"),
    ("the new smartphone has a faster processor", "tech"),
    ("software update fixes security bug", "tech"),
    ("the startup released an open source database", "tech"),
    ("new laptop chip doubles battery life", "tech"),
    ("engineers train a machine learning model", "tech"),
]
TEXTS = [t for t, _ in TRAIN]
LABELS = [label for _, label in TRAIN]

HELD_OUT = [
    ("the players celebrated the goal", "sports"),
    ("election results for the president", "politics"),
    ("a security update for the software", "tech"),
]
