"""The annotation engine: input rows in, teacher answers bought and stored, shard records out.

Its rooms, each a package with a docstring saying what it owns, in layer order (a room imports
only the rooms before it; `tests/test_layering.py` holds the order):

    tasks/       input rows, tasks and prompts, parsing answers into records
    money/       prices, the ledger (spend never exceeds the budget), the planner, the estimate
    teacher/     the HTTP client, retries, limits, and the one priced attempt
    selection/   which examples get a rationale: one object per policy
    run/         the run: producer, workers, the sender seam, ordered output, stop reasons
    batch/       the batch route: batches submitted, collected into the store, then a run

This module is the engine's surface for the CLI, the apps and `labelmill`'s public API: nothing
outside engine/ imports its private modules. Never imports torch, transformers or the trainer.
"""

from labelmill.engine._annotate import annotate
from labelmill.engine._config import DEFAULT_BASE_URL, DEFAULT_CONCURRENCY, DEFAULT_MODEL, AnnotateConfig, env_base_url
from labelmill.engine.batch import export_requests, import_results, manage_batches
from labelmill.engine.money import BudgetExhausted, Prices, Spending, estimate_corpus, resolve_prices
from labelmill.engine.run import RunResult, RunStatus, Sender, SenderFactory
from labelmill.engine.selection import selection_score, wants_rationale
from labelmill.engine.tasks import (
    BUILTIN_TASKS,
    VARIANT_LABEL,
    VARIANT_RATIONALE,
    Example,
    Parsed,
    Prompt,
    Task,
    iter_rows,
    load_task,
    parse_response,
    placeholders,
    resolve_label,
)
from labelmill.engine.teacher import (
    AdaptiveConcurrency,
    CircuitBreaker,
    OneShot,
    RateLimits,
    RequestRejected,
    RetryableError,
    RetryPolicy,
    TeacherClient,
    call_with_retries,
)

__all__ = [
    "BUILTIN_TASKS",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MODEL",
    "VARIANT_LABEL",
    "VARIANT_RATIONALE",
    "AdaptiveConcurrency",
    "AnnotateConfig",
    "BudgetExhausted",
    "CircuitBreaker",
    "Example",
    "OneShot",
    "Parsed",
    "Prices",
    "Prompt",
    "RateLimits",
    "RequestRejected",
    "RetryPolicy",
    "RetryableError",
    "RunResult",
    "RunStatus",
    "Sender",
    "SenderFactory",
    "Spending",
    "Task",
    "TeacherClient",
    "annotate",
    "call_with_retries",
    "env_base_url",
    "estimate_corpus",
    "export_requests",
    "import_results",
    "iter_rows",
    "load_task",
    "manage_batches",
    "parse_response",
    "placeholders",
    "resolve_label",
    "resolve_prices",
    "selection_score",
    "wants_rationale",
]
