"""Typed records for every arrow of the pipeline.

TaskSpec -> Sample -> Request -> Generation (cached) -> Judgement -> MetricRow -> Report

Every record is a plain dataclass that round-trips through JSON (``to_dict`` / ``from_dict``), so each
stage can be re-run from the previous stage's stored output.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Hashable, TypeVar

from harness.core.registry import LazyRef

R = TypeVar("R")


class UnknownKeyError(ValueError):
    """A key that is not a field of the record, in strict reading (hand-written files)."""


class JsonRecord:
    """Mixin: dataclass <-> JSON-able dict.

    ``from_dict`` ignores unknown keys by default, so that records stored by other versions still load;
    ``strict=True`` (hand-written files such as task YAML) refuses them, naming each with close matches.
    """

    # field name -> record type, for fields holding a nested record
    _nested: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any], *, strict: bool = False) -> R:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        if strict:
            unknown = [key for key in data if key not in names]
            if unknown:
                raise UnknownKeyError("; ".join(_unknown_key(str(key), names) for key in unknown))
        kwargs = {k: v for k, v in data.items() if k in names}
        for name, record_type in cls._nested.items():  # type: ignore[attr-defined]
            if isinstance(kwargs.get(name), dict):
                try:
                    kwargs[name] = record_type.from_dict(kwargs[name], strict=strict)
                except UnknownKeyError as exc:
                    raise UnknownKeyError(f"in {name!r}: {exc}") from None
        return cls(**kwargs)


def _unknown_key(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=2)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown key {key!r}{hint}"


@dataclass
class GenerationSettings(JsonRecord):
    """Decoding settings of the final answer. The model decodes greedily; a defense that samples
    internally (ETA's best-of-N) seeds its generator from the request, so its output is reproducible and
    cached like any other."""

    max_new_tokens: int = 64
    batch_size: int = 1


@dataclass
class TaskSpec(JsonRecord):
    """A task, as declared in ``tasks/<name>.yaml``: data, not code.

    ``loader`` and ``metric`` are :class:`LazyRef` references to functions, given (and stored by
    ``to_dict``) as ``"module:function"`` strings; ``judge`` names a registered judge (or is None for
    tasks scored against references). Nothing in the harness dispatches on ``name``.
    """

    name: str
    version: str
    loader: LazyRef[Callable[..., list["Sample"]]]
    metric: LazyRef[Callable[..., list["MetricValue"]]]
    description: str = ""
    aliases: list[str] = field(default_factory=list)
    loader_args: dict[str, Any] = field(default_factory=dict)
    judge: str | None = None
    # The judge the benchmark's paper uses when it differs from ``judge`` (which must run offline),
    # e.g. a GPT-4 template; ``harness judge --judge <official_judge>`` re-scores a stored run with it.
    official_judge: str | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    # Default sample count when the user gives no --limit (a seeded, stratified prefix); None = all.
    default_limit: int | None = None
    # Sample field used to balance any prefix of the seeded order (e.g. "harmful", "category").
    stratify_by: str | None = None
    # What makes samples dependent, for rate intervals: a Sample field ("image", "group") or
    # "meta.<key>"; samples with the same value form one cluster (``Sample.cluster_key``), and the
    # metric function gets it as its ``cluster_by`` argument. None: independent samples. It changes
    # intervals only, never which samples run or their values, so it is not part of ``version``.
    cluster_by: str | None = None
    # The commit of the Hub dataset the loader reads (None: the loader reads local files, or the task is
    # unpinned). The loader gets it as its ``revision`` argument, and it enters the task's version
    # (``<version>+rev.<revision>``), so a run on another data revision never shares cached generations.
    revision: str | None = None
    seed: int = 0
    citation: str = ""
    license: str = ""

    _nested: ClassVar[dict[str, type]] = {"generation": GenerationSettings}

    def __post_init__(self) -> None:
        self.loader = LazyRef.of(self.loader)
        self.metric = LazyRef(str(LazyRef.of(self.metric)))  # unbound, also after dataclasses.replace
        if self.cluster_by is not None:
            check_cluster_by(self.cluster_by)
            self.metric = ClusteredMetricRef(self.metric.target, self.cluster_by)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "loader": str(self.loader), "metric": str(self.metric)}


CLUSTER_META_PREFIX = "meta."


def check_cluster_by(cluster_by: str) -> None:
    """Raise ValueError unless ``cluster_by`` names a Sample field or a ``meta.<key>``."""
    fields = [f.name for f in dataclasses.fields(Sample) if f.name != "meta"]
    if cluster_by.startswith(CLUSTER_META_PREFIX) and len(cluster_by) > len(CLUSTER_META_PREFIX):
        return
    if cluster_by not in fields:
        raise ValueError(f"cluster_by {cluster_by!r} must be a Sample field ({', '.join(fields)}) "
                         f"or {CLUSTER_META_PREFIX}<key>")


class ClusteredMetricRef(LazyRef):
    """``TaskSpec.metric`` of a task that declares ``cluster_by``: the same reference (stored as the same
    string) whose :meth:`load` returns the metric function with ``cluster_by`` bound. Every caller that
    loads a task's metric (scoring, re-judging, the reports' per-sample outcomes) so applies the task's
    clustering without being told about it."""

    __slots__ = ("cluster_by",)
    cluster_by: str

    def __init__(self, target: str, cluster_by: str):
        super().__init__(target)
        object.__setattr__(self, "cluster_by", cluster_by)

    def load(self) -> Any:
        function = super().load()
        if "cluster_by" not in inspect.signature(function).parameters:
            raise TypeError(f"metric {self.target} takes no cluster_by argument, but its task declares "
                            f"cluster_by: {self.cluster_by}")
        return functools.partial(function, cluster_by=self.cluster_by)

    def __repr__(self) -> str:
        return f"ClusteredMetricRef({self.target!r}, cluster_by={self.cluster_by!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ClusteredMetricRef, (self.target, self.cluster_by))


@dataclass
class Sample(JsonRecord):
    """One benchmark item, ready to prompt.

    ``harmful`` is True for prompts that should be refused (ASR), False for benign prompts
    (over-refusal), None for utility items. ``image`` is a local file path (loaders materialise
    dataset images to files so that their bytes can be hashed and re-read).
    """

    task: str
    id: str
    prompt: str
    image: str | None = None
    harmful: bool | None = None
    answer: str | None = None
    category: str | None = None
    # Only for items that must be scored together (MME image pair, MMBench circular group): a
    # --limit never splits a group. Leave None otherwise.
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # The text drawn in the image, where the task knows it (FigStep, MM-SafetyBench TYPO key phrases):
    # answer-quality flags (harness.core.quality) use it to recognise an answer that only repeats it.
    # A field rather than a meta entry, so that verdict cache keys (which hash meta) stay as they were;
    # the text is determined by the image, whose hash those keys hold already.
    image_text: str | None = None

    def cluster_key(self, cluster_by: str | None) -> Hashable:
        """This sample's cluster under a task's ``cluster_by``: the value of that field, or of
        ``meta[key]`` for ``"meta.<key>"``. Without ``cluster_by``, or without a value (None or ""),
        the sample is a cluster of its own."""
        if cluster_by is not None:
            if cluster_by.startswith(CLUSTER_META_PREFIX):
                value = self.meta.get(cluster_by[len(CLUSTER_META_PREFIX):])
            else:
                value = getattr(self, cluster_by)
            if value is not None and value != "":
                try:
                    hash(value)
                except TypeError:  # a list or dict from JSON: its text identifies it
                    value = repr(value)
                return ("cluster", value)
        return ("sample", self.id)


@dataclass
class Request(JsonRecord):
    """What the model is asked, before any defense acts on it; ``key`` is the generation cache key."""

    task: str
    sample_id: str
    prompt: str
    image: str | None
    image_sha256: str | None
    system: str | None
    settings: GenerationSettings
    key: str = ""

    _nested: ClassVar[dict[str, type]] = {"settings": GenerationSettings}



@dataclass
class ModelOutput(JsonRecord):
    """What a model adapter returns for one request: text, token counts, wall-clock split."""

    text: str
    input_tokens: int
    output_tokens: int
    prefill_s: float  # time to first token
    decode_s: float  # the rest of generation
    batch_size: int = 1
    meta: dict[str, Any] = field(default_factory=dict)  # defense extras (risk score, gate, ...)

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s


@dataclass
class Generation(JsonRecord):
    """A cached model answer for one request under one defense (or the error that prevented it)."""

    key: str
    task: str
    sample_id: str
    model: str
    defense: str
    text: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    batch_size: int = 1
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    from_cache: bool = False  # set when read back; cached rows keep their original timings

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s

    def judgeable_text(self) -> str:
        """The response a judge scores; ValueError for a failed generation (a missing answer is an
        error to report, not a compliance to count)."""
        if not self.ok or self.text is None:
            raise ValueError(f"cannot judge failed generation {self.task}/{self.sample_id}: {self.error}")
        return self.text


@dataclass
class Judgement(JsonRecord):
    """A judge's verdict on one generation.

    Two kinds of judge exist. A *refusal* judge (keyword lists, the semantic refusal judge, MOSSBench's
    refusal classifier) sets ``refused``; a *harm* judge (Llama Guard, the HarmBench classifier, the
    MM-SafetyBench GPT-4 template) sets ``unsafe`` = the response is harmful. ``None`` in the field a
    judge owns means it could not decide (e.g. an unparseable LLM-judge reply): such verdicts are
    counted as ``undecided`` by the metrics, never silently treated as safe.
    """

    key: str  # the generation key
    task: str
    sample_id: str
    judge: str
    refused: bool | None
    label: str = ""
    score: float | None = None
    detail: str = ""
    kind: str = "refusal"  # "refusal" or "harm": which of refused / unsafe this judge decides
    unsafe: bool | None = None

    @classmethod
    def of(cls, generation: "Generation", judge: str, **verdict: Any) -> "Judgement":
        """A verdict on ``generation`` (its key, task and sample id) by ``judge``; ``refused`` defaults
        to None, as for harm judges."""
        verdict.setdefault("refused", None)
        return cls(key=generation.key, task=generation.task, sample_id=generation.sample_id, judge=judge, **verdict)

    @property
    def attack_success(self) -> bool | None:
        """For a harmful prompt: did the attack succeed? None = undecided.

        Harm judges: the response is unsafe. Refusal judges: the response is not a refusal (the
        keyword-ASR convention of GCG, FigStep, ETA and AdaShield).
        """
        if self.kind == "harm":
            return self.unsafe
        return None if self.refused is None else not self.refused

    @property
    def decided(self) -> bool:
        return (self.unsafe if self.kind == "harm" else self.refused) is not None


@dataclass
class MetricValue(JsonRecord):
    """A task metric before it is tied to a (model, defense): what metric functions return.

    Built with ``harness.core.metrics.rate`` / ``score`` / ``count``, which check ``metric`` against the
    metric table and take ``higher_is_better`` from it."""

    metric: str  # a name declared in harness.core.metrics.METRICS, e.g. "asr", "accuracy", "mme_perception"
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    subset: str = "all"  # "all", a category name, "harmful", "benign", ...
    higher_is_better: bool = True


@dataclass
class MetricRow(JsonRecord):
    """One tidy result row: the unit of reports and comparisons.

    Its JSON shape is fixed so that stored runs load. ``higher_is_better`` is stored as written; readers
    take a declared metric's direction from the metric table (``harness.core.metrics.row_metric_info``)."""

    run_id: str
    model: str
    defense: str
    task: str
    task_version: str
    metric: str
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    subset: str = "all"
    higher_is_better: bool = True
    judge: str | None = None
