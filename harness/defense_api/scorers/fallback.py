"""The detoxifier used when there is none: a fixed reply for every flagged response."""

from __future__ import annotations

from typing import Any, Sequence

# MLLM-Protector llava/eval/robustness_eval.py: what a flagged response becomes without a detoxifier.
PROTECTOR_FALLBACK_REPLY = "Sorry, but I can't help you with your request."


class FixedReply:
    name = "none"

    def __init__(self, reply: str = PROTECTOR_FALLBACK_REPLY):
        self.reply = reply

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "reply": self.reply}

    def check_available(self) -> None:
        """Needs nothing."""

    def rewrite(self, adapter: Any, texts: Sequence[str]) -> list[str]:
        return [self.reply for _ in texts]
