"""What the engine and the trainer share: request keys, the response store, shard files.

This package imports neither the engine nor the trainer subpackage (a test enforces it).
"""

from labelmill.cache._keys import KeyTemplate, canonical_json, key_material, request_key
from labelmill.cache._records import SCHEMA_VERSION, ShardRecord, TeacherRef, Usage, loads_object
from labelmill.cache._shards import (
    DEFAULT_SHARD_SIZE,
    MANIFEST,
    SHARDS_DIR,
    ShardInfo,
    ShardWriter,
    fsync_dir,
    iter_records,
    read_manifest,
    shard_paths,
    write_json_atomic,
)
from labelmill.cache._store import (
    STORE_SETTINGS,
    AsyncStoreWriter,
    ResponseStore,
    StoredResponse,
    StoreStats,
    VerifyReport,
    make_entry,
)

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "MANIFEST",
    "SCHEMA_VERSION",
    "SHARDS_DIR",
    "STORE_SETTINGS",
    "AsyncStoreWriter",
    "KeyTemplate",
    "ResponseStore",
    "ShardInfo",
    "ShardRecord",
    "ShardWriter",
    "StoreStats",
    "StoredResponse",
    "TeacherRef",
    "Usage",
    "VerifyReport",
    "canonical_json",
    "fsync_dir",
    "iter_records",
    "key_material",
    "loads_object",
    "make_entry",
    "read_manifest",
    "request_key",
    "shard_paths",
    "write_json_atomic",
]
