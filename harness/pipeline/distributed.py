"""Data parallelism: one evaluation over several processes, as lm-eval and lmms-eval do it.

Launched with ``accelerate launch -m harness eval ...`` or ``torchrun -m harness eval ...``, every
process (rank) runs the same command. The launcher's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``) says how many there are; accelerate's :class:`~accelerate.PartialState` sets up
``torch.distributed`` (NCCL and one GPU per rank on a GPU machine, gloo on CPUs). Then, for each run:

1. every rank brings up the model and plans the same requests; rank 0 looks the plan up in the
   generation cache and sends every rank the keys still missing, with a digest of its plan (a rank that
   planned anything else stops with an error rather than generating the wrong shard);
2. the misses are cut into exactly the batches one process would run (:func:`harness.pipeline.generate.batches`),
   and whole batches are dealt to ranks by expected cost (:func:`shard_batches`), so each batch has the
   same members and padding as in a single process and the outputs are the same token for token;
3. each rank commits every batch to the cache as it finishes (or to its own cache file, ``--cache-per-rank``),
   then sends its generations to rank 0, which judges, scores, stores the run and writes the reports.

With one process (no launcher, or ``WORLD_SIZE=1``) nothing here runs: not even torch.distributed is
imported. Control messages are JSON over a gloo group with a timeout, so a rank that dies or hangs makes
the launch fail with a message naming the step, never a silent hang.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

from harness.models.spec import SHARD_DEVICE

log = logging.getLogger("harness.pipeline.distributed")

T = TypeVar("T")

# How long a rank waits for the others at any collective step: rank 0's wait for the slowest shard is
# the long one, so size it to a shard's worst imbalance, not to the whole run.
TIMEOUT_ENV = "HARNESS_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0


class DistributedError(RuntimeError):
    """A multi-process step failed: a peer died or hung, or the ranks disagree on what to run."""


def launched_world_size() -> int:
    """How many processes the launcher started (1 without a launcher); reads the environment only."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise DistributedError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def timeout_from_environment() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        raise DistributedError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise DistributedError(f"{TIMEOUT_ENV} must be > 0, got {value}")
    return seconds


@dataclass
class ParallelOptions:
    """How a multi-process launch runs (ignored by a single process)."""

    timeout_s: float = field(default_factory=timeout_from_environment)
    # Each rank writes its own cache file (results/cache/shards/), for nodes without a shared
    # filesystem; rank 0 folds the files it can reach into the cache (``harness cache merge``).
    cache_per_rank: bool = False


@dataclass
class Distributed:
    """This process's place in a launch, and the collectives the pipeline needs (JSON over gloo)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    timeout_s: float
    group: Any = None  # the gloo group control messages use (None: the default group is gloo)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str, timeout_s: float) -> "Distributed | None":
        """The launch this process belongs to, process group initialised; None for a single process.
        ``device``: the resolved device ("cpu" selects gloo; "cuda" one GPU per rank, by LOCAL_RANK;
        "shard" a group of GPUs per rank, harness.models.hf.shard_gpus)."""
        if launched_world_size() <= 1:
            return None
        if device not in ("cpu", "cuda", SHARD_DEVICE):
            raise DistributedError(
                f"--device {device!r} with {launched_world_size()} processes: use cpu, cuda, shard or auto "
                "(each rank takes the GPU of its LOCAL_RANK, or with shard its share of the node's GPUs)")
        import torch
        import torch.distributed as dist
        from accelerate import PartialState

        timeout = dt.timedelta(seconds=timeout_s)
        on_cpu = device == "cpu" or (device == SHARD_DEVICE and not torch.cuda.is_available())
        state = PartialState(cpu=on_cpu, timeout=timeout)
        if state.num_processes != launched_world_size():
            raise DistributedError(f"the launcher started {launched_world_size()} processes, but accelerate "
                                   f"set up {state.num_processes} (backend {state.backend})")
        group = None if state.backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
        world = cls(state.process_index, state.num_processes, state.local_process_index, str(state.backend), timeout_s, group)
        log.info("rank %d of %d (local rank %d, backend %s, device %s, collective timeout %.0f s)",
                 world.rank, world.world_size, world.local_rank, world.backend, state.device, timeout_s)
        return world

    # ------------------------------------------------------------------------------------- collectives
    def _guarded(self, step: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except DistributedError:
            raise
        except Exception as exc:  # noqa: BLE001 - gloo raises RuntimeError subclasses of several kinds
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {step} failed; another rank died or did not reach it "
                f"within {self.timeout_s:.0f} s ({TIMEOUT_ENV} sets the limit). The generations finished so far "
                f"are in the cache: run the same command again to resume. ({type(exc).__name__}: {exc})"
            ) from exc

    def broadcast_json(self, value: Any, step: str) -> Any:
        """Rank 0's ``value`` (any JSON value), on every rank."""
        import torch
        import torch.distributed as dist

        def run() -> Any:
            data = json.dumps(value).encode("utf-8") if self.is_main else b""
            size = torch.tensor([len(data)], dtype=torch.int64)
            dist.broadcast(size, 0, group=self.group)
            buffer = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.is_main
                      else torch.empty(int(size.item()), dtype=torch.uint8))
            dist.broadcast(buffer, 0, group=self.group)
            return json.loads(buffer.numpy().tobytes().decode("utf-8"))

        return self._guarded(step, run)

    def gather_json(self, value: Any, step: str) -> list[Any] | None:
        """Every rank's ``value`` by rank, on rank 0; None elsewhere."""
        import torch
        import torch.distributed as dist

        def run() -> list[Any] | None:
            data = json.dumps(value).encode("utf-8")
            sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world_size)]
            dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64), group=self.group)
            longest = max(int(size.item()) for size in sizes)
            buffer = torch.zeros(longest, dtype=torch.uint8)
            buffer[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            received = [torch.empty(longest, dtype=torch.uint8) for _ in range(self.world_size)] if self.is_main else None
            dist.gather(buffer, received, dst=0, group=self.group)
            if received is None:
                return None
            return [json.loads(chunk[: int(size.item())].numpy().tobytes().decode("utf-8"))
                    for chunk, size in zip(received, sizes)]

        return self._guarded(step, run)

    def barrier(self, step: str) -> None:
        import torch.distributed as dist

        # gloo's monitored barrier names the rank that did not arrive
        self._guarded(step, lambda: dist.monitored_barrier(group=self.group, timeout=dt.timedelta(seconds=self.timeout_s)))

    def close(self) -> None:
        """Leave the process group (after the last collective; rank 0 then judges alone)."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend}


# ------------------------------------------------------------------------------------------ sharding
def shard_batches(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Batch indices for each rank: longest expected cost first, each to the least-loaded rank (ties to
    the lowest rank), then in their original order within a rank. Deterministic in ``costs`` alone."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    loads = [(0.0, rank) for rank in range(world_size)]
    heapq.heapify(loads)
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        shards[rank].append(index)
        heapq.heappush(loads, (load + costs[index], rank))
    return [sorted(shard) for shard in shards]
