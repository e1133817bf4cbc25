"""The judging stage: (samples, stored generations) -> one verdict per sample, cached.

Judging is a stage of its own, run over stored generations: ``harness eval`` calls it right after
generating, and ``harness judge`` calls it again on a stored run with other judges (no model needed).
Verdicts are cached in the content-addressed judgement cache (:mod:`harness.core.judgement_cache`
says what its key covers), so a verdict is reused by any run, results folder, model or defense that
produced the same response to the same sample.

The image hash comes from the generation request when the caller has it (``image_sha256``: the pipeline
passes what it hashed before generating), else from the file. If the file can no longer be read, the
generation's key (a hash that already covers the image content at generation time) stands in for it.

What is cached and what is not:

- Every verdict a judge *returns* is cached, undecided ones included. An undecided verdict (e.g. an
  LLM judge's reply that its parser cannot read) is the judge's answer to that input under that
  fingerprint; re-asking until a parseable reply comes would bias the verdicts towards whatever
  parses, and the report shows undecided counts per judge instead. ``retry_undecided=True``
  (``harness judge --retry-undecided``) re-asks them on purpose.
- A judge that *raises* (network error, timeout, out of memory) gives that item an undecided verdict
  with ``label = "judge-error"`` and the exception in ``detail``; the stage goes on with the other
  items, and the error is never cached, so the next run asks again. Judges must therefore raise on
  transient failures and return an undecided verdict only when the answer itself is undecidable.
- Failed generations (no text) are not judged at all; metrics count them as errors.

Batching: a judge with ``judge_many(pairs)`` gets chunks of ``chunk_size`` items (its own batching or
concurrency happens inside); if a chunk fails as a whole, its items are judged one by one with
``judge`` so that one bad item fails alone. Each chunk is committed to the cache as soon as it is
judged: a crash or kill loses no finished verdict.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from harness.core.images import file_sha256
from harness.core.judgement_cache import (  # noqa: F401 - the cache's names are re-exported for the stage's callers
    DEFAULT_CHUNK_SIZE,
    JUDGE_ERROR_LABEL,
    JudgementCache,
    is_cacheable,
    judgement_cache_path,
    judgement_key,
)
from harness.core.records import Generation, Judgement, Sample, TaskSpec

log = logging.getLogger("harness.pipeline.judge")


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class JudgeStageResult:
    """The verdicts of one judge on one task's samples, with what the cache and the judge did."""

    judge: str
    verdicts: dict[str, Judgement]  # sample id -> verdict
    cache_hits: int = 0
    judged: int = 0  # verdicts asked of the judge this time (errors included)
    errors: int = 0  # of judged: the judge raised (undecided, label "judge-error", not cached)
    skipped: int = 0  # failed generations, not judged

    @property
    def undecided(self) -> int:
        return sum(1 for j in self.verdicts.values() if not j.decided)

    def counts(self) -> dict[str, int]:
        return {"verdicts": len(self.verdicts), "cache_hits": self.cache_hits, "judged": self.judged,
                "errors": self.errors, "undecided": self.undecided, "not_judged": self.skipped}


def judge_stage(
    judge: Any,
    samples: Sequence[Sample],
    generations: Mapping[str, Generation],
    cache: JudgementCache | None,
    **options: Any,
) -> dict[str, Judgement]:
    """sample id -> verdict of ``judge`` for every sample whose generation succeeded (cached).

    ``options`` are those of ``run_judge_stage``; ``cache=None`` judges everything afresh.
    """
    return run_judge_stage(judge, samples, generations, cache, **options).verdicts


def run_judge_stage(
    judge: Any,
    samples: Sequence[Sample],
    generations: Mapping[str, Generation],
    cache: JudgementCache | None,
    *,
    image_sha256: Mapping[str, str | None] | None = None,
    progress: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    retry_undecided: bool = False,
) -> JudgeStageResult:
    """Judge every successful generation of ``samples`` (see the module doc); verdicts in sample order.

    ``image_sha256``: sample id -> image content hash when the caller already has it.
    ``retry_undecided``: ask the judge again where the cache holds an undecided verdict.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    name = judge.name
    fingerprint = judge.fingerprint()
    result = JudgeStageResult(judge=name, verdicts={})
    images = _ImageHashes(image_sha256 or {})

    work: list[tuple[str, Sample, Generation]] = []
    for sample in samples:
        generation = generations.get(sample.id)
        if generation is None:
            continue
        if not generation.ok or generation.text is None:
            result.skipped += 1
            continue
        key = judgement_key(judge_fingerprint=fingerprint, sample=sample,
                            image_sha256=images.identity(sample, generation), response=generation.text)
        work.append((key, sample, generation))

    cached = cache.get_many(key for key, _, _ in work) if cache is not None else {}
    if retry_undecided:
        cached = {key: j for key, j in cached.items() if j.decided}
    fresh: dict[str, Judgement] = {}
    pending = [item for item in work if item[0] not in cached]
    task = samples[0].task if samples else "?"
    with _progress(len(work), progress, f"judge {name} / {task}") as bar:
        bar.update(len(work) - len(pending))
        for chunk in _chunks(pending, chunk_size):
            verdicts = _judge_chunk(judge, name, [(sample, generation) for _, sample, generation in chunk])
            for (key, _, generation), verdict in zip(chunk, verdicts):
                fresh[generation.sample_id] = verdict
                result.judged += 1
                result.errors += verdict.label == JUDGE_ERROR_LABEL
            if cache is not None:
                cache.put_many((key, verdict) for (key, _, _), verdict in zip(chunk, verdicts))
            bar.update(len(chunk))

    for key, _, generation in work:
        if key in cached:
            result.verdicts[generation.sample_id] = _retarget(cached[key], generation, name)
            result.cache_hits += 1
        else:
            result.verdicts[generation.sample_id] = fresh[generation.sample_id]
    _give_errors_the_judge_kind(result.verdicts)
    log.info(
        "judge %s on %s: %d verdicts (%d cache hits, %d misses judged, %d judge errors), %d undecided, "
        "%d failed generations not judged",
        name, task, len(result.verdicts), result.cache_hits, result.judged, result.errors, result.undecided,
        result.skipped,
    )
    return result


# ---------------------------------------------------------------------------------------------------
# helpers


class _ImageHashes:
    """Image identity for the key: the caller's hash, else the file's (hashed once per path)."""

    def __init__(self, known: Mapping[str, str | None]):
        self._known = known
        self._files: dict[str, str | None] = {}

    def identity(self, sample: Sample, generation: Generation) -> str | None:
        if sample.image is None:
            return None
        known = self._known.get(sample.id)
        if known:
            return known
        if sample.image not in self._files:
            try:
                self._files[sample.image] = file_sha256(sample.image)
            except OSError:
                self._files[sample.image] = None
        digest = self._files[sample.image]
        # the generation key covers the image content it was generated from
        return digest if digest is not None else f"unreadable-image:{generation.key}"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _checked(judgement: Any, generation: Generation, name: str) -> Judgement:
    """A fresh verdict, validated against the generation it is for, under the judge's name."""
    if not isinstance(judgement, Judgement):
        raise TypeError(f"judge returned {type(judgement).__name__}, not a Judgement")
    if (judgement.task, judgement.sample_id) != (generation.task, generation.sample_id):
        raise ValueError(
            f"judge returned a verdict for {judgement.task}/{judgement.sample_id} "
            f"when asked about {generation.task}/{generation.sample_id}"
        )
    return dataclasses.replace(judgement, judge=name, key=generation.key)


def _retarget(judgement: Judgement, generation: Generation, name: str) -> Judgement:
    """A cached verdict (maybe made for another run's identical sample and response) for this generation."""
    return dataclasses.replace(judgement, key=generation.key, task=generation.task,
                               sample_id=generation.sample_id, judge=name)


def verdict_kind(judge: Any) -> str | None:
    """"harm" or "refusal" when the judge says which field it decides (LLM and classifier judges set
    ``kind`` to one of them; keyword and semantic judges are refusal judges), else None."""
    kind = getattr(judge, "kind", None)
    if kind in ("harm", "refusal"):
        return kind
    return "refusal" if kind in ("keyword", "semantic") else None


def describe_error(judge: Any, exc: BaseException) -> str:
    """``Type: message`` with the judge's secrets removed (an LLM judge's client knows its API key)."""
    text = f"{type(exc).__name__}: {exc}"
    redact = getattr(getattr(judge, "client", None), "redact", None)
    return redact(text) if callable(redact) else text


def error_judgement(name: str, generation: Generation, exc: BaseException, judge: Any = None) -> Judgement:
    """The undecided verdict recorded when a judge raises on an item (never cached)."""
    return Judgement.of(generation, name, label=JUDGE_ERROR_LABEL, detail=describe_error(judge, exc),
                        kind=verdict_kind(judge) or "refusal")


def _judge_chunk(judge: Any, name: str, pairs: list[tuple[Sample, Generation]]) -> list[Judgement]:
    """One verdict per pair: ``judge_many`` on the chunk when the judge has it, else (or if the whole
    chunk fails) ``judge`` item by item, each failure recorded alone."""
    judge_many = getattr(judge, "judge_many", None)
    if callable(judge_many):
        try:
            verdicts = list(judge_many(pairs))
            if len(verdicts) != len(pairs):
                raise RuntimeError(f"judge_many returned {len(verdicts)} verdicts for {len(pairs)} items")
            return [_checked(v, generation, name) for v, (_, generation) in zip(verdicts, pairs)]
        except Exception as exc:  # noqa: BLE001 - retried one by one so that a bad item fails alone
            log.warning("judge %s: judge_many failed on %d items (%s); judging them one by one",
                        name, len(pairs), describe_error(judge, exc))
    verdicts = []
    for sample, generation in pairs:
        try:
            verdicts.append(_checked(judge.judge(sample, generation), generation, name))
        except Exception as exc:  # noqa: BLE001 - one item's failure must not stop the stage
            log.error("judge %s failed on %s/%s: %s", name, generation.task, generation.sample_id,
                      describe_error(judge, exc))
            verdicts.append(error_judgement(name, generation, exc, judge))
    return verdicts


def _give_errors_the_judge_kind(verdicts: dict[str, Judgement]) -> None:
    """Error verdicts take the kind (refusal / harm) of the judge's real verdicts, so that metrics count
    them where the judge's verdicts count (a harm judge's errors on benign prompts are not refusals)."""
    kinds = Counter(j.kind for j in verdicts.values() if j.label != JUDGE_ERROR_LABEL)
    if not kinds:
        return
    kind = kinds.most_common(1)[0][0]
    for sample_id, judgement in verdicts.items():
        if judgement.label == JUDGE_ERROR_LABEL and judgement.kind != kind:
            verdicts[sample_id] = dataclasses.replace(judgement, kind=kind)


class _NoBar:
    def update(self, count: int) -> None:
        del count

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(total: int, enabled: bool, description: str) -> Any:
    """A tqdm bar (as the pipeline's generation bar) when enabled and tqdm is installed."""
    if not enabled or total == 0:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=description, unit="verdict", dynamic_ncols=True)


# ------------------------------------------------------------------------------ which judges, built how


def judge_per_task(specs: Sequence[TaskSpec], override: str | None) -> dict[str, str]:
    """Task -> canonical judge name. ``--judge`` replaces the default judge of judged tasks only: a
    utility task (``judge: null``) is scored against its answers and never sent to a judge."""
    from harness import registries

    chosen = {}
    for spec in specs:
        if spec.judge is not None:
            chosen[spec.name] = registries.judges().canonical(override or spec.judge)
    return chosen


def build_judges(names: Sequence[str], judge_args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Canonical judge name -> judge, built with its ``--judge-arg`` options: the one rule for ``harness
    eval`` and ``harness judge``. ``names`` may hold aliases (a judge named twice is built once).

    Scoped options (``JUDGE:KEY=VALUE``) may use an alias and must name a judge of this run; unscoped
    ones go to every judge whose factory takes that option (keyword judges take none)."""
    from harness import registries

    names = list(dict.fromkeys(registries.judges().canonical(name) for name in names))
    scoped: dict[str, dict[str, Any]] = {}
    for scope, options in judge_args.items():
        if scope == "*":
            continue
        name = registries.judges().canonical(scope)
        if name not in names:
            raise ValueError(f"--judge-arg names judge {scope!r}, which is not a judge of this run "
                             f"(judges: {', '.join(names) or 'none'})")
        scoped.setdefault(name, {}).update(options)
    judges = {}
    unscoped = judge_args.get("*", {})
    taken: set[str] = set()
    accepted: dict[str, list[str]] = {}
    for name in names:
        try:
            factory = registries.judges().get(name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"judge {name!r} is registered but cannot be loaded here: {exc}") from None
        parameters = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        accepted[name] = ["any"] if takes_any else sorted(parameters)
        shared = {key: value for key, value in unscoped.items() if takes_any or key in parameters}
        taken |= set(shared)
        try:
            judges[name] = factory(**{**shared, **scoped.get(name, {})})
        except TypeError as exc:  # an option this judge does not take
            raise ValueError(f"judge {name}: {exc}") from None
        except ValueError as exc:  # a bad value, no endpoint configured
            raise ValueError(f"judge {name!r}: {exc}") from None
    unused = sorted(set(unscoped) - taken)
    if unused:
        # An option some other judge takes is only unused here (a shared JUDGE_ARGS, say); one that no
        # registered judge takes is a typo (``modle=``) and must not silently fall back to the defaults.
        anywhere = {key for entry in registries.judges() for key in inspect.signature(entry.load()).parameters}
        typos = [key for key in unused if key not in anywhere]
        if typos:
            options = "; ".join(f"{name}: {', '.join(keys) or 'none'}" for name, keys in accepted.items())
            raise ValueError(f"--judge-arg {', '.join(typos)}: no judge takes this option "
                             f"(this run's judges take: {options})")
        log.warning("--judge-arg %s: taken by no judge of this run (judges: %s)", ", ".join(unused), ", ".join(names))
    return judges


def judge_entry(fingerprint: dict[str, Any], stage: JudgeStageResult, *, primary: bool) -> dict[str, Any]:
    """What run.json's ``judging`` records for one (task, judge): see ``harness.core.store.RunInfo``."""
    return {"fingerprint": fingerprint, "primary": primary, "judged_at": now_utc(), **stage.counts()}


@dataclass
class JudgedTasks:
    """Verdicts by task, the headline judge's name and fingerprint per task, and run.json's ``judging``."""

    verdicts: dict[str, dict[str, Judgement]] = dataclasses.field(default_factory=dict)
    judge_names: dict[str, str] = dataclasses.field(default_factory=dict)
    fingerprints: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    judging: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def all_verdicts(self) -> list[Judgement]:
        return [j for verdicts in self.verdicts.values() for j in verdicts.values()]


def judge_tasks(
    plan: Any,
    generations: Mapping[str, Mapping[str, Generation]],
    task_judges: Mapping[str, str],
    judges: Mapping[str, Any],
    *,
    progress: bool = True,
) -> JudgedTasks:
    """The judging stage of ``harness eval``: each judged task's samples by its judge (cached)."""
    judged = JudgedTasks()
    cache: JudgementCache | None = None
    try:
        for spec in plan.loaded_specs:
            name = task_judges.get(spec.name)
            if not name:
                continue
            judge = judges[name]
            judged.fingerprints[spec.name] = judge.fingerprint()
            if cache is None:
                cache = JudgementCache(judgement_cache_path())
            stage = run_judge_stage(
                judge, plan.samples[spec.name], generations.get(spec.name, {}), cache,
                image_sha256={item.sample.id: item.request.image_sha256 for item in plan.planned[spec.name]},
                progress=progress,
            )
            # the stage names verdicts after the judge object; rows and run.json use the same name
            judged.judge_names[spec.name] = stage.judge
            judged.verdicts[spec.name] = stage.verdicts
            judged.judging[spec.name] = {stage.judge: judge_entry(judged.fingerprints[spec.name], stage, primary=True)}
    finally:
        if cache is not None:
            cache.close()
    return judged
