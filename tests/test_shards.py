from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from labelmill._exceptions import ShardFormatError
from labelmill.cache import ShardRecord, ShardWriter, TeacherRef, Usage, iter_records, read_manifest
from tests.conftest import run_python


def record(i: int, rationale: str | None = "Apples grow on trees.") -> ShardRecord:
    return ShardRecord(
        id=f"ex-{i:06d}",
        index=i,
        text=f"question {i} — ünïcode",
        label="apple",
        rationale=rationale,
        choices=["stone", "apple"],
        gold=None if i % 2 else "apple",
        teacher=TeacherRef(model="m", prompt="cqa/label+rationale@3f2a", key=f"sha256:{i:064x}"),
        usage=Usage(prompt_tokens=84, completion_tokens=27),
        cost_usd=2.88e-05,
    )


def test_writer_rotates_shards_and_reader_returns_records_in_order(tmp_path: Path) -> None:
    records = [record(i, None if i % 3 else "r") for i in range(25)]
    with ShardWriter(tmp_path, shard_size=10) as writer:
        for r in records:
            writer.write(r)
    names = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert names == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert list(iter_records(tmp_path)) == records
    manifest = read_manifest(tmp_path)
    assert manifest["complete"] is True
    assert manifest["records"] == 25
    assert [s["records"] for s in manifest["shards"]] == [10, 10, 5]


def test_manifest_sha256_matches_shard_bytes(tmp_path: Path) -> None:
    import hashlib

    with ShardWriter(tmp_path, shard_size=4) as writer:
        for i in range(6):
            writer.write(record(i))
    for shard in read_manifest(tmp_path)["shards"]:
        data = (tmp_path / shard["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]


def test_record_line_matches_design_schema(tmp_path: Path) -> None:
    data = json.loads(record(17).to_json())
    assert list(data)[:10] == [
        "id", "index", "text", "label", "rationale", "choices", "gold", "teacher", "usage", "cost_usd",
    ]  # fmt: skip
    assert data["teacher"] == {"model": "m", "prompt": "cqa/label+rationale@3f2a", "key": f"sha256:{17:064x}"}
    assert "—" in record(1).to_json()  # UTF-8 kept, not escaped


KILLED_WRITER = """
import os, signal, sys
from labelmill.cache import ShardWriter
from tests.test_shards import record
writer = ShardWriter(sys.argv[1], shard_size=10)
for i in range(25):
    writer.write(record(i))
os.kill(os.getpid(), signal.SIGKILL)
"""


def earlier_set(out: Path, n: int = 7) -> tuple[dict[str, Any], list[bytes]]:
    with ShardWriter(out, shard_size=5) as writer:
        for i in range(n):
            writer.write(record(100 + i))
    return read_manifest(out), [p.read_bytes() for p in sorted((out / "shards").iterdir())]


def test_a_writer_killed_mid_run_leaves_the_earlier_set_whole(tmp_path: Path) -> None:
    manifest, shards = earlier_set(tmp_path)
    result = run_python(KILLED_WRITER, str(tmp_path))
    assert result.returncode == -signal.SIGKILL
    assert read_manifest(tmp_path) == manifest
    assert [p.read_bytes() for p in sorted((tmp_path / "shards").iterdir())] == shards
    assert [r.index for r in iter_records(tmp_path)] == list(range(100, 107))
    # A new writer clears what the killed one left, and its set replaces the earlier one whole.
    with ShardWriter(tmp_path, shard_size=10) as writer:
        writer.write(record(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "shards"]
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["part-00000.jsonl"]
    assert [r.index for r in iter_records(tmp_path)] == [0]


def test_a_writer_that_raises_keeps_the_earlier_set_and_leaves_nothing(tmp_path: Path) -> None:
    manifest, shards = earlier_set(tmp_path)
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, shard_size=10) as writer:
        for i in range(25):
            writer.write(record(i))
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "shards"]
    assert read_manifest(tmp_path) == manifest
    assert [p.read_bytes() for p in sorted((tmp_path / "shards").iterdir())] == shards


def test_a_writer_killed_between_the_two_renames_restores_the_earlier_set(tmp_path: Path) -> None:
    manifest, shards = earlier_set(tmp_path)
    (tmp_path / "shards").rename(tmp_path / ".shards.old")  # the first rename of a swap, then death
    (tmp_path / ".shards.new").mkdir()
    ShardWriter(tmp_path).abort()
    assert read_manifest(tmp_path) == manifest
    assert [p.read_bytes() for p in sorted((tmp_path / "shards").iterdir())] == shards


def test_reader_errors_name_file_and_line(tmp_path: Path) -> None:
    shard = tmp_path / "part-00000.jsonl"
    good = record(0).to_json()
    broken = json.loads(record(1).to_json())
    del broken["label"]
    shard.write_text(f"{good}\n{json.dumps(broken)}\n", encoding="utf-8")
    with pytest.raises(ShardFormatError) as info:
        list(iter_records(shard))
    assert str(info.value) == f"{shard}:2: missing field 'label'"

    shard.write_text(f"{good}\n{good}\n{{oops\n", encoding="utf-8")
    with pytest.raises(ShardFormatError, match=r"part-00000\.jsonl:3: "):
        list(iter_records(shard))

    wrong_type = json.loads(good)
    wrong_type["index"] = "seven"
    shard.write_text(json.dumps(wrong_type) + "\n", encoding="utf-8")
    with pytest.raises(ShardFormatError, match=r":1: field 'index' should be int, got str"):
        list(iter_records(shard))


def test_reader_accepts_a_glob(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, shard_size=2) as writer:
        for i in range(5):
            writer.write(record(i))
    assert len(list(iter_records(str(tmp_path / "shards" / "part-*.jsonl")))) == 5
    with pytest.raises(FileNotFoundError, match="no shards"):
        list(iter_records(str(tmp_path / "nothing-*.jsonl")))


def test_rerun_with_fewer_records_drops_stale_shards(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, shard_size=2) as writer:
        for i in range(6):
            writer.write(record(i))
    with ShardWriter(tmp_path, shard_size=2) as writer:
        for i in range(3):
            writer.write(record(i))
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["part-00000.jsonl", "part-00001.jsonl"]
    assert len(list(iter_records(tmp_path / "shards"))) == 3
