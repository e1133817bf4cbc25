"""Local classifier checkpoints (Llama Guard 3 8B and 11B Vision, the HarmBench classifier, MD-Judge): the
one loader that the harm judges (``harness.judges.classifiers``) and the guard defense
(``defenses/llama_guard_filter.py``) share.

A checkpoint is a Hub id or a local folder, loaded lazily on first use with ``from_pretrained(model_id,
revision=..., dtype=..., device_map=..., trust_remote_code=False)`` (``dtype`` is transformers 5's name for
``torch_dtype``). ``dtype="auto"`` means bfloat16 on CUDA and float32 on the CPU. :meth:`replies` renders
nothing itself: it tokenizes the prompts it is given in batches with left padding, decodes greedily
(``do_sample=False``) for ``max_new_tokens`` and returns the new tokens' text. A checkpoint is identified
(:meth:`CheckpointClassifier.resolved_revision`) by the Hub commit its revision resolves to (fetched if it
is not cached yet, so that a cache key never holds a branch name) or by the sha256 of a local folder's
weight, config and tokenizer files. A failed load is remembered, so that work item by item after a failed
batch does not retry an 8B load per item.

This module imports neither torch nor transformers at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

UNSAFE_LABEL = "unsafe"
SAFE_LABEL = "safe"
UNDECIDED_LABEL = "undecided"


@dataclass(frozen=True)
class Verdict:
    """A parsed classifier reply: ``unsafe`` None = undecided."""

    unsafe: bool | None
    label: str
    detail: str = ""


def undecided(reply: str) -> Verdict:
    return Verdict(None, UNDECIDED_LABEL, f"unparsed reply: {reply.strip()[:200]!r}")


class CheckpointClassifier:
    """A causal-LM classifier checkpoint: identity, lazy loading and greedy replies to rendered prompts."""

    default_model = ""
    add_special_tokens = True  # whether tokenizing a prompt adds BOS (False when the template writes it)

    def __init__(
        self,
        model_id: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 32,
    ):
        self.model_id = model_id or self.default_model
        self.revision = revision
        self.dtype = dtype
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.max_new_tokens = int(max_new_tokens)
        self.model: Any = None
        self.tokenizer: Any = None

    # ------------------------------------------------------------------------------- identity
    def is_local(self) -> bool:
        return Path(self.model_id).expanduser().is_dir()

    def resolved_revision(self) -> str:
        from harness.core.hub import COMMIT, folder_sha256, hub_commit

        if self.is_local():
            return f"sha256:{folder_sha256(Path(self.model_id).expanduser())}"
        commit = hub_commit(self.model_id, self.revision)
        if not COMMIT.fullmatch(commit):
            # Not in the local cache (or a branch name): fetch what from_pretrained would load anyway, so
            # that a cache key holds the exact commit, never "main".
            from huggingface_hub import snapshot_download

            commit = Path(snapshot_download(self.model_id, revision=self.revision)).name
        return commit

    # -------------------------------------------------------------------------------- loading
    def torch_dtype(self, device: str) -> Any:
        import torch

        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        return torch.bfloat16 if device.startswith("cuda") else torch.float32

    def resolved_device(self) -> str:
        from harness.core.hub import resolve_device

        return resolve_device(self.device)

    def load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = self.from_checkpoint(AutoTokenizer)
        self.model = self.model_from_checkpoint(AutoModelForCausalLM)
        prepare_tokenizer(self.tokenizer)

    def from_checkpoint(self, loader: Any, **kwargs: Any) -> Any:
        """``loader.from_pretrained`` on this checkpoint: its revision (none for a local folder), no remote code."""
        revision = None if self.is_local() else self.revision
        return loader.from_pretrained(self.model_id, revision=revision, trust_remote_code=False, **kwargs)

    def model_from_checkpoint(self, model_class: Any) -> Any:
        """The model, in this classifier's dtype on its device, in eval mode."""
        device = self.resolved_device()
        return self.from_checkpoint(model_class, dtype=self.torch_dtype(device), device_map=device).eval()

    def ensure_loaded(self) -> None:
        """Load once; a failed load (no weights offline, out of memory) is remembered and re-raised."""
        if self.model is not None:
            return
        if getattr(self, "_load_error", None) is not None:
            raise RuntimeError(f"{self!r}: loading {self.model_id} failed earlier: {self._load_error}")
        try:
            self.load()
        except Exception as exc:
            self._load_error = f"{type(exc).__name__}: {exc}"
            raise

    # ------------------------------------------------------------------------------ prompting
    def replies(self, prompts: Sequence[str]) -> list[str]:
        """Greedy continuations of ``prompts``, left-padded in batches, new tokens only."""
        import torch

        out = []
        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start : start + self.batch_size])
            encoded = self.tokenizer(
                batch, return_tensors="pt", padding=True, add_special_tokens=self.add_special_tokens
            ).to(self.model.device)
            with torch.inference_mode():
                output = self.model.generate(
                    **encoded,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            out.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return out


    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r})"


class MllamaClassifier(CheckpointClassifier):
    """A vision classifier (``MllamaForConditionalGeneration`` + ``AutoProcessor``: Llama Guard 3 Vision)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.processor: Any = None

    def load(self) -> None:
        from transformers import AutoProcessor, MllamaForConditionalGeneration

        self.processor = self.from_checkpoint(AutoProcessor)
        self.model = self.model_from_checkpoint(MllamaForConditionalGeneration)
        self.tokenizer = self.processor.tokenizer
        prepare_tokenizer(self.tokenizer)

    def replies_with_images(self, prompts: Sequence[str], images: Sequence[str | None]) -> list[str]:
        """Greedy replies to ``prompts``, row i seeing the image file ``images[i]`` (None: text only)."""
        replies: list[str] = [""] * len(prompts)
        # the processor needs the same number of images in every row: batch image rows and text rows apart
        for with_image in (True, False):
            rows = [i for i, image in enumerate(images) if (image is not None) == with_image]
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                batch_images = [[load_rgb(images[i])] for i in chunk] if with_image else None
                for i, reply in zip(chunk, self.vision_replies([prompts[i] for i in chunk], batch_images)):
                    replies[i] = reply
        return replies

    def vision_replies(self, prompts: list[str], images: list[list[Any]] | None) -> list[str]:
        import torch

        encoded = self.processor(
            text=prompts, images=images, return_tensors="pt", padding=True, add_special_tokens=self.add_special_tokens
        ).to(self.model.device)
        with torch.inference_mode():
            output = self.model.generate(
                **encoded, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
            )
        return self.tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)


def prepare_tokenizer(tokenizer: Any) -> None:
    """Left padding for batched generation; a pad token if the checkpoint has none (Llama 3 and
    Llama 2 ship without one). The pad id only fills masked positions, so the choice does not change
    replies."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token


def load_rgb(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")
