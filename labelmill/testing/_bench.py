"""`labelmill bench engine`: the engine end to end against the mock teacher in its own process.

The client (a real `labelmill annotate` process) and the mock each get one core when the machine
has two or more, so neither steals the other's CPU. Reported: requests per second against the
ideal the workload allows, CPU seconds of the run per 1,000 requests, the client's peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelmill.testing._corpus import make_cqa


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    n: int
    latency_ms: float = 0.0
    concurrency: int = 64
    server_rpm: int | None = None
    client_rpm: int | None = None
    extra_args: tuple[str, ...] = field(default=())  # for the client
    server_tpm: int | None = None
    client_tpm: int | None = None
    server_args: tuple[str, ...] = field(default=())  # for the mock teacher (--limit-model, --other-share)

    @property
    def ideal_req_s(self) -> float | None:
        rates = []
        if self.latency_ms > 0:
            rates.append(self.concurrency * 1000 / self.latency_ms)
        if self.server_rpm:
            rates.append(self.server_rpm / 60)
        return min(rates) if rates else None


def _pin(core: int) -> Callable[[], None] | None:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {core})


@contextmanager
def mock_process(*args: str) -> Iterator[str]:
    """`labelmill mock-teacher` on a free port, pinned to core 1; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelmill", "mock-teacher", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=_pin(1),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the mock teacher did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def run_labelmill(args: list[str], pin: bool = True) -> dict[str, Any]:
    """Run `labelmill ARGS --json` (pinned to core 0 unless `pin` is false); its summary plus
    wall time and the peak RSS of it and its worker processes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelmill", *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_pin(0) if pin else None,
    )
    started = os.times().elapsed
    stdout, stderr = proc.stdout.read() if proc.stdout else "", proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"labelmill {' '.join(args[:1])} failed ({proc.returncode}): {stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(stdout)
    summary["process_wall_s"] = round(os.times().elapsed - started, 3)
    summary["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return summary


def run_workload(workload: Workload, workdir: Path) -> dict[str, Any]:
    corpus = make_cqa(workload.n, workdir / f"{workload.name}.jsonl")
    mock_args = ["--latency-ms", str(workload.latency_ms), *workload.server_args]
    if workload.server_rpm:
        mock_args += ["--rpm", str(workload.server_rpm)]
    if workload.server_tpm:
        mock_args += ["--tpm", str(workload.server_tpm)]
    client_args = [
        "annotate", str(corpus), "--task", "cqa", "--out", str(workdir / f"{workload.name}-out"),
        "--cache", str(workdir / f"{workload.name}-cache"), "--concurrency", str(workload.concurrency),
        *(["--rpm", str(workload.client_rpm)] if workload.client_rpm else []),
        *(["--tpm", str(workload.client_tpm)] if workload.client_tpm else []), *workload.extra_args,
    ]  # fmt: skip
    with mock_process(*mock_args) as url:
        summary = run_labelmill([*client_args, "--base-url", url])
        with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/stats") as answer:
            served = json.loads(answer.read())
    req_s = summary["requests"] / summary["seconds"] if summary["seconds"] else 0.0
    ideal = workload.ideal_req_s
    return {
        **_limit_share(workload, served, summary["seconds"]),
        "workload": workload.name,
        "n": workload.n,
        "latency_ms": workload.latency_ms,
        "concurrency": workload.concurrency,
        "req_s": round(req_s, 1),
        "ideal_req_s": ideal,
        "ratio_to_ideal": round(req_s / ideal, 3) if ideal else None,
        "cpu_s_per_1k": round(summary["cpu_seconds"] / max(1, summary["requests"]) * 1000, 3),
        "peak_rss_mb": summary["peak_rss_mb"],
        "rate_limited_share": round(summary["rate_limited_429"] / max(1, summary["requests"]), 4),
        "records": summary["records"],
    }


def _limit_share(workload: Workload, served: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What the server counted against its binding limit, as a share of what the limit allowed over
    the run (the server's own counts: the client's estimates play no part)."""
    if workload.server_tpm:
        allowed = workload.server_tpm / 60 * seconds
        return {"limit": f"{workload.server_tpm:,} TPM", "limit_share": round(served["limit_tokens"] / allowed, 3)}
    if workload.server_rpm:
        allowed = workload.server_rpm / 60 * seconds
        return {"limit": f"{workload.server_rpm:,} RPM", "limit_share": round(served["ok"] / allowed, 3)}
    return {}


def run_replay(
    name: str, workdir: Path, corpus: Path, cache: Path, from_dir: Path, limit: int | None
) -> dict[str, Any]:
    args = ["replay", str(corpus), "--task", "cqa", "--out", str(workdir / f"{name}-replay"), "--cache", str(cache),
            "--from", str(from_dir)]  # fmt: skip
    if limit is not None:
        args += ["--limit", str(limit)]
    # No mock runs during a replay: it may use every core (a large JSONL replay forks one worker
    # process per core).
    summary = run_labelmill(args, pin=False)
    return {
        "workload": name,
        "n": summary["examples"],
        "records_per_s": round(summary["examples"] / summary["seconds"], 1) if summary["seconds"] else 0.0,
        "process_wall_s": summary["process_wall_s"],
        "peak_rss_mb": summary["peak_rss_mb"],
    }
