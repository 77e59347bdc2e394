"""What a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RunResult:
    summary: dict[str, Any]
    exit_code: int
    notes: list[str] = field(default_factory=list)
