"""labelmill: annotate a corpus with a teacher LLM under a budget, then distil a student.

    import labelmill
    result = labelmill.annotate("questions.jsonl", task="cqa", out="run1", budget=5.0)
    for record in labelmill.read_records("run1"): ...

In a notebook (a running loop): `result = await labelmill.annotate_async(...)`.

Errors: every error labelmill raises on purpose is a `LabelmillError`; the tree is drawn in
`labelmill._exceptions`. Importing labelmill loads neither torch nor aiohttp.
"""

from labelmill._api import (
    AnnotateOptions,
    ReplayOptions,
    annotate,
    annotate_async,
    read_records,
    replay,
    replay_async,
)
from labelmill._exceptions import (
    BudgetExhausted,
    CircuitOpenError,
    InputError,
    LabelmillError,
    RequestRejected,
    RetryableError,
    ShardFormatError,
    StoreCorruptError,
    StoreError,
    TaskError,
    TeacherError,
    TeacherStatusError,
    UsageError,
)
from labelmill._version import __version__
from labelmill.engine import Prices, RunResult, RunStatus, Task, load_task

__all__ = [
    "AnnotateOptions",
    "BudgetExhausted",
    "CircuitOpenError",
    "InputError",
    "LabelmillError",
    "Prices",
    "ReplayOptions",
    "RequestRejected",
    "RetryableError",
    "RunResult",
    "RunStatus",
    "ShardFormatError",
    "StoreCorruptError",
    "StoreError",
    "Task",
    "TaskError",
    "TeacherError",
    "TeacherStatusError",
    "UsageError",
    "__version__",
    "annotate",
    "annotate_async",
    "load_task",
    "read_records",
    "replay",
    "replay_async",
]
