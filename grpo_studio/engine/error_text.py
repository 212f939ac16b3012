"""Exceptions as the one line a message shows: GRPO Studio says what went wrong in a line, and keeps the
rest (tracebacks, library chatter) for the details."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of the exception's message, or its type's name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
