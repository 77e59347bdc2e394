"""The multi-task loss: `alpha * L_label + (1 - alpha) * L_rationale`.

Each row's loss is its mean token cross-entropy (padding is -100 and ignored). L_label averages over
the label rows and L_rationale over the rationale rows only: an example without a rationale has no
rationale row at all, where the reference implementation trained it against an empty target. A
batch with no rationale row contributes `alpha * L_label`; alpha = 1 is label-only training.

Under gradient accumulation (and data parallelism) one optimizer step sees several micro-batches.
The means must then be over the rows of the whole step, not of each micro-batch, or the gradient
depends on how the rows happen to be split: `task_counts` counts each task's rows over the step and
`multitask_loss(..., step_counts=...)` divides each micro-batch's sum by those totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from labelmill.trainer._data import TASK_LABEL, TASK_RATIONALE

TASKS = (TASK_LABEL, TASK_RATIONALE)


def per_row_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over each row's target tokens; shape (batch,)."""
    token_loss = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100, reduction="none")
    counts = (labels != -100).sum(dim=1).clamp(min=1)
    return token_loss.sum(dim=1) / counts


def task_counts(batches: Iterable[Mapping[str, Any]]) -> torch.Tensor:
    """Rows of each task (label, rationale) over `batches`: the denominators of one optimizer step."""
    counts = torch.zeros(len(TASKS), dtype=torch.long)
    for batch in batches:
        counts += torch.bincount(batch["task"].cpu(), minlength=len(TASKS))[: len(TASKS)]
    return counts


def multitask_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task: torch.Tensor,
    alpha: float,
    step_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weighted loss of one batch; with `step_counts`, this batch's share of the step's loss."""
    rows = per_row_loss(logits, labels)
    total = logits.new_zeros((), dtype=torch.float32)
    for task_id, weight in zip(TASKS, (alpha, 1.0 - alpha), strict=True):
        mask = task == task_id
        if weight <= 0 or not bool(mask.any()):
            continue
        if step_counts is None:
            total = total + weight * rows[mask].mean()
        else:
            total = total + weight * rows[mask].sum() / step_counts[task_id].clamp(min=1).to(rows.dtype)
    return total
