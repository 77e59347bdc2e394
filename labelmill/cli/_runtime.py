"""Process-wide settings, which belong to the CLI alone: Ctrl-C handling and a short GIL switch
interval for the length of a run, and the exit code of a result."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator

from labelmill.engine import AnnotateConfig, RunResult, RunStatus, annotate

# The reader and store-writer threads share the GIL with the event loop. At the interpreter's
# default 5 ms switch interval, a thread rendering a batch could keep the loop from sending and
# reading for that long whenever the loop woke up; 0.2 ms keeps it responsive (the first round
# of W2 finished ~20 ms sooner, measured).
SWITCH_INTERVAL_S = 0.0002

EXIT_CODES = {RunStatus.COMPLETE: 0, RunStatus.PARTIAL: 3, RunStatus.INTERRUPTED: 130}


@contextlib.contextmanager
def process_settings(on_interrupt: Callable[[], None]) -> Iterator[None]:
    """SIGINT calls `on_interrupt` (where the loop supports signal handlers) and the switch
    interval is at most SWITCH_INTERVAL_S; both are restored on exit."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(switch_interval)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)


async def annotate_in_process(config: AnnotateConfig) -> RunResult:
    """A run whose first Ctrl-C stops it gracefully (what is done is written)."""
    interrupt = asyncio.Event()
    with process_settings(interrupt.set):
        return await annotate(config, interrupt=interrupt)
