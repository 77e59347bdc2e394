"""The prompt optimizer against the mock teacher, which plays both the optimizer and the scorer."""

from __future__ import annotations

from pathlib import Path

from labelmill.apps import OproConfig, Optimizer, write_outputs
from labelmill.cache import iter_records
from labelmill.engine import AnnotateConfig, RunResult, RunStatus, annotate, load_task
from labelmill.engine.money import Prices
from labelmill.engine.tasks import VARIANT_RATIONALE, placeholders
from labelmill.testing import MockTeacher, make_cqa

PRICES = Prices(0.15, 0.60)


def opro_config(tmp_path: Path, base_url: str, **overrides: object) -> OproConfig:
    dev = make_cqa(25, tmp_path / "dev.jsonl", seed=5)
    settings: dict[str, object] = {
        "task": load_task("cqa"),
        "dev": str(dev),
        "out": tmp_path / "opro" / "best.toml",
        "cache_dir": tmp_path / "cache",
        "base_url": base_url,
        "rounds": 3,
        "candidates": 3,
        "prices": PRICES,
        **overrides,
    }
    return OproConfig(**settings)  # type: ignore[arg-type]


async def test_the_loop_climbs_keeps_placeholders_and_writes_its_outputs(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        config = opro_config(tmp_path, mock.base_url)
        history = await Optimizer(config).run()
    summary = write_outputs(config, history)
    bests = [r["best"] for r in summary["rounds"]]
    assert bests == sorted(bests)  # the best score never decreases
    assert summary["best"]["score"] >= summary["seed_score"]
    assert summary["best"]["score"] > summary["seed_score"]  # the mock gives it something to climb
    seed_placeholders = placeholders(load_task("cqa").prompts[VARIANT_RATIONALE].template)
    assert seed_placeholders <= placeholders(summary["best"]["instruction"])
    written = {p.name for p in config.out.parent.iterdir()}
    assert written == {"best.toml", "history.jsonl", "scores.png"}
    assert len((config.out.parent / "history.jsonl").read_text().splitlines()) == len(history)


async def test_candidates_missing_a_placeholder_are_rejected_and_logged(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        optimizer = Optimizer(opro_config(tmp_path, mock.base_url, rounds=1))
        optimizer.required = optimizer.required | {"nowhere"}  # no proposal can keep it
        history = await optimizer.run()
    rejected = [c for c in history if c.status == "rejected"]
    assert len(rejected) == 3 and all("nowhere" in c.note for c in rejected)


async def test_a_rerun_with_a_warm_store_sends_nothing(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        first = await Optimizer(opro_config(tmp_path, mock.base_url)).run()
        sent = mock.stats.requests
        again = await Optimizer(opro_config(tmp_path, mock.base_url)).run()
        assert mock.stats.requests == sent
    assert [c.score for c in again] == [c.score for c in first]


async def test_the_budget_stops_the_loop_cleanly(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        probe = await Optimizer(opro_config(tmp_path / "probe", mock.base_url, rounds=1, candidates=1)).run()
        assert probe[0].score is not None
        before = (mock.stats.prompt_tokens, mock.stats.completion_tokens)
        small = 0.0015  # the seed's scoring and a little more
        config = opro_config(tmp_path, mock.base_url, budget=small)
        history = await Optimizer(config).run()
        spent = PRICES.cost(mock.stats.prompt_tokens - before[0], mock.stats.completion_tokens - before[1])
    assert history[-1].status == "budget"  # it stopped because of the budget, without an error
    assert history[0].score is not None
    assert 0 < spent <= small  # what the server counted for this loop
    assert write_outputs(config, history)["best"]["score"] is not None


async def test_the_written_task_round_trips_through_annotate(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        config = opro_config(tmp_path, mock.base_url, rounds=1)
        write_outputs(config, await Optimizer(config).run())
        task = load_task(str(config.out))
        result = await annotate(
            AnnotateConfig(
                source=config.dev,
                task=task,
                out_dir=tmp_path / "annotated",
                cache_dir=tmp_path / "cache",
                base_url=mock.base_url,
                progress=False,
            )
        )
    assert result.status is RunStatus.COMPLETE
    records = list(iter_records(tmp_path / "annotated"))
    assert len(records) == 25 and all(r.rationale for r in records)
    assert task.prompts[VARIANT_RATIONALE].template != load_task("cqa").prompts[VARIANT_RATIONALE].template


async def test_few_shot_prompts_as_an_annotate_variant(tmp_path: Path) -> None:
    from labelmill.testing import cqa_rows, write_jsonl

    rows = [{**row, "abstractive_explanation": f"it is a {row['answer']}"} for row in cqa_rows(20)]
    source = write_jsonl(iter(rows), tmp_path / "in.jsonl")
    async with MockTeacher() as mock:

        async def run(name: str, shots: int) -> RunResult:
            return await annotate(AnnotateConfig(source=str(source), task=load_task("cqa"), out_dir=tmp_path / name,
                                                 cache_dir=tmp_path / "cache", base_url=mock.base_url, progress=False,
                                                 shots=shots))  # fmt: skip

        zero = await run("zero", 0)
        few = await run("few", 3)
    assert zero.status is few.status is RunStatus.COMPLETE and few.summary["requests"] == 20  # new prompts, new keys
    assert few.summary["tokens"]["prompt"] > 2 * zero.summary["tokens"]["prompt"]
    assert all(r.teacher.prompt.endswith("+3shot") for r in iter_records(tmp_path / "few") if r.rationale)
