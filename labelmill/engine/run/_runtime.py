"""Process-wide settings for the length of a run: Ctrl-C handling and a short GIL switch interval."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator

# The reader and store-writer threads share the GIL with the event loop. At the interpreter's
# default 5 ms switch interval, a thread rendering a batch could keep the loop from sending and
# reading for that long whenever the loop woke up; 0.2 ms keeps it responsive (the first round
# of W2 finished ~20 ms sooner, measured).
SWITCH_INTERVAL_S = 0.0002


@contextlib.contextmanager
def run_settings(on_interrupt: Callable[[], None]) -> Iterator[None]:
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
