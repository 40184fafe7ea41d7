"""The one polling helper of the tests: wait for a condition, fail clearly when it never holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    what: str = "",
    *,
    interval: float = 0.01,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``condition`` until it returns something true, and return that.

    ``timeout`` only guards against a hang: it fails the test (``AssertionError`` naming
    ``what`` and the last value) rather than measuring anything. Exceptions of the types in
    ``retry_on`` (say ``OSError`` while a server is still starting) count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            value = condition()
        except retry_on as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or condition}; last: {last!r}"
            )
        time.sleep(interval)
