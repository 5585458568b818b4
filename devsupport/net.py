"""Loopback ports and polling: what every process-starting helper needs."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    """Let the kernel pick, so parallel runs and a user's own Redis on 6379 don't clash."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str = "condition",
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> None:
    """Poll `predicate` until it is truthy; exceptions of `retry_on` count as "not yet"
    (servers in transition refuse or redirect for a moment)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except retry_on as exc:
            last_error = exc
        time.sleep(interval)
    suffix = f" (last error: {last_error})" if last_error else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{suffix}")
