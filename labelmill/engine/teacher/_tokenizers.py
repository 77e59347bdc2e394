"""Exact prompt counts, where a tokenizer for the model is already on disk. Nothing is downloaded.

- `--tokenizer PATH`: a Hugging Face `tokenizer.json` (or a folder holding one), read by the
  `tokenizers` package.
- Otherwise, for OpenAI models: tiktoken, when it is installed and the model's encoding is in its
  cache (`TIKTOKEN_CACHE_DIR`, else `DATA_GYM_CACHE_DIR`, else tiktoken's temp folder).

Anything else counts by bytes (`_pacing.py`), and calibration does the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from labelmill._exceptions import UsageError
from labelmill.engine.teacher._pacing import PromptCounter

# OpenAI's chat framing (its cookbook's count): 3 tokens a message, 3 to prime the reply.
PER_MESSAGE, PER_REPLY = 3, 3
_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def find_counter(model: str, tokenizer: str | None = None) -> tuple[PromptCounter | None, str]:
    """(a counter, its name), or (None, "bytes") when no tokenizer for `model` is on disk."""
    if tokenizer is not None:
        return hf_counter(tokenizer), f"tokenizer:{tokenizer}"
    found = tiktoken_counter(model)
    return found if found is not None else (None, "bytes")


def _framed(encode_length: Callable[[str], int]) -> PromptCounter:
    def count(messages: Sequence[dict[str, Any]]) -> int:
        return sum(encode_length(str(m.get("content") or "")) + PER_MESSAGE for m in messages) + PER_REPLY

    return count


def hf_counter(path: str) -> PromptCounter:
    file = Path(path) / "tokenizer.json" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise UsageError(f"--tokenizer {path}: no tokenizer.json there (give the file or the folder that holds it)")
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise UsageError("--tokenizer needs the `tokenizers` package: pip install tokenizers") from exc
    encoder = Tokenizer.from_file(str(file))
    return _framed(lambda text: len(encoder.encode(text, add_special_tokens=False).ids))


def tiktoken_cache_dir() -> Path:
    return Path(
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or Path(tempfile.gettempdir()) / "data-gym-cache"
    )


def tiktoken_counter(model: str) -> tuple[PromptCounter, str] | None:
    try:
        import tiktoken
        import tiktoken.load
    except ImportError:
        return None
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return None
    cached = tiktoken_cache_dir() / hashlib.sha1(_TIKTOKEN_URL.format(name).encode()).hexdigest()
    if not cached.is_file():
        return None
    try:
        with _offline(tiktoken.load):
            encoding = tiktoken.get_encoding(name)
    except Exception:  # a cached file that fails its hash check: tiktoken wanted to fetch it again
        return None
    return _framed(lambda text: len(encoding.encode_ordinary(text))), f"tiktoken:{name}"


@contextlib.contextmanager
def _offline(module: Any) -> Iterator[None]:
    """tiktoken fetches an encoding it does not find in its cache, or one whose hash does not match:
    while it loads one for us, any fetch fails instead."""
    original = module.read_file

    def read_local(blobpath: str) -> bytes:
        if "://" in blobpath:
            raise OSError(f"labelmill never downloads tokenizers (tiktoken asked for {blobpath})")
        data: bytes = original(blobpath)
        return data

    module.read_file = read_local
    try:
        yield
    finally:
        module.read_file = original
