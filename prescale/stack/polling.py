"""Waiting for a condition: a poll with a deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from prescale.stack.errors import StackError

T = TypeVar("T")


def wait_for(cond: Callable[[], T | None], timeout_s: float, what: str,
             context: Callable[[], str] | None = None, interval_s: float = 0.25) -> T:
    """Call ``cond`` until it returns something truthy and return that.

    On timeout raise :class:`StackError` naming ``what``, followed by ``context()`` (for
    example the component logs) when given.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise StackError(f"{what}: not within {timeout_s:g}s{extra}")
        time.sleep(interval_s)
