"""LLaVA-1.5's llava_v1 system line: registered and ad-hoc llava-1.5 checkpoints get it, it is rendered into
every prompt without a system prompt, and it is part of the model's cache-key fingerprint."""

from __future__ import annotations

import dataclasses

import pytest

from harness import registries
from harness.defense_api.adapter import VLMAdapter
from harness.defense_api.steering import render_messages, text_request
from harness.models.catalog import LLAVA_V1_SYSTEM, resolve_model
from harness.pipeline.bringup import model_fingerprint_of

# haotian-liu/LLaVA llava/conversation.py, conv_llava_v1.system (RAS, ECSO and ETA use conv_mode llava_v1)
OFFICIAL_LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions."
)


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def test_llava15_models_carry_the_official_system_line_and_others_do_not():
    assert LLAVA_V1_SYSTEM == OFFICIAL_LLAVA_V1_SYSTEM
    models = registries.models()
    assert resolve_model(models, "llava-1.5-7b").options == {"default_system": OFFICIAL_LLAVA_V1_SYSTEM}
    assert resolve_model(models, "llava-hf/llava-1.5-13b-hf").options == {"default_system": OFFICIAL_LLAVA_V1_SYSTEM}
    for other in ("llava-ov", "qwen2-vl-2b", "smol-llava", "tiny-random-llava", "llava-hf/llava-v1.6-mistral-7b-hf"):
        assert "default_system" not in resolve_model(models, other).options, other


def test_the_system_line_enters_the_model_fingerprint_only_where_it_is_used():
    models = registries.models()
    llava15 = model_fingerprint_of(resolve_model(models, "llava-1.5-7b"), "bfloat16", "cpu")
    assert llava15["default_system"] == OFFICIAL_LLAVA_V1_SYSTEM
    without = dataclasses.replace(resolve_model(models, "llava-1.5-7b"), options={})
    assert {k: v for k, v in llava15.items() if k != "default_system"} == model_fingerprint_of(without, "bfloat16", "cpu")
    tiny = model_fingerprint_of(resolve_model(models, "tiny-random-llava"), "float32", "cpu")
    assert "default_system" not in tiny


@pytest.fixture(scope="module")
def tiny_llava15():
    """tiny-random-llava (a LLaVA-1.5-style template) loaded under a spec that has the system line."""
    spec = resolve_model(registries.models(), "tiny-random-llava")
    plain = spec.builder.load()(spec, dtype="float32", device="cpu")
    with_system = dataclasses.replace(spec, options={**spec.options, "default_system": LLAVA_V1_SYSTEM})
    return plain, VLMAdapter(plain.model, plain.processor, with_system, "cpu", "float32")


def test_prompts_without_a_system_prompt_get_the_llava_v1_line(tiny_llava15, tmp_path):
    from PIL import Image

    plain, adapter = tiny_llava15
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    bos = adapter.tokenizer.bos_token
    request = text_request("What is this?", image=str(image))
    # conv_llava_v1.get_prompt(): system + " " + "USER: <image>\n" + prompt + " " + "ASSISTANT:"
    assert adapter.prompt_text(request) == bos + OFFICIAL_LLAVA_V1_SYSTEM + " USER: <image>\nWhat is this? ASSISTANT:"
    assert plain.prompt_text(request) == bos + "USER: <image>\nWhat is this? ASSISTANT:"
    # a defense's own system prompt replaces the line, as setting conv.system does in LLaVA's code
    own = text_request("What is this?", system="Be safe.")
    assert adapter.prompt_text(own) == bos + "Be safe. USER: What is this? ASSISTANT:"
    # the steering helpers render through the same rule
    assert render_messages(adapter, request, add_generation_prompt=True) == adapter.prompt_text(request)
    assert adapter.encode([request])["input_ids"].shape[1] > plain.encode([request])["input_ids"].shape[1]
