"""Test helpers that ship with labelmill, as httpx ships `MockTransport`: a local OpenAI-compatible
mock teacher, generated corpora, and a harness that runs it and `labelmill` in processes of their own.
"""

from labelmill.testing._bench import Workload, mock_process, run_labelmill, run_replay, run_workload
from labelmill.testing._corpus import ALL_CATEGORIES, LORE, cqa_rows, make_cqa, write_jsonl
from labelmill.testing._lore import believed_category
from labelmill.testing._mock import (
    HELPFUL_PHRASES,
    MockConfig,
    MockStats,
    MockTeacher,
    load_answers,
    serve,
)
from labelmill.testing._ratelimits import count_tokens

__all__ = [
    "ALL_CATEGORIES",
    "HELPFUL_PHRASES",
    "LORE",
    "MockConfig",
    "MockStats",
    "MockTeacher",
    "Workload",
    "believed_category",
    "count_tokens",
    "cqa_rows",
    "load_answers",
    "make_cqa",
    "mock_process",
    "run_labelmill",
    "run_replay",
    "run_workload",
    "serve",
    "write_jsonl",
]
