"""The async annotation pipeline: tasks, teacher client, limits, retries, parsing, mock teacher.

Never imports torch, transformers or the trainer (a test enforces it).
"""

from labelmill.engine._config import DEFAULT_BASE_URL, DEFAULT_MODEL, AnnotateConfig, env_base_url
from labelmill.engine.run._result import RunResult
from labelmill.engine.run._run import annotate
from labelmill.engine.selection._score import selection_score, wants_rationale
from labelmill.engine.tasks._parse import Parsed, parse_response, resolve_label
from labelmill.engine.tasks._tasks import (
    BUILTIN_TASKS,
    VARIANT_LABEL,
    VARIANT_RATIONALE,
    Example,
    Prompt,
    Task,
    load_task,
)
from labelmill.engine.teacher._client import RequestRejected, RetryableError, TeacherClient
from labelmill.engine.teacher._limits import AdaptiveConcurrency, CircuitBreaker, RateLimits
from labelmill.engine.teacher._retry import RetryPolicy, call_with_retries

__all__ = [
    "BUILTIN_TASKS",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "VARIANT_LABEL",
    "VARIANT_RATIONALE",
    "AdaptiveConcurrency",
    "AnnotateConfig",
    "CircuitBreaker",
    "Example",
    "Parsed",
    "Prompt",
    "RateLimits",
    "RequestRejected",
    "RetryPolicy",
    "RetryableError",
    "RunResult",
    "Task",
    "TeacherClient",
    "annotate",
    "call_with_retries",
    "env_base_url",
    "load_task",
    "parse_response",
    "resolve_label",
    "selection_score",
    "wants_rationale",
]
