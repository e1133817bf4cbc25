"""Judge registry: name -> lazy ``"module:factory"`` target.

``registries.judges().get(name)`` returns the factory; call it with keyword options (``--judge-arg
KEY=VALUE``; every option has a default, environment variables may supply endpoint settings) to get a
judge: an object with ``name``, ``fingerprint() -> dict`` and ``judge(sample, generation) ->
Judgement``, and optionally ``judge_many(pairs) -> list[Judgement]`` for judges that batch (classifier
models, HTTP endpoints). The fingerprint identifies the scoring rule (model id + revision, template
sha256, keyword-list sha256, thresholds) and is part of the judgement cache key; it never contains a
secret. A judge sets ``Judgement.kind`` = "refusal" (decides ``refused``) or "harm" (decides
``unsafe``); an undecidable input (e.g. an unparseable LLM reply) leaves that field None.

This module imports nothing but typing, so listing judges stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from harness.core.records import Generation, Judgement, Sample
    from harness.core.registry import Registry


class Judge(Protocol):
    """What the runner needs from a judge."""

    name: str

    def fingerprint(self) -> dict[str, Any]: ...

    def judge(self, sample: "Sample", generation: "Generation") -> "Judgement": ...


# Each entry: name -> (lazy factory target, aliases, help). Factories live in the modules named.
JUDGES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "keyword-gcg": (
        "harness.judges.keyword:make_gcg_judge",
        ("keyword_gcg",),
        "GCG/llm-attacks _test_prefixes (29 strings), case-sensitive substring",
    ),
    "keyword-eta": (
        "harness.judges.keyword:make_eta_judge",
        ("keyword_eta",),
        'ETA eval_asr.py list on the lower-cased response, plus the exact answer "it is not" '
        '(as in the original, "but I cannot" never matches)',
    ),
    "keyword-adashield": (
        "harness.judges.keyword:make_adashield_judge",
        ("keyword_adashield",),
        "AdaShield eval_key_word.py list, case-sensitive substring",
    ),
    "keyword-jbb": (
        "harness.judges.keyword:make_jbb_judge",
        ("keyword_jbb",),
        "JailbreakBench string-classifier prefixes, case-sensitive substring",
    ),
    "keyword-vlguard": (
        "harness.judges.keyword:make_vlguard_judge",
        ("keyword_vlguard",),
        "VLGuard utils.check_success_attack list, lower-cased response substring, plus exact \"it is not\"",
    ),
    "keyword-xstest": (
        "harness.judges.keyword:make_xstest_judge",
        ("keyword_xstest",),
        "XSTest classify_completions_strmatch: lower-cased response startswith a refusal opener",
    ),
    "semantic-refusal": (
        "harness.judges.semantic:make_semantic_refusal_judge",
        ("minilm-refusal",),
        "offline refusal judge: all-MiniLM-L6-v2 similarity to refusal vs compliance prototypes, calibrated on shipped labels",
    ),
    "llama-guard-3": (
        "harness.judges.classifiers:make_llama_guard_3",
        ("llamaguard3",),
        "harm judge: meta-llama/Llama-Guard-3-8B on (prompt, response), unsafe if it answers 'unsafe'",
    ),
    "llama-guard-3-vision": (
        "harness.judges.classifiers:make_llama_guard_3_vision",
        ("llamaguard3-vision",),
        "harm judge: meta-llama/Llama-Guard-3-11B-Vision on (image, prompt, response)",
    ),
    "harmbench-cls": (
        "harness.judges.classifiers:make_harmbench_classifier",
        ("harmbench",),
        "harm judge: cais/HarmBench-Llama-2-13b-cls yes/no (responses with [INST] tags escaped, HarmBench issue 91)",
    ),
    "md-judge": (
        "harness.judges.classifiers:make_md_judge",
        ("mdjudge",),
        "harm judge: OpenSafetyLab/MD-Judge-v0.1 (SPA-VL's harm judge)",
    ),
    "gpt-mmsafetybench": (
        "harness.judges.llm:make_mmsafetybench_judge",
        ("gpt4-mmsafetybench",),
        "harm judge: MM-SafetyBench's scenario-specific GPT-4 templates on an OpenAI-compatible endpoint",
    ),
    "gpt-harmless": (
        "harness.judges.llm:make_harmless_judge",
        ("gpt4-vlsafe", "llm-binary-strict"),
        "harm judge: VLSafe/ECSO harmless-rate prompt (llm_binary_strict) on an OpenAI-compatible endpoint",
    ),
    "gpt-siuo": (
        "harness.judges.llm:make_siuo_judge",
        ("gpt4-siuo",),
        "harm judge: SIUO's GPT-4V safety prompt (image attached) on an OpenAI-compatible endpoint",
    ),
    "gpt-mossbench": (
        "harness.judges.llm:make_mossbench_judge",
        ("gpt4-mossbench",),
        "refusal judge: MOSSBench's GPT-4-turbo refusal-score prompt (image attached) on an OpenAI-compatible endpoint",
    ),
}


def register_judges(registry: "Registry[Any]") -> None:
    for name, (target, aliases, help_text) in JUDGES.items():
        registry.register(name, target, aliases=aliases, help=help_text)
