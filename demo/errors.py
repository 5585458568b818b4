"""The demo's user-facing errors, and the one way they quote what the user sent.

Messages echo input so the user sees what was wrong, but only a bounded piece of it: an
attacker-sized input must not come back whole in a 422.
"""

from __future__ import annotations

MAX_ECHO = 60
"""Characters of user input a message quotes at most."""
MAX_MESSAGE = 600
"""Characters of a whole error message at most (the last line of defence)."""


def shown(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)``, cut to ``limit`` characters with a note of the full length."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DemoError(Exception):
    """A request the demo cannot honour; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = clip(message)
        if status is not None:
            self.status = status

    def __reduce__(self) -> tuple[type[DemoError], tuple[str, int]]:
        # Raised in the worker's process and re-raised in the server's: keep the status.
        return (type(self), (self.message, self.status))


class NotFound(DemoError):
    status = 404


class Conflict(DemoError):
    status = 409
