"""The batch route: the Batch API at its price, then a normal run over the store.

    _route.py     submit what is missing as batches, collect them into the store (`BatchRoute`),
                  reserving and settling through the one ledger
    _final.py     the rate plan at batch prices, and the final pass (each missing answer a failure
                  row with its own reason; what the batches cost in `paid`)
    _state.py     what is in flight, in `OUT/batches.json` (durable: file and directory fsynced)
    _errors.py    what error lines and missing lines mean (resubmit, or a failure row's reason)
    _files.py     missing requests, and export/import for batches run by hand (`vllm run-batch`)
    _commands.py  `labelmill batches status|collect|cancel`

Built on `run/` (the final pass is `run_once`); nothing in the engine imports it but the entry
point, `engine/_annotate.py`.
"""

from labelmill.engine.batch._commands import manage_batches
from labelmill.engine.batch._files import export_requests, import_results
from labelmill.engine.batch._route import BatchRoute, BatchSettings, annotate_by_batch
from labelmill.engine.batch._state import BatchState, progress_line

__all__ = [
    "BatchRoute",
    "BatchSettings",
    "BatchState",
    "annotate_by_batch",
    "export_requests",
    "import_results",
    "manage_batches",
    "progress_line",
]
