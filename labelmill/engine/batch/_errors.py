"""What a batch's error lines and missing lines mean: resubmit (429/5xx, `batch_expired`, an
unanswered line of a batch that ended), or a failure row with its reason (refused, not_attempted)."""

from __future__ import annotations

from typing import Any

from labelmill.engine.teacher import RETRYABLE_STATUSES


def line_error(row: dict[str, Any]) -> tuple[bool, str, str]:
    """A line of a batch's error file: (resubmit it?, the failure row's reason, its detail)."""
    response, error = row.get("response"), row.get("error") or {}
    if response:
        status = int(response.get("status_code") or 0)
        body = response.get("body") or {}
        message = str((body.get("error") or {}).get("message") or f"HTTP {status}")
        if status in RETRYABLE_STATUSES:
            return True, "gave_up", f"HTTP {status}: {message}"
        return False, "refused", message
    code = str(error.get("code") or "")
    if code == "batch_cancelled":
        return False, "not_attempted", "its batch was cancelled"
    return code == "batch_expired", "gave_up", f"{code}: {error.get('message', '')}"


def missing_line(status: str, split: bool, message: str) -> tuple[bool, str, str]:
    """A line the server's files do not mention."""
    if status == "failed" and not split:
        return False, "refused", f"the batch failed: {message}"
    if status == "cancelled":
        return False, "not_attempted", "its batch was cancelled"
    return True, "gave_up", f"no answer in a {status} batch"
