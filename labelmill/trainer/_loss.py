"""The multi-task loss: `alpha * L_label + (1 - alpha) * L_rationale`.

Each row's loss is its mean token cross-entropy (padding is -100 and ignored). L_label averages over
the label rows of the batch and L_rationale over its rationale rows only: an example without a
rationale has no rationale row at all, where the reference implementation trained it against an
empty target. A batch with no rationale row contributes `alpha * L_label`; alpha = 1 is label-only
training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelmill.trainer._data import TASK_LABEL, TASK_RATIONALE


def per_row_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over each row's target tokens; shape (batch,)."""
    token_loss = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100, reduction="none")
    counts = (labels != -100).sum(dim=1).clamp(min=1)
    return token_loss.sum(dim=1) / counts


def multitask_loss(logits: torch.Tensor, labels: torch.Tensor, task: torch.Tensor, alpha: float) -> torch.Tensor:
    rows = per_row_loss(logits, labels)
    total = logits.new_zeros((), dtype=torch.float32)
    for task_id, weight in ((TASK_LABEL, alpha), (TASK_RATIONALE, 1.0 - alpha)):
        mask = task == task_id
        if weight > 0 and bool(mask.any()):
            total = total + weight * rows[mask].mean()
    return total
