"""Tiny random-init VLMs built in-process: test fixtures for every supported family, no Hub files.

Each fixture is built from configs, a BPE tokenizer trained here on a fixed corpus, and processors
assembled from components; it is saved under ``cache_dir()/tiny/<name>/<version>`` and then loaded back
through :func:`harness.models.hf.load_pretrained`, so tests exercise the real loading path. Weights are
seeded, so every build of a version is identical. Outputs are noise: these models test plumbing only.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness.models.spec import ModelSpec, resolve_dtype
from harness.core.paths import cache_dir

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter

# Bump whenever the construction below changes: it names the build folder and enters the fingerprint.
TINY_VERSION = 1
SEED = 0
TEXT_HIDDEN = 64
TEXT_LAYERS = 3
VOCAB_SIZE = 384  # BPE vocabulary including special tokens
# Wider than the usual 0.02 so that random logits are far apart: greedy choices then do not flip on
# float rounding between batch shapes, which the batched == unbatched tests rely on.
INIT_RANGE = 0.2

# A fixed corpus for the tokenizer: enough English and prompt-like text for sensible merges.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is shown in this image? Describe the picture in detail.",
    "How do I bake bread at home? Mix flour, water, salt and yeast, then knead the dough.",
    "I cannot help with that request because it could cause harm.",
    "Sure, here is a short answer to your question about the weather today.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Answer the question using a single word or phrase. Yes or no?",
    "A red circle, a blue square and a green triangle are drawn on a white background.",
    "You are a helpful assistant. Please answer safely and honestly.",
    "Count the objects: one, two, three, four, five, six, seven, eight, nine, ten.",
    "system user assistant image video text prompt question answer refuse comply",
    "0123456789 + - * / = ( ) [ ] { } < > ! ? . , ; : ' \" @ # $ % & _",
]


# ------------------------------------------------------------------------------------------ tokenizer
def train_tokenizer(special_tokens: list[str], chat_template: str, **named_tokens: Any) -> Any:
    """A byte-level BPE tokenizer trained on CORPUS, with ``special_tokens`` at ids 0..n-1.

    ``named_tokens`` are PreTrainedTokenizerFast keywords (``eos_token``, ``pad_token``, ...); the
    ``extra_special_tokens`` mapping makes attributes such as ``tokenizer.image_token`` that the
    processors look up.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown tokens
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=chat_template, **named_tokens)
    return tokenizer


def _content_template(image_placeholder: str) -> str:
    """Jinja that renders a message's content: a string, or parts where images become the placeholder."""
    return (
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{ '" + image_placeholder + "' }}"
        "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
    )


def chatml_template(image_placeholder: str) -> str:
    """ChatML (Qwen2 / LLaVA-OneVision style)."""
    return (
        "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        + _content_template(image_placeholder)
        + "{{ '<|im_end|>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
    )


def vicuna_template() -> str:
    """LLaVA-1.5 style: ``<s>system USER: <image>\\nprompt ASSISTANT:``."""
    return (
        "{{ bos_token }}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}" + _content_template("") + "{{ ' ' }}"
        "{%- elif message['role'] == 'user' -%}{{ 'USER: ' }}" + _content_template("<image>\\n") + "{{ ' ' }}"
        "{%- else -%}{{ 'ASSISTANT: ' }}" + _content_template("") + "{{ eos_token }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
    )


# ------------------------------------------------------------------------------------------- fixtures
def _finish(model: Any, tokenizer: Any, suppressed: list[str]) -> None:
    """Generation defaults: stop at EOS; never emit vision placeholders (they would confuse decoding)."""
    config = model.generation_config
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    config.suppress_tokens = tokenizer.convert_tokens_to_ids(suppressed)


def _text_sizes(tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 2 * TEXT_HIDDEN,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "initializer_range": INIT_RANGE,
    }


def _vision_sizes() -> dict[str, Any]:
    return {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def construct_llava_onevision() -> tuple[Any, Any]:
    """SigLIP (32 px, 8 px patches: 16 tokens per tile) + Qwen2, anyres tiling up to 2x2 tiles."""
    import transformers as tf

    tokenizer = train_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
        chatml_template("<image>\\n"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    tile, pinpoints = 32, [[32, 32], [32, 64], [64, 32], [64, 64]]
    config = tf.LlavaOnevisionConfig(
        vision_config=tf.SiglipVisionConfig(image_size=tile, patch_size=8, vision_use_head=False, **_vision_sizes()),
        text_config=tf.Qwen2Config(tie_word_embeddings=False, **_text_sizes(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    model = tf.LlavaOnevisionForConditionalGeneration(config)
    processor = tf.LlavaOnevisionProcessor(
        image_processor=tf.LlavaOnevisionImageProcessor(
            size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints
        ),
        tokenizer=tokenizer,
        video_processor=tf.LlavaOnevisionVideoProcessor(size={"height": tile, "width": tile}),
        num_image_tokens=(tile // 8) ** 2,
        vision_feature_select_strategy="full",
        chat_template=tokenizer.chat_template,
    )
    _finish(model, tokenizer, ["<image>", "<video>"])
    return model, processor


def construct_llava() -> tuple[Any, Any]:
    """LLaVA-1.5 shape: CLIP (32 px, 8 px patches + CLS, CLS dropped: 16 tokens) + Llama, Vicuna prompt."""
    import transformers as tf

    tokenizer = train_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        vicuna_template(),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    tile, patch = 32, 8
    config = tf.LlavaConfig(
        vision_config=tf.CLIPVisionConfig(image_size=tile, patch_size=patch, projection_dim=32, **_vision_sizes()),
        text_config=tf.LlamaConfig(tie_word_embeddings=False, **_text_sizes(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = tf.LlavaForConditionalGeneration(config)
    processor = tf.LlavaProcessor(
        image_processor=tf.CLIPImageProcessor(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile}),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=tokenizer.chat_template,
    )
    _finish(model, tokenizer, ["<image>"])
    return model, processor


def construct_qwen2_vl() -> tuple[Any, Any]:
    """Qwen2-VL: 14 px patches merged 2x2, images resized to 56-112 px (4-16 tokens), M-RoPE."""
    import transformers as tf

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
    tokenizer = train_tokenizer(
        specials,
        chatml_template("<|vision_start|><|image_pad|><|vision_end|>"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    text_sizes = _text_sizes(tokenizer)
    head_dim = TEXT_HIDDEN // text_sizes["num_attention_heads"]
    third = head_dim // 2 // 3
    mrope_section = [head_dim // 2 - 2 * third, third, third]  # temporal, height, width: sums to head_dim / 2
    config = tf.Qwen2VLConfig(
        vision_config=tf.Qwen2VLVisionConfig(
            depth=2, embed_dim=32, hidden_size=TEXT_HIDDEN, num_heads=2, mlp_ratio=2, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2,
        ),
        text_config=tf.Qwen2VLTextConfig(
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
            **text_sizes,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    model = tf.Qwen2VLForConditionalGeneration(config)
    pixels = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
    processor = tf.Qwen2VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(size=pixels),
        tokenizer=tokenizer,
        video_processor=tf.Qwen2VLVideoProcessor(size=pixels),
        chat_template=tokenizer.chat_template,
    )
    _finish(model, tokenizer, ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"])
    return model, processor


CHAMELEON_CODES = 16  # VQ codebook size: one image-token in the vocabulary per code


def chameleon_image_token(code: int) -> str:
    """Chameleon's BPE name of VQ code ``code``: "IMGIMG" + its digits written as letters A-J + "Z"
    (what ``ChameleonImageVocabularyMapping`` decodes)."""
    return "IMGIMG" + "".join(chr(ord("A") + int(digit)) for digit in str(code)) + "Z"


def construct_chameleon() -> tuple[Any, Any]:
    """Chameleon: a VQ-VAE (16 px, two 2x downsamplings: 4x4 = 16 codes per image) whose codes are
    tokens of the same decoder; Llama-style tokenizer that adds <s>; AutoSteer's prompt format."""
    import transformers as tf
    from tokenizers import processors

    from harness.models.chameleon import CHAT_TEMPLATE, apply_prompt_format

    image_tokens = [chameleon_image_token(code) for code in range(CHAMELEON_CODES)]
    tokenizer = train_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<racm3:break>", "<eoss>", "<reserved08706>", *image_tokens],
        CHAT_TEMPLATE,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        sep_token="<reserved08706>",
        extra_special_tokens={"image_token": "<image>", "boi_token": "<racm3:break>", "eoi_token": "<eoss>"},
    )
    # as Chameleon's Llama tokenizer (add_bos_token): <s> before every encoded text
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.bos_token_id)]
    )
    tile = 16
    vq_config = tf.ChameleonVQVAEConfig(
        embed_dim=8, num_embeddings=CHAMELEON_CODES, latent_channels=8, resolution=tile, base_channels=32,
        channel_multiplier=[1, 1, 1], num_res_blocks=1,
    )
    config = tf.ChameleonConfig(vq_config=vq_config.to_dict(), vocabulary_map=tokenizer.get_vocab(),
                                **_text_sizes(tokenizer))
    model = tf.ChameleonForConditionalGeneration(config)
    processor = tf.ChameleonProcessor(
        image_processor=tf.ChameleonImageProcessor(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile}),
        tokenizer=tokenizer,
        image_seq_length=(tile // 4) ** 2,
    )
    _finish(model, tokenizer, ["<image>", "<eoss>", "<reserved08706>"])
    apply_prompt_format(model, processor)  # as every load does: saved with the format it is used with
    return model, processor


CONSTRUCTORS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "tiny-random-llava-ov": construct_llava_onevision,
    "tiny-random-llava": construct_llava,
    "tiny-random-qwen2-vl": construct_qwen2_vl,
    "tiny-random-chameleon": construct_chameleon,
}


def construct(name: str) -> tuple[Any, Any]:
    """A fresh (model, processor) for a fixture, seeded: the same weights on every call."""
    import torch

    if name not in CONSTRUCTORS:
        raise KeyError(f"unknown tiny fixture {name!r}; known: {', '.join(CONSTRUCTORS)}")
    with torch.random.fork_rng(devices=[]):  # seed locally: leave the caller's RNG state alone
        torch.manual_seed(SEED)
        return CONSTRUCTORS[name]()


def fixture_dir(name: str) -> Path:
    return cache_dir() / "tiny" / name / str(TINY_VERSION)


def saved_fixture(name: str) -> Path:
    """The fixture's folder under the current ``cache_dir()``, built and saved once per version."""
    return _saved_fixture(name, fixture_dir(name))


@functools.cache  # once per process and folder; the folder itself is reused across processes
def _saved_fixture(name: str, final: Path) -> Path:
    if (final / "config.json").is_file():
        return final
    model, processor = construct(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    try:
        staging.rename(final)  # atomic: readers never see a half-written folder
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process finished first
        if not (final / "config.json").is_file():
            raise
    return final


def _fixture_name(spec: ModelSpec) -> str:
    return spec.options.get("fixture", spec.name)


def build_tiny(spec: ModelSpec, dtype: str = "auto", device: str = "auto") -> "VLMAdapter":
    """Builder: save the fixture if needed, then load it with the real ``from_pretrained`` path."""
    from harness.models.hf import load_pretrained

    return load_pretrained(spec, dtype, device, source=saved_fixture(_fixture_name(spec)))


def fingerprint_tiny(spec: ModelSpec, dtype: str = "auto") -> dict[str, Any]:
    from harness.models.hf import prompt_format_fingerprint

    return {"builder": _fixture_name(spec), "version": TINY_VERSION, "seed": SEED, "dtype": resolve_dtype(spec, dtype),
            **prompt_format_fingerprint(spec.family)}
