"""ModelSpec: what a registered model is, as data. Loading happens in ``builder`` (lazy target)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("llava-onevision", "llava", "qwen2-vl")
# Family of an ad-hoc model: read from its config.json ``model_type`` when it is loaded.
AUTO_FAMILY = "auto"
# config.json ``model_type`` -> family
MODEL_TYPE_FAMILIES = {"llava_onevision": "llava-onevision", "llava": "llava", "qwen2_vl": "qwen2-vl"}
DTYPES = ("float32", "bfloat16", "float16")
# Command-line help for --dtype / --device (harness eval and harness calibrate).
DTYPE_HELP = ("auto (default): the model's registered dtype: float32 for smol-llava, the tiny fixtures, "
              "llava-ov (0.5B) and unregistered ids; bfloat16 for the 2B/7B hub models")
DEVICE_HELP = "auto (default: the first GPU if there is one, else the CPU), cpu, cuda, cuda:1"


@dataclass(frozen=True)
class ModelSpec:
    """A model the harness can load.

    ``builder`` is a lazy ``"module:function"`` called as ``builder(spec, dtype=..., device=...)`` and
    returning a :class:`harness.defense_api.adapter.VLMAdapter`. ``fingerprinter`` (same form) returns a
    JSON-able dict that identifies the weights *without loading them*, for the generation cache key.
    """

    name: str
    family: str  # "llava-onevision" | "llava" | "qwen2-vl" | "auto" (ad-hoc: read config.json)
    source: str  # Hugging Face id or local directory
    builder: str
    fingerprinter: str
    revision: str | None = None
    default_dtype: str = "float32"
    options: dict[str, Any] = field(default_factory=dict)
    help: str = ""

    def load_builder(self) -> Any:
        """The builder function (imported on first use)."""
        from harness.core.registry import import_target

        return import_target(self.builder)

    def load_fingerprinter(self) -> Any:
        """The fingerprint function (imported on first use)."""
        from harness.core.registry import import_target

        return import_target(self.fingerprinter)


def resolve_dtype(spec: ModelSpec, dtype: str | None = "auto") -> str:
    """The dtype name a load with ``dtype`` uses: "auto" (or None) means the spec's default.

    Loaders and fingerprinters both call this, so the cache key names the dtype actually loaded.
    """
    name = spec.default_dtype if dtype in (None, "auto") else str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
    return name
