"""One evaluation over several processes: sharding, rank 0's assembly, per-rank cache files and their
merge, failure messages, and a real 2-process gloo launch that must match one process sample for sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import registries
from harness.cli import main as cli_main
from harness.core.cache import GenerationCache
from harness.core.records import Generation, GenerationSettings, TaskSpec
from harness.pipeline.distributed import Distributed, DistributedError, shard_batches
from harness.pipeline.evaluate import EvalConfig, prepare_eval, run_eval
from harness.pipeline.generate import ShardedGenerator, expected_cost, plan_digest, rank_cache_path

TINY = "tiny-random-llava-ov"
ROOT = Path(__file__).resolve().parent.parent


def register_numbers(name: str = "numbers-dist", count: int = 7, batch_size: int = 2) -> None:
    tasks = registries.tasks()
    if name not in tasks:
        tasks.register(name, TaskSpec(
            name=name, version="1", loader="helpers_tasks:text_samples", loader_args={"count": count},
            metric="harness.core.metrics:safety_metrics", judge="keyword-gcg",
            generation=GenerationSettings(max_new_tokens=4, batch_size=batch_size),
        ))


# ------------------------------------------------------------------------------------------ sharding
def test_whole_batches_go_to_the_least_loaded_rank_longest_first():
    # costs 5,1,1,3,2,2: 5->r0, 3->r1, 2(idx4)->r1 (3<5), 2(idx5)->r0 (tie 5,5: lowest rank), 1->r1, 1->r1
    assert shard_batches([5, 1, 1, 3, 2, 2], 2) == [[0, 5], [1, 2, 3, 4]]
    assert shard_batches([1, 1, 1], 1) == [[0, 1, 2]]
    assert shard_batches([], 3) == [[], [], []]
    assert shard_batches([4.0], 3) == [[0], [], []]
    with pytest.raises(ValueError):
        shard_batches([1.0], 0)


def test_expected_cost_counts_decoding_prompt_and_image():
    from harness.core.records import Request
    from harness.pipeline.plan import Planned

    def item(prompt: str, image: str | None, tokens: int) -> Planned:
        request = Request(task="t", sample_id=prompt, prompt=prompt, image=image, image_sha256=None, system=None,
                          settings=GenerationSettings(max_new_tokens=tokens, batch_size=2))
        return Planned(sample=None, request=request)  # type: ignore[arg-type]

    # 64 + 16 decoded; prompts 40/4 + 8/4 tokens, one image of 576: 0.1 * (10 + 576 + 2) = 58.8
    assert expected_cost([item("x" * 40, "a.png", 64), item("y" * 8, None, 16)]) == pytest.approx(80 + 58.8)


# ------------------------------------------------------------------------- rank 0's assembly, in-process
class FakeWorld:
    """One rank of a 2-process launch whose collectives return what the test hands it."""

    def __init__(self, rank: int, message: dict | None = None, peer_reports: tuple = ()):
        self.rank, self.world_size, self.message, self.peer_reports = rank, 2, message, list(peer_reports)
        self.sent = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast_json(self, value, step):
        return json.loads(json.dumps(value if self.is_main else self.message))

    def gather_json(self, value, step):
        self.sent = json.loads(json.dumps(value))
        return [self.sent, *self.peer_reports] if self.is_main else None

    def barrier(self, step):
        pass

    def describe(self):
        return {"world_size": 2, "backend": "fake"}


def test_two_ranks_with_their_own_cache_files_give_rank_0_what_one_process_gives(isolated_dirs, tmp_path, reuse_loaded_models):
    register_numbers()
    config = dict(model=TINY, tasks=["numbers-dist"], limit="all", progress=False, write_report=False)
    single = run_eval(EvalConfig(**config, results_dir=tmp_path / "single"))

    results = tmp_path / "sharded"
    prepared = prepare_eval(EvalConfig(**config, results_dir=results))
    planned = prepared.plan.all_planned()
    shard_dir = results / "cache" / "shards"
    keys = [item.request.key for item in planned]
    with GenerationCache(results / "cache" / "generations.sqlite") as cache:
        rank1 = FakeWorld(1, message={"plan": plan_digest(planned), "missing": keys})
        nothing = ShardedGenerator(cache, prepared.bringup, rank1, progress=False, shard_dir=shard_dir).run(prepared.plan)
        assert nothing.generations == {} and len(cache) == 0  # rank 1 wrote only its own file
        # 7 samples in batches of 2, 2, 2, 1 (costs 8.85, 8.85, 8.85, 4.425: 4 decoded tokens and 0.1 x
        # 17/4 prompt tokens each): batch 0 -> rank 0, 1 -> rank 1, 2 -> rank 0 (a tie), 3 -> rank 1
        assert rank1.sent["batches"] == 2 and rank1.sent["requests"] == 3
        with GenerationCache(rank_cache_path(shard_dir, 1)) as own:
            assert len(own) == 3

        rank0 = FakeWorld(0, peer_reports=(rank1.sent,))
        result = ShardedGenerator(cache, prepared.bringup, rank0, progress=False, shard_dir=shard_dir).run(prepared.plan)
        assert len(cache) == 7  # rank 0's 4, and rank 1's 3 it was sent

    assert result.counts == single.info.counts == {"samples": 7, "cache_hits": 0, "generated": 7, "errors": 0}
    assert result.parallel == {"world_size": 2, "backend": "fake", "cache": "per-rank", "shards": [
        {"rank": 0, "batches": 2, "requests": 4, "generated": 4, "errors": 0},
        {"rank": 1, "batches": 2, "requests": 3, "generated": 3, "errors": 0}]}
    texts = {g.sample_id: g.text for g in result.ordered(prepared.plan.ordered_samples())}
    assert texts == {g.sample_id: g.text for g in single.generations}


def test_a_rank_that_planned_something_else_stops_before_generating(isolated_dirs):
    register_numbers()
    prepared = prepare_eval(EvalConfig(model=TINY, tasks=["numbers-dist"], limit="all", progress=False))
    stray = FakeWorld(1, message={"plan": "0" * 64, "missing": []})
    with GenerationCache(isolated_dirs[0] / "cache.sqlite") as cache:
        with pytest.raises(DistributedError, match="rank 1 planned other requests than rank 0"):
            ShardedGenerator(cache, prepared.bringup, stray, progress=False).run(prepared.plan)
    assert not prepared.bringup.loaded


def test_a_failed_collective_names_the_step_the_timeout_and_how_to_resume():
    world = Distributed(rank=1, world_size=2, local_rank=1, backend="gloo", timeout_s=42)

    def peer_gone():
        raise RuntimeError("Connection closed by peer [127.0.0.1]:29500")

    with pytest.raises(DistributedError) as caught:
        world._guarded("collecting the generations", peer_gone)
    message = str(caught.value)
    assert message.startswith("rank 1 of 2: collecting the generations failed")
    assert "within 42 s" in message and "HARNESS_DIST_TIMEOUT_S" in message
    assert "run the same command again to resume" in message and "Connection closed by peer" in message


def test_one_process_sets_nothing_up_and_an_indexed_device_is_refused(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert Distributed.from_environment("cpu", 10) is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match="--device 'cuda:1' with 2 processes"):
        Distributed.from_environment("cuda:1", 10)


# ----------------------------------------------------------------------------------------- cache merge
def generation(key: str, text: str) -> Generation:
    return Generation(key=key, task="t", sample_id=key, model="m", defense="none", text=text, created_at="2026-01-01T00:00:00+00:00")


def test_merge_adds_missing_keys_keeps_present_ones_and_is_idempotent(tmp_path):
    with GenerationCache(tmp_path / "shard.sqlite") as shard:
        shard.put_many([generation("k2", "other text"), generation("k3", "three")])
    with GenerationCache(tmp_path / "main.sqlite") as main:
        main.put_many([generation("k1", "one"), generation("k2", "two")])
        first = main.merge_from(tmp_path / "shard.sqlite")
        again = main.merge_from(tmp_path / "shard.sqlite")
        assert (first.rows, first.added, first.present, first.differing) == (2, 1, 1, 1)
        assert (again.added, again.present, again.differing) == (0, 2, 1)
        assert len(main) == 3
        stored = main.get_many(["k1", "k2", "k3"])
        assert {key: g.text for key, g in stored.items()} == {"k1": "one", "k2": "two", "k3": "three"}
        with pytest.raises(FileNotFoundError):
            main.merge_from(tmp_path / "absent.sqlite")
        with pytest.raises(ValueError, match="into itself"):
            main.merge_from(tmp_path / "main.sqlite")


def test_cache_merge_command_folds_the_rank_files_in(tmp_path, capsys):
    shards = tmp_path / "cache" / "shards"
    for rank, keys in ((1, ["a", "b"]), (2, ["b", "c"])):
        with GenerationCache(shards / f"generations.rank-{rank}.sqlite") as shard:
            shard.put_many([generation(key, key.upper()) for key in keys])
    assert cli_main(["cache", "merge", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "generations.rank-1.sqlite: 2 rows, 2 added, 0 already present" in out
    assert "generations.rank-2.sqlite: 2 rows, 1 added, 1 already present" in out
    assert f"{tmp_path / 'cache' / 'generations.sqlite'}: 0 -> 3 rows" in out
    assert cli_main(["cache", "merge", "--results-dir", str(tmp_path)]) == 0
    assert "3 -> 3 rows" in capsys.readouterr().out
    assert cli_main(["cache", "merge", str(tmp_path / "nope")]) == 2


# ------------------------------------------------------------------------------------------ batching
def test_batched_answers_equal_unbatched_ones_through_the_pipeline(isolated_dirs, reuse_loaded_models):
    config = dict(model=TINY, tasks=["figstep-tiny", "xstest"], limit=4, max_new_tokens=6, progress=False, write_report=False)
    alone = run_eval(EvalConfig(**config, batch_size=1))
    together = run_eval(EvalConfig(**config, batch_size=4))
    assert {g.batch_size for g in alone.generations} == {1} and {g.batch_size for g in together.generations} == {4}
    assert [(g.sample_id, g.text, g.output_tokens) for g in together.generations] == \
        [(g.sample_id, g.text, g.output_tokens) for g in alone.generations]


# ------------------------------------------------------------------------------- a real 2-process launch
def test_a_two_process_gloo_launch_matches_one_process_sample_for_sample(tmp_path, monkeypatch, reuse_loaded_models):
    """The offline suite (a few samples of each task) on the tiny model: torchrun with 2 CPU processes
    vs one process (this one), each with its own cache, so both generate everything."""
    limits = dict(limit=4, max_new_tokens=4, batch_size=2, device="cpu", dtype="float32")
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports"))
    single = run_eval(EvalConfig(model=TINY, tasks=["figstep-tiny", "xstest", "easyvqa"], **limits, progress=False,
                                 write_report=False, results_dir=tmp_path / "one"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "HARNESS_DIST_TIMEOUT_S": "120"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "harness", "eval",
              "--model", TINY, "--tasks", "figstep-tiny,xstest,easyvqa", "--no-progress",
              *[part for name, value in limits.items() for part in (f"--{name.replace('_', '-')}", str(value))],
              "--results-dir", str(tmp_path / "two"), "--reports-dir", str(tmp_path / "reports")]
    done = subprocess.run(launch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() and "elastic" not in line]
    assert done.returncode == 0, "\n".join(errors[:20]) + "\n...\n" + done.stderr[-3000:]
    assert "generated over 2 processes (rank 0: 6, rank 1: 6)" in done.stdout
    (run_dir,) = (tmp_path / "two" / "runs").iterdir()  # one run: rank 1 stored nothing
    runs = {"one": single.path, "two": run_dir}

    def read(run_dir: Path, name: str) -> list[dict]:
        return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]

    one, two = (json.loads((runs[n] / "run.json").read_text()) for n in ("one", "two"))
    assert one["parallel"] == {}
    assert two["parallel"]["world_size"] == 2 and two["parallel"]["backend"] == "gloo"
    assert [(s["rank"], s["batches"], s["requests"], s["generated"]) for s in two["parallel"]["shards"]] == [(0, 3, 6, 6), (1, 3, 6, 6)]
    assert one["counts"] == two["counts"] == {"samples": 12, "cache_hits": 0, "generated": 12, "errors": 0}
    fields = ("task", "sample_id", "key", "text", "input_tokens", "output_tokens", "batch_size")
    generations = {n: [tuple(g[f] for f in fields) for g in read(runs[n], "generations.jsonl")] for n in runs}
    assert len(generations["one"]) == 12 and generations["one"] == generations["two"]
    metrics = {n: [{k: v for k, v in row.items() if k != "run_id"} for row in read(runs[n], "metrics.jsonl")] for n in runs}
    assert metrics["one"] and metrics["one"] == metrics["two"]
