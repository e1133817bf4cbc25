"""Judge registry: name -> lazy ``"module:factory"`` target.

``registries.judges().get(name)`` returns the factory; call it with no arguments to get a judge, an
object with ``name``, ``fingerprint() -> dict`` and ``judge(sample, generation) -> Judgement``.
This module imports nothing but typing, so listing judges stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from harness.records import Generation, Judgement, Sample
    from harness.registry import Registry


class Judge(Protocol):
    """What the runner needs from a judge."""

    name: str

    def fingerprint(self) -> dict[str, Any]: ...

    def judge(self, sample: "Sample", generation: "Generation") -> "Judgement": ...


def register_judges(registry: "Registry[Any]") -> None:
    registry.register(
        "keyword-gcg",
        "harness.judges.keyword:make_gcg_judge",
        aliases=("keyword_gcg",),
        help="GCG/llm-attacks _test_prefixes (29 strings), case-sensitive substring",
    )
    registry.register(
        "keyword-eta",
        "harness.judges.keyword:make_eta_judge",
        aliases=("keyword_eta",),
        help='ETA eval_asr.py list on the lower-cased response, plus the exact answer "it is not" '
        '(as in the original, "but I cannot" never matches)',
    )
    registry.register(
        "keyword-adashield",
        "harness.judges.keyword:make_adashield_judge",
        aliases=("keyword_adashield",),
        help="AdaShield eval_key_word.py list, case-sensitive substring",
    )
    registry.register(
        "keyword-jbb",
        "harness.judges.keyword:make_jbb_judge",
        aliases=("keyword_jbb",),
        help="JailbreakBench string-classifier prefixes, case-sensitive substring",
    )
