"""An event loop on virtual time, for tests of code that sleeps on the loop's clock (pacing,
pauses, spread slots): the clock jumps to the next timer whenever nothing is ready, so a minute of
traffic takes a fraction of a second and every run is the same. Only for code that awaits no I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer when nothing is ready (no I/O is awaited)."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 6000.0  # a calendar-minute boundary, for the fixed window

    def time(self) -> float:
        return self._virtual_now

    def _run_once(self) -> None:
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        if not self._ready and scheduled:  # type: ignore[attr-defined]
            self._virtual_now = max(self._virtual_now, scheduled[0].when())
        super()._run_once()  # type: ignore[misc]


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on virtual time."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
