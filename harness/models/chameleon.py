"""The Chameleon family (``ChameleonForConditionalGeneration``: facebook/chameleon-7b, Anole-7b): its prompt format.

AutoSteer (Wu et al., EMNLP 2025) evaluates Chameleon through Anole's inference code (zjunlp/AutoSteer
``source/chameleon_steer_test.py`` and ``steer/SteerChameleon/steer_model_chameleon_inference.py``,
``Eval_Chameleon.process_chameleon_input``): each sample becomes the interleaved list
``[{"type": "text", "value": query}, {"type": "image", "value": "file:..."}]`` and
``TokenManager.tokens_from_ui`` (facebookresearch/chameleon ``chameleon/inference/chameleon.py``) turns it
into ``<s>`` + the query's BPE tokens + ``<racm3:break>`` + 1024 image tokens + ``<eoss>``: the text FIRST,
the image after it, no chat template, no role markers and no end-of-turn separator. The same sequence
feeds the layer scores, the prober and inference. Decoding stops at ``</s>`` or ``<racm3:break>``
(``Options.extra_eos_tokens``: the start of an image, which text generation does not continue).

Here that format is the family's chat template, set on every Chameleon processor when it is loaded (the
tiny fixture and the Hub checkpoints alike, replacing whatever template a checkpoint ships), so that every
defense sees the same prompt: :data:`CHAT_TEMPLATE` renders each message's text parts, then one
``<image>`` per image part (``ChameleonProcessor`` expands it into ``<racm3:break>`` + image tokens +
``<eoss>``), whatever order the parts come in. The tokenizer adds ``<s>`` itself. The processor's
``return_for_text_completion`` default is set to True, so it does not append its chat-mode separator
``<reserved08706>`` (the Hugging Face documentation's chat usage appends it; AutoSteer's code does not).

Not followed: Anole's ``Options()`` default samples (temperature 0.7, top-p 0.9, repetition penalty 1.2);
the harness decodes greedily, as for every family.

Choices the official code does not make (it has no system prompt and no multi-turn input): a system
message is written before the user's text and ends with a newline; an assistant message (AutoSteer's
refusal-head target) follows the user content directly. ``add_generation_prompt`` adds nothing: the
format has no assistant marker.
"""

from __future__ import annotations

import hashlib
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
# <racm3:break> opens an image: Anole's Options.extra_eos_tokens, so text generation stops there.
STOP_TOKENS = ("</s>", "<racm3:break>")
# ChameleonProcessor's own default for this call option is False (append the chat-mode separator).
RETURN_FOR_TEXT_COMPLETION = True

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] if part['type'] == 'text' -%}{{ part['text'] }}{%- endfor -%}"
    "{%- for part in message['content'] if part['type'] == 'image' -%}{{ '" + IMAGE_PLACEHOLDER + "' }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{ '\\n' }}{%- endif -%}"
    "{%- endfor -%}"
)


def prompt_format_sha256() -> str:
    """Everything above that shapes a Chameleon model's output besides its weights: part of its cache key."""
    joined = "\0".join([CHAT_TEMPLATE, *STOP_TOKENS, f"return_for_text_completion={RETURN_FOR_TEXT_COMPLETION}"])
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def apply_prompt_format(model: Any, processor: Any) -> None:
    """Give a loaded Chameleon model and processor the AutoSteer prompt format and stop tokens."""
    if getattr(processor, "image_token", IMAGE_PLACEHOLDER) != IMAGE_PLACEHOLDER:
        raise ValueError(f"Chameleon processor's image token is {processor.image_token!r}; the harness's prompt "
                         f"format writes {IMAGE_PLACEHOLDER!r}")
    processor.chat_template = CHAT_TEMPLATE
    processor.return_for_text_completion = RETURN_FOR_TEXT_COMPLETION  # the default of every call
    tokenizer = processor.tokenizer
    stop_ids = [tokenizer.convert_tokens_to_ids(token) for token in STOP_TOKENS]
    if None in stop_ids or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in stop_ids):
        raise ValueError(f"the tokenizer lacks one of the Chameleon stop tokens {STOP_TOKENS}")
    model.generation_config.eos_token_id = stop_ids
