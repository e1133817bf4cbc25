"""ModelSpec: what a registered model is, as data. Loading happens in ``builder`` (a lazy reference)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from harness.core.records import UnknownKeyError
from harness.core.registry import LazyRef

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter

FAMILIES = ("llava-onevision", "llava", "qwen2-vl", "chameleon")
# Family of an ad-hoc model: read from its config.json ``model_type`` when it is loaded.
AUTO_FAMILY = "auto"
# config.json ``model_type`` -> family
MODEL_TYPE_FAMILIES = {"llava_onevision": "llava-onevision", "llava": "llava", "qwen2_vl": "qwen2-vl",
                       "chameleon": "chameleon"}
DTYPES = ("float32", "bfloat16", "float16")
# Command-line help for --dtype / --device (harness eval and harness calibrate).
DTYPE_HELP = ("auto (default): the model's registered dtype: float32 for smol-llava, the tiny fixtures, "
              "llava-ov (0.5B) and unregistered ids; bfloat16 for the 2B/7B hub models (Chameleon included)")
DEVICE_HELP = ("auto (default: the first GPU if there is one, else the CPU), cpu, cuda, cuda:1, or shard: one model "
               "spread over the visible GPUs (device_map=auto; under a multi-process launch, over this rank's "
               "share of its node's GPUs)")
SHARD_DEVICE = "shard"


@dataclass(frozen=True)
class ModelSpec:
    """A model the harness can load.

    ``builder`` is a :class:`LazyRef` to a function called as ``builder(spec, dtype=..., device=...)``
    and returning a :class:`harness.defense_api.adapter.VLMAdapter`. ``fingerprinter`` (same form)
    returns a JSON-able dict that identifies the weights *without loading them*, for the generation
    cache key. Either may be given as its ``"module:function"`` string, which is how
    :meth:`to_dict` writes it.
    """

    name: str
    family: str  # one of FAMILIES, or "auto" (ad-hoc: read config.json)
    source: str  # Hugging Face id or local directory
    builder: LazyRef[Callable[..., "VLMAdapter"]]
    fingerprinter: LazyRef[Callable[..., dict[str, Any]]]
    revision: str | None = None
    default_dtype: str = "float32"
    options: dict[str, Any] = field(default_factory=dict)
    help: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "builder", LazyRef.of(self.builder))
        object.__setattr__(self, "fingerprinter", LazyRef.of(self.fingerprinter))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with the references as their ``"module:function"`` strings."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**data, "builder": str(self.builder), "fingerprinter": str(self.fingerprinter),
                "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """The inverse of :meth:`to_dict`; an unknown key is an error (there is no stored old form)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UnknownKeyError(f"model spec: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)


def resolve_dtype(spec: ModelSpec, dtype: str | None = "auto") -> str:
    """The dtype name a load with ``dtype`` uses: "auto" (or None) means the spec's default.

    Loaders and fingerprinters both call this, so the cache key names the dtype actually loaded.
    """
    name = spec.default_dtype if dtype in (None, "auto") else str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
    return name
