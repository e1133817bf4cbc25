"""Pluggable scoring components for output-filtering defenses (ETA, MLLM-Protector).

A defense names its components by (kind, name); :func:`build_scorer` turns that into an object. Each
kind has one small protocol, so an official checkpoint and an offline stand-in are interchangeable and
a test can swap in an object with hand-set scores:

============== ====================================================== ==============================
kind           protocol                                               registered names
============== ====================================================== ==============================
reward         ``rewards(adapter, items) -> list[float]``             armorm (ETA), self-judge
image-text     ``similarities(adapter, image, texts) -> list[float]`` clip (ETA), self-judge
harm-detector  ``safe_probabilities(adapter, texts) -> list[float]``  protector-7b, protector-3b,
                                                                      self-judge
detoxifier     ``rewrite(adapter, texts) -> list[str]``               protector, none
============== ====================================================== ==============================

Every component also has ``name``, ``fingerprint() -> dict`` (enters the defense fingerprint, hence
the generation cache key) and ``check_available()`` (called from ``Defense.prepare``: raises, with
the command that fixes it, when the component cannot run here). Scorers with a calibrated decision
threshold expose it as ``default_threshold``.

The ``adapter`` argument is the target model's :class:`~harness.defense_api.adapter.VLMAdapter`: offline
scorers judge with it; checkpoint scorers only read its device and load their own model on first use.
This module imports neither torch nor transformers, so listing names stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable as CallableType
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from harness.core.registry import Registry

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter


@dataclass(frozen=True)
class RewardItem:
    """One response to score. ``instruction`` is the user turn a reward model sees (ETA scores
    responses against its fixed ``rm_prompt``, not against the user's query); ``query`` and ``image``
    are the actual request, for scorers that judge the response in context."""

    instruction: str
    query: str
    response: str
    image: str | None = None


class Component(Protocol):
    name: str

    def fingerprint(self) -> dict[str, Any]: ...

    def check_available(self) -> None: ...


class RewardScorer(Component, Protocol):
    default_threshold: float

    def rewards(self, adapter: "VLMAdapter", items: Sequence[RewardItem]) -> list[float]: ...


class ImageTextScorer(Component, Protocol):
    default_threshold: float

    def similarities(self, adapter: "VLMAdapter", image: str, texts: Sequence[str]) -> list[float]: ...


class HarmDetector(Component, Protocol):
    default_threshold: float

    def safe_probabilities(self, adapter: "VLMAdapter", texts: Sequence[str]) -> list[float]: ...


class Detoxifier(Component, Protocol):
    def rewrite(self, adapter: "VLMAdapter", texts: Sequence[str]) -> list[str]: ...


# kind -> name -> (lazy "module:factory", aliases, help)
SCORERS: dict[str, dict[str, tuple[str, tuple[str, ...], str]]] = {
    "reward": {
        "armorm": (
            "harness.defense_api.scorers.hf:ArmoRMReward",
            ("armo-rm",),
            "RLHFlow/ArmoRM-Llama3-8B-v0.1 reward (ETA's post-evaluator)",
        ),
        "self-judge": (
            "harness.defense_api.scorers.self_judge:SelfJudgeReward",
            ("self_judge",),
            "offline: the target model's own P(not harmful) for the response (not ETA's scorer)",
        ),
    },
    "image-text": {
        "clip": (
            "harness.defense_api.scorers.hf:ClipImageText",
            ("clip-vit-l-336",),
            "openai/clip-vit-large-patch14-336 logits_per_image / 100 (ETA's pre-evaluator)",
        ),
        "self-judge": (
            "harness.defense_api.scorers.self_judge:SelfJudgeImageText",
            ("self_judge",),
            "offline: the target model's own P(statement about the image is true) (not CLIP)",
        ),
    },
    "harm-detector": {
        "protector-7b": (
            "harness.defense_api.scorers.hf:protector_detector_7b",
            ("protector",),
            "renjiepi/protector_detector_7b_lora (Llama-2-7B + LoRA, sequence classification)",
        ),
        "protector-3b": (
            "harness.defense_api.scorers.hf:protector_detector_3b",
            (),
            "renjiepi/protector_detector_3b_lora (open_llama_3b_v2 + LoRA, sequence classification)",
        ),
        "self-judge": (
            "harness.defense_api.scorers.self_judge:SelfJudgeHarmDetector",
            ("self_judge",),
            "offline: the target model's own P(not harmful) for the response alone (not the trained detector)",
        ),
    },
    "detoxifier": {
        "protector": (
            "harness.defense_api.scorers.hf:ProtectorDetoxifier",
            (),
            "renjiepi/mllm_protector_detoxifier (Vicuna-7B-v1.5 + LoRA) rewrites flagged responses",
        ),
        "none": (
            "harness.defense_api.scorers.fallback:FixedReply",
            ("fallback",),
            "no detoxifier: every flagged response becomes MLLM-Protector's fixed refusal",
        ),
    },
}


@cache
def scorer_registry(kind: str) -> Registry[Callable[..., Any]]:
    if kind not in SCORERS:
        raise KeyError(f"unknown scorer kind {kind!r}; known: {', '.join(sorted(SCORERS))}")
    # entries are factories (classes or functions) of objects following the kind's protocol
    registry: Registry[Callable[..., Any]] = Registry(f"{kind} scorer", CallableType)
    for name, (target, aliases, help_text) in SCORERS[kind].items():
        registry.register(name, target, aliases=aliases, help=help_text)
    return registry


def build_scorer(kind: str, name: str, **options: Any) -> Any:
    """A component of ``kind`` registered as ``name`` (or an alias), built with ``options``."""
    return scorer_registry(kind).get(name)(**options)
