"""What an example is: input rows, tasks that render them into prompts, and parsing the answers.

Imports only `labelmill.cache` and the standard library: everything above builds on it.
"""

from labelmill.engine.tasks._input import Row, check_input, count_rows, iter_jsonl_lines, iter_rows, jsonl_row
from labelmill.engine.tasks._parse import Parsed, parse_response, resolve_label
from labelmill.engine.tasks._rationale import agrees_with_label, word_count
from labelmill.engine.tasks._records import build_record, confidence_of
from labelmill.engine.tasks._schema import OUTPUT_FORMATS, OutputFormat, refuses_schema
from labelmill.engine.tasks._tasks import (
    BUILTIN_TASKS,
    VARIANT_LABEL,
    VARIANT_RATIONALE,
    Example,
    Prompt,
    Task,
    load_task,
    placeholders,
    task_from_dict,
)

__all__ = [
    "BUILTIN_TASKS",
    "OUTPUT_FORMATS",
    "VARIANT_LABEL",
    "VARIANT_RATIONALE",
    "Example",
    "OutputFormat",
    "Parsed",
    "Prompt",
    "Row",
    "Task",
    "agrees_with_label",
    "build_record",
    "check_input",
    "confidence_of",
    "count_rows",
    "iter_jsonl_lines",
    "iter_rows",
    "jsonl_row",
    "load_task",
    "parse_response",
    "placeholders",
    "refuses_schema",
    "resolve_label",
    "task_from_dict",
    "word_count",
]
