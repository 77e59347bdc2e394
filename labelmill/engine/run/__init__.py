"""The run itself: producer, workers, the sender seam, ordered output, failures, resolve, replay
workers, stats, stop reasons and the result.

The top of the engine: it may import every other engine room; none of them imports it.
"""

from labelmill.engine.run._annotate import annotate
from labelmill.engine.run._batch import BatchRoute
from labelmill.engine.run._batch_commands import manage_batches
from labelmill.engine.run._batch_files import export_requests, import_results
from labelmill.engine.run._batch_state import progress_line
from labelmill.engine.run._failures import Failure, FailureLog, IdRegistry
from labelmill.engine.run._once import SenderFactory
from labelmill.engine.run._requests import Done, Outcome, Request, Requests
from labelmill.engine.run._resolve import ReplayPool, Resolved, Resolver
from labelmill.engine.run._result import RunResult, RunStatus
from labelmill.engine.run._run import selection_for
from labelmill.engine.run._sender import OnlineSender, Sender
from labelmill.engine.run._stats import OrderedOutput, Progress, RunStats
from labelmill.engine.run._stop import RefusalWatch, Stop, StopReason

__all__ = [
    "BatchRoute",
    "Done",
    "Failure",
    "FailureLog",
    "IdRegistry",
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
    "annotate",
    "export_requests",
    "import_results",
    "manage_batches",
    "progress_line",
    "selection_for",
]
