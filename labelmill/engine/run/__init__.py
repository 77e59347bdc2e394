"""The run itself: producer, workers, the sender seam, ordered output, failures, resolve, replay
workers, stats, stop reasons and the result; the two passes of `--select uncertainty`.

It may import every engine room below it; only `batch/` is built on it.
"""

from labelmill.engine.run._failures import FAILURES, Failure, FailureLog, IdRegistry
from labelmill.engine.run._once import SenderFactory, run_once
from labelmill.engine.run._requests import Done, Outcome, Request, Requests
from labelmill.engine.run._resolve import ReplayPool, Resolved, Resolver
from labelmill.engine.run._result import RunResult, RunStatus
from labelmill.engine.run._run import selection_for
from labelmill.engine.run._sender import NotBought, OnlineSender, Sender
from labelmill.engine.run._stats import LiveLine, OrderedOutput, Progress, RunStats
from labelmill.engine.run._stop import RefusalWatch, Stop, StopReason
from labelmill.engine.run._uncertainty import annotate_by_uncertainty

__all__ = [
    "FAILURES",
    "Done",
    "Failure",
    "FailureLog",
    "IdRegistry",
    "LiveLine",
    "NotBought",
    "OnlineSender",
    "OrderedOutput",
    "Outcome",
    "Progress",
    "RefusalWatch",
    "ReplayPool",
    "Request",
    "Requests",
    "Resolved",
    "Resolver",
    "RunResult",
    "RunStats",
    "RunStatus",
    "Sender",
    "SenderFactory",
    "Stop",
    "StopReason",
    "annotate_by_uncertainty",
    "run_once",
    "selection_for",
]
