"""Waiting for a condition in async tests, instead of sleeping a guessed while."""

from __future__ import annotations

import asyncio
import time


async def until(condition, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait until condition() is true, polling the event loop; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(0.01)
