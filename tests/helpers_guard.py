"""Tiny random Llama Guard 3 checkpoints (text: Llama; vision: Mllama) with the official chat templates.

Built in-process from configs and a BPE tokenizer trained on a fixed corpus (as harness.models.tiny does),
seeded, and saved to a folder that the real ``from_pretrained`` path loads (``model_id=<folder>``).
Nothing is downloaded; the replies are noise. Used by the judge and the guard-defense tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.defense_api.llama_guard import LLAMA_GUARD_3_CHAT_TEMPLATE, LLAMA_GUARD_3_VISION_CHAT_TEMPLATE


def tokenizer(specials: list[str], template: str, **named: Any) -> Any:
    from harness.models.tiny import train_tokenizer

    return train_tokenizer(specials, template, **named)


def llama(tok: Any) -> Any:
    import transformers as tf

    from harness.models.tiny import _text_sizes

    config = tf.LlamaConfig(tie_word_embeddings=False, **_text_sizes(tok))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return tf.LlamaForCausalLM(config)


def save_llama_guard_3(folder: Path) -> Path:
    """Llama-3-style specials, the official Llama Guard 3 8B chat template, no pad token."""
    tok = tokenizer(
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        LLAMA_GUARD_3_CHAT_TEMPLATE,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
    )
    llama(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_llama_guard_3_vision(folder: Path) -> Path:
    """A tiny Mllama (32 px, one tile) with the official Llama Guard 3 Vision chat template."""
    import transformers as tf

    tok = tokenizer(
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
         "<|image|>", "<|finetune_right_pad_id|>", "<|python_tag|>"],
        LLAMA_GUARD_3_VISION_CHAT_TEMPLATE,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        extra_special_tokens={"image_token": "<|image|>"},
    )
    text = tf.MllamaTextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, cross_attention_layers=[1], max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, initializer_range=0.2, tie_word_embeddings=False,
    )
    vision = tf.MllamaVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2, intermediate_size=64,
        vision_output_dim=64, image_size=32, patch_size=8, max_num_tiles=1, intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1]],
    )
    config = tf.MllamaConfig(vision_config=vision, text_config=text,
                             image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tf.MllamaForConditionalGeneration(config)
    processor = tf.MllamaProcessor(
        image_processor=tf.MllamaImageProcessor(size={"height": 32, "width": 32}, max_image_tiles=1),
        tokenizer=tok,
        chat_template=LLAMA_GUARD_3_VISION_CHAT_TEMPLATE,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def scripted_replies(classifier: Any, monkeypatch: Any, replies: list[str]) -> list[dict[str, Any]]:
    """Replace a loaded classifier's ``model.generate``: record its inputs, answer with hand-written replies
    (as token ids after the prompt, padded with EOS, which decoding skips)."""
    classifier.ensure_loaded()
    calls: list[dict[str, Any]] = []
    queue = list(replies)
    tok = classifier.tokenizer

    def fake_generate(input_ids, attention_mask=None, **kwargs):
        calls.append({"input_ids": input_ids, "attention_mask": attention_mask, **kwargs})
        answers = [queue.pop(0) for _ in range(input_ids.shape[0])]
        encoded = [tok.encode(answer, add_special_tokens=False) for answer in answers]
        width = max(len(ids) for ids in encoded)
        rows = [ids + [tok.eos_token_id] * (width - len(ids)) for ids in encoded]
        return torch.cat([input_ids, torch.tensor(rows, dtype=input_ids.dtype)], dim=1)

    monkeypatch.setattr(classifier.model, "generate", fake_generate)
    return calls


def prompts_seen(classifier: Any, call: dict[str, Any]) -> list[str]:
    """The exact text of each row the model received (padding removed, special tokens kept)."""
    texts = []
    for ids, mask in zip(call["input_ids"], call["attention_mask"]):
        texts.append(classifier.tokenizer.decode(ids[mask.bool()], skip_special_tokens=False,
                                                 clean_up_tokenization_spaces=False))
    return texts
