"""The exceptions that cross layers, each answered with a status and the field or tag it names."""

from __future__ import annotations


class BadInput(ValueError):
    """Client data the backend cannot use (400). `field` names the offending JSON path."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Forbidden(Exception):
    """The caller may not do this (403); `field` names what asked for it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedConfig(ValueError):
    """The label config has a shape labelloop does not serve (422); the message names the tag."""


class NotReady(Exception):
    """labelloop cannot work for the project until the user changes a setting (424); `field` names it.

    Answered to Label Studio's ``/setup``, whose connection dialog and model card then show the message.
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field
