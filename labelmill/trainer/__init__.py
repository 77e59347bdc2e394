"""Student training and evaluation (imports torch and transformers; nothing else in labelmill does).

Reads shards through `labelmill.cache` only and never imports `labelmill.engine`.
"""

from labelmill.trainer._bench_predict import bench_predict
from labelmill.trainer._data import keeps_rationale, load_records, to_rows
from labelmill.trainer._infer import Item, Student, evaluate
from labelmill.trainer._loss import multitask_loss, per_row_loss
from labelmill.trainer._student import build_student, train_tokenizer
from labelmill.trainer._sweep import Setting, SweepConfig, run_sweep
from labelmill.trainer._train import CONFIG_FILE, TrainConfig, train

__all__ = [
    "CONFIG_FILE",
    "Item",
    "Setting",
    "Student",
    "SweepConfig",
    "TrainConfig",
    "bench_predict",
    "build_student",
    "evaluate",
    "keeps_rationale",
    "load_records",
    "multitask_loss",
    "per_row_loss",
    "run_sweep",
    "to_rows",
    "train",
    "train_tokenizer",
]
