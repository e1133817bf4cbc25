"""The defense contract.

A defense sees the model: it may transform the request (prompt, system prompt, image), hook
activations around generation (context managers that always remove their hooks), and/or filter or
re-generate the output. The runner only ever calls :meth:`Defense.generate`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import ModelOutput, Request


class Defense:
    """Base class: the undefended pass-through. Subclasses override what they change."""

    # The defense's one name (also its fingerprint's "name", so part of every cache key), with its
    # aliases and the line ``harness list defenses`` prints. Subclasses in ``defenses/`` set these as
    # literals: the registry reads them without importing the module (harness.core.discovery).
    name: ClassVar[str] = "none"
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    default_params: ClassVar[dict[str, Any]] = {}
    # Fixed prompts and settings that shape the output but are not parameters: their sha256 is part of
    # the cache key, so that editing one can never reuse generations made with the old one.
    constants: ClassVar[tuple[Any, ...]] = ()
    # Bump when a code change alters what the defense generates for the same inputs and settings: the
    # number enters the cache key (from 2 on, so that version-1 keys stay as they were).
    version: ClassVar[int] = 1

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.default_params)
        if unknown:
            raise ValueError(
                f"defense {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"known: {sorted(self.default_params) or 'none'}"
            )
        self.params: dict[str, Any] = {**self.default_params, **params}

    def prepare(self, model_name: str, model_fingerprint: dict[str, Any]) -> None:
        """Called by the runner before :meth:`fingerprint`, without loading the model: locate the
        calibration artifacts fitted for this model (raise with the command that makes them when
        they are missing). Prompt defenses need nothing."""

    def artifact_hashes(self) -> dict[str, str]:
        """sha256 of every calibration artifact the defense loads (none for prompt defenses)."""
        return {}

    def fingerprint(self) -> dict[str, Any]:
        """Everything about the defense that changes model output: part of the cache key."""
        fingerprint = {"name": self.name, "params": self.params, "artifacts": self.artifact_hashes()}
        if self.constants:
            joined = "\0".join(str(value) for value in self.constants)
            fingerprint["constants_sha256"] = hashlib.sha256(joined.encode("utf-8")).hexdigest()
        if self.version != 1:
            fingerprint["version"] = self.version
        return fingerprint

    def transform(self, request: "Request") -> "Request":
        return request

    def generate(self, adapter: "VLMAdapter", requests: list["Request"]) -> list["ModelOutput"]:
        return adapter.generate([self.transform(request) for request in requests])


def with_fields(request: "Request", **changes: Any) -> "Request":
    """A copy of a request with some fields replaced (requests are never mutated in place)."""
    return dataclasses.replace(request, **changes)
