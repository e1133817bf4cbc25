"""One adapter over the Hugging Face VLM classes the harness supports.

Families: LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``), LLaVA-1.5
(``LlavaForConditionalGeneration``), Qwen2-VL (``Qwen2VLForConditionalGeneration``) and Chameleon
(``ChameleonForConditionalGeneration``). The first three keep the text decoder at
``model.model.language_model`` (transformers 5.x); Chameleon, an early-fusion model whose images are
tokens of the same decoder, keeps its layers and final norm on ``model.model`` itself.
:data:`DECODER_PATHS` names where each family's decoder sits, and the steering properties
(``language_model``, ``decoder_layers``, ``final_norm``, ``lm_head``) resolve through it, so defenses
never special-case a family. Decoding is greedy with left padding, so a request's output does not depend
on its batch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import LogitsProcessor, LogitsProcessorList

from harness.core.images import load_rgb
from harness.core.records import ModelOutput, Request

if TYPE_CHECKING:
    from harness.models.spec import ModelSpec

# config.model_type -> family name used in ModelSpec
FAMILY_OF_MODEL_TYPE = {"llava_onevision": "llava-onevision", "llava": "llava", "qwen2_vl": "qwen2-vl",
                        "chameleon": "chameleon"}
# family -> attribute path from the *ForConditionalGeneration model to its text decoder (the module that
# holds embed_tokens, layers and norm, and runs once per forward pass)
DECODER_PATHS = {"llava-onevision": "model.language_model", "llava": "model.language_model",
                 "qwen2-vl": "model.language_model", "chameleon": "model"}


class _FirstTokenClock(LogitsProcessor):
    """Records when the first decoding step's logits exist: the end of prefill (time to first token)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.first_step_at: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.first_step_at is None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # kernels run async: wait for the prefill to finish
            self.first_step_at = time.perf_counter()
        return scores


class VLMAdapter:
    """A loaded vision-language model: greedy generation, encoding, and handles for activation hooks."""

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        spec: "ModelSpec",
        device: str | torch.device,
        dtype: str | torch.dtype,
    ):
        self.model = model.eval()
        self.processor = processor
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        model_type = model.config.model_type
        if model_type not in FAMILY_OF_MODEL_TYPE:
            raise ValueError(
                f"unsupported model type {model_type!r}; supported: {', '.join(sorted(FAMILY_OF_MODEL_TYPE))}"
            )
        self.family = FAMILY_OF_MODEL_TYPE[model_type]
        # Left padding: every row's last prompt token sits at the same position, where generation starts.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # ----------------------------------------------------------------------------------------- handles
    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def language_model(self) -> nn.Module:
        """The text decoder (embeddings, decoder layers, final norm; no LM head)."""
        module = self.model
        for name in DECODER_PATHS[self.family].split("."):
            module = getattr(module, name)
        return module

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.language_model.layers

    @property
    def final_norm(self) -> nn.Module:
        return self.language_model.norm

    @property
    def lm_head(self) -> nn.Module:
        return self.model.lm_head

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    # ---------------------------------------------------------------------------------------- encoding
    @property
    def default_system(self) -> str | None:
        """The system prompt the model's official template uses when a request has none (LLaVA-1.5's
        llava_v1 line, see harness.models.catalog); None for most models."""
        return self.spec.options.get("default_system")

    def chat_messages(self, request: Request, *, image_after_text: bool = False,
                      assistant: str | None = None) -> list[dict[str, Any]]:
        """The request as chat-template messages: the system prompt (the request's, else the model's
        default), the user turn (image before the text unless ``image_after_text``) and, given
        ``assistant``, a finished assistant turn."""
        messages: list[dict[str, Any]] = []
        system = request.system or self.default_system
        if system:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        text = [{"type": "text", "text": request.prompt}]
        image = [{"type": "image"}] if request.image else []
        messages.append({"role": "user", "content": text + image if image_after_text else image + text})
        if assistant is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": assistant}]})
        return messages

    def prompt_text(self, request: Request) -> str:
        """The request rendered with the model's chat template, generation prompt included."""
        return self.processor.apply_chat_template(self.chat_messages(request), add_generation_prompt=True, tokenize=False)

    def encode(self, requests: list[Request]) -> dict[str, torch.Tensor]:
        """The model inputs ``generate`` uses for these requests, on the model's device and dtype."""
        if not requests:
            raise ValueError("encode() needs at least one request")
        return self.encode_texts([self.prompt_text(request) for request in requests], [request.image for request in requests])

    def encode_texts(self, texts: list[str], images: list[str | None]) -> dict[str, torch.Tensor]:
        """Model inputs for already-rendered prompt texts (left padded, on the model's device and dtype)."""
        kwargs: dict[str, Any] = {"text": list(texts), "padding": True, "return_tensors": "pt"}
        loaded = [load_rgb(image) for image in images if image]
        if loaded:
            kwargs["images"] = loaded
        batch = self.processor(**kwargs)
        return {
            name: value.to(self.device, dtype=self.dtype if value.is_floating_point() else None)
            for name, value in batch.items()
            if isinstance(value, torch.Tensor)
        }

    # -------------------------------------------------------------------------------------- generation
    def generate(self, requests: list[Request], max_new_tokens: int | None = None) -> list[ModelOutput]:
        """Greedy answers for one batch, in request order (requests with and without images may mix).

        ``max_new_tokens`` overrides each request's ``settings.max_new_tokens``. Prefill and decode times
        are the batch's (every output of a batch carries the same split).
        """
        if not requests:
            return []
        limits = [max_new_tokens or request.settings.max_new_tokens for request in requests]
        clock = _FirstTokenClock(self.device)
        with torch.inference_mode():
            started = time.perf_counter()  # time to first token includes image loading and preprocessing
            inputs = self.encode(requests)
            sequences = self.model.generate(
                **inputs,
                max_new_tokens=max(limits),  # shorter limits are cut below: greedy prefixes are identical
                do_sample=False,
                num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=LogitsProcessorList([clock]),
            )
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            finished = time.perf_counter()
        first_step_at = clock.first_step_at if clock.first_step_at is not None else finished
        prefill_s = first_step_at - started
        decode_s = finished - first_step_at
        prompt_length = inputs["input_ids"].shape[1]
        input_counts = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        for row, limit, input_count in zip(sequences, limits, input_counts):
            new_tokens = row[prompt_length:][:limit].tolist()
            count = self._count_until_eos(new_tokens)
            text = self.tokenizer.decode(new_tokens[:count], skip_special_tokens=True).strip()
            results.append(
                ModelOutput(
                    text=text,
                    input_tokens=int(input_count),
                    output_tokens=count,
                    prefill_s=prefill_s,
                    decode_s=decode_s,
                    batch_size=len(requests),
                )
            )
        return results

    def _count_until_eos(self, tokens: list[int]) -> int:
        """Generated tokens up to and including the first EOS (what follows it is padding)."""
        eos_token_ids = self.eos_token_ids
        for position, token in enumerate(tokens):
            if token in eos_token_ids:
                return position + 1
        return len(tokens)

    @property
    def eos_token_ids(self) -> set[int]:
        """The ids that end generation (read live: a caller may change the generation config)."""
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        if configured is None:
            configured = self.tokenizer.eos_token_id
        if configured is None:
            return set()
        return set(configured) if isinstance(configured, (list, tuple)) else {int(configured)}

    def __repr__(self) -> str:
        return (
            f"VLMAdapter({self.spec.name!r}, family={self.family!r}, device={self.device}, "
            f"dtype={str(self.dtype).removeprefix('torch.')}, layers={self.num_layers})"
        )
