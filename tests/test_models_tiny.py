"""VLMAdapter on the tiny random-init fixtures of every family: build, load, encode, generate, hooks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from harness.models import tiny
from harness.defense_api.adapter import VLMAdapter
from harness.models.catalog import register_models, resolve_model
from harness.models.spec import AUTO_FAMILY, ModelSpec
from harness.core.records import GenerationSettings, Request
from harness.core.registry import Registry

FIXTURES = ["tiny-random-llava-ov", "tiny-random-llava", "tiny-random-qwen2-vl", "tiny-random-chameleon"]
FAMILIES = {"tiny-random-llava-ov": "llava-onevision", "tiny-random-llava": "llava", "tiny-random-qwen2-vl": "qwen2-vl",
            "tiny-random-chameleon": "chameleon"}


@pytest.fixture(scope="module")
def registry():
    models = Registry("model", ModelSpec)
    register_models(models)
    return models


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Build the fixtures into a fresh cache folder: tests see a cold build, not a stale one."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module", params=FIXTURES)
def adapter(request, registry, cache) -> VLMAdapter:
    spec = resolve_model(registry, request.param)
    return spec.builder.load()(spec, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index, (size, colour) in enumerate([((40, 24), (200, 30, 30)), ((64, 64), (20, 40, 220))]):
        path = folder / f"image{index}.png"
        Image.new("RGB", size, colour).save(path)
        paths.append(str(path))
    return paths


def make_request(prompt: str, image: str | None = None, system: str | None = None, max_new_tokens: int = 6) -> Request:
    return Request(
        task="test",
        sample_id=prompt,
        prompt=prompt,
        image=image,
        image_sha256=None,
        system=system,
        settings=GenerationSettings(max_new_tokens=max_new_tokens),
    )


def mixed_requests(images: list[str]) -> list[Request]:
    return [
        make_request("What is shown here?", images[0]),
        make_request("Hello"),
        make_request("Count the objects in this picture, please.", images[1], system="You are a helpful assistant."),
        make_request("Answer the question using a single word or phrase. Yes or no?"),
    ]


def test_loads_the_right_family(adapter):
    assert adapter.family == FAMILIES[adapter.spec.name]
    assert adapter.device == torch.device("cpu")
    assert adapter.dtype == torch.float32
    assert next(adapter.model.parameters()).dtype == torch.float32


def test_generate_with_and_without_image(adapter, images):
    with_image, text_only = adapter.generate([make_request("Describe it.", images[0]), make_request("Describe it.")])
    for output in (with_image, text_only):
        assert output.text
        assert 1 <= output.output_tokens <= 6
        assert output.prefill_s > 0 and output.decode_s > 0
        assert output.batch_size == 2
    # the image expands into many placeholder tokens; the text part is the same
    assert with_image.input_tokens > text_only.input_tokens + 4


def test_batched_equals_unbatched(adapter, images):
    requests = mixed_requests(images)
    batched = adapter.generate(requests)
    singles = [adapter.generate([request])[0] for request in requests]
    assert [output.text for output in batched] == [output.text for output in singles]
    assert [output.input_tokens for output in batched] == [output.input_tokens for output in singles]
    assert [output.output_tokens for output in batched] == [output.output_tokens for output in singles]
    assert {output.batch_size for output in batched} == {4}
    assert {output.batch_size for output in singles} == {1}


def test_text_only_input_tokens_match_the_tokenizer(adapter):
    request = make_request("Hello there, how are you?", system="Be brief.")
    # the tokenizer's own special tokens included (Chameleon's adds <s>; the other fixtures' add none)
    expected = len(adapter.tokenizer(adapter.prompt_text(request))["input_ids"])
    assert adapter.generate([request])[0].input_tokens == expected


def test_left_padding(adapter, images):
    requests = [make_request("Hi"), make_request("A much longer prompt with many more words in it than the first")]
    inputs = adapter.encode(requests)
    mask, ids = inputs["attention_mask"], inputs["input_ids"]
    assert mask[:, -1].tolist() == [1, 1]  # every row ends at its last real token
    assert mask[0, 0] == 0 and mask[1].all()
    assert (ids[0][mask[0] == 0] == adapter.tokenizer.pad_token_id).all()


def test_encode_is_what_generate_feeds_the_model(adapter, images):
    requests = mixed_requests(images)
    encoded = adapter.encode(requests)
    seen = {}
    original = adapter.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    adapter.model.generate = spy
    try:
        adapter.generate(requests)
    finally:
        del adapter.model.generate
    assert set(encoded) <= set(seen)
    for name, tensor in encoded.items():
        assert torch.equal(seen[name], tensor), name
    assert encoded["pixel_values"].dtype == adapter.dtype


def test_max_new_tokens_override_and_per_request_limits(adapter):
    short, long = make_request("Tell me a story.", max_new_tokens=2), make_request("Tell me a story.", max_new_tokens=7)
    outputs = adapter.generate([short, long])
    assert outputs[0].output_tokens == 2 and outputs[1].output_tokens == 7  # random weights never emit EOS this early
    assert outputs[1].text.startswith(outputs[0].text)
    overridden = adapter.generate([long], max_new_tokens=3)[0]
    assert overridden.output_tokens == 3


def test_output_tokens_stop_at_eos_not_at_padding(adapter):
    """Make the first token of one answer the EOS: that row ends after 1 token while the other runs on."""
    requests = [make_request("Hello"), make_request("Describe a red circle on a white background.")]
    with torch.inference_mode():
        first = adapter.model.generate(**adapter.encode(requests[:1]), max_new_tokens=1, do_sample=False)[0, -1].item()
    config = adapter.model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = first
    try:
        stopped, other = adapter.generate(requests)
        alone = adapter.generate(requests[1:])[0]
    finally:
        config.eos_token_id = saved
    assert stopped.output_tokens == 1
    assert stopped.text == adapter.tokenizer.decode([first], skip_special_tokens=True).strip()
    assert other.output_tokens == alone.output_tokens and other.text == alone.text


def test_steering_handles_are_the_real_modules(adapter, images):
    layers = adapter.decoder_layers
    assert isinstance(layers, torch.nn.ModuleList)
    assert adapter.num_layers == len(layers) == adapter.model.config.get_text_config().num_hidden_layers
    assert adapter.hidden_size == tiny.TEXT_HIDDEN
    assert adapter.lm_head is adapter.model.get_output_embeddings()
    calls = {"layer0": [], "norm": 0, "head": 0}

    def on_layer(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        calls["layer0"].append(hidden.shape)

    def count(key):
        def hook(module, args, output):
            calls[key] += 1

        return hook

    handles = [
        layers[0].register_forward_hook(on_layer),
        adapter.final_norm.register_forward_hook(count("norm")),
        adapter.lm_head.register_forward_hook(count("head")),
    ]
    try:
        adapter.generate([make_request("Hello", images[0], max_new_tokens=4)])
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls["layer0"]) == 4  # one prefill + three decoding steps
    assert calls["layer0"][0][-1] == adapter.hidden_size
    assert calls["norm"] == calls["head"] == 4


def test_steering_hook_changes_the_output(adapter):
    """A hook on a decoder layer really sits in the forward path: perturbing it changes the answer."""
    request = make_request("Tell me a story.", max_new_tokens=6)
    before = adapter.generate([request])[0].text

    def perturb(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + 50.0, *output[1:])
        return output + 50.0

    handle = adapter.decoder_layers[0].register_forward_hook(perturb)
    try:
        after = adapter.generate([request])[0].text
    finally:
        handle.remove()
    assert after != before
    assert adapter.generate([request])[0].text == before


def test_tokenizer_knows_the_vision_tokens(adapter):
    assert adapter.tokenizer.convert_tokens_to_ids(adapter.processor.image_token) == adapter.model.config.image_token_id
    assert adapter.tokenizer.pad_token_id is not None and adapter.eos_token_ids


# ------------------------------------------------------------------------------- builds and fingerprints
@pytest.mark.parametrize("name", FIXTURES)
def test_construction_is_deterministic(name):
    first, _ = tiny.construct(name)
    second, _ = tiny.construct(name)
    for (key, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), key


def test_construction_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.construct("tiny-random-llava")
    assert torch.equal(torch.rand(3), expected)


def test_saved_fixture_reloads_to_the_constructed_weights(adapter):
    constructed, _ = tiny.construct(adapter.spec.name)
    loaded = adapter.model.state_dict()
    for key, tensor in constructed.state_dict().items():
        assert torch.equal(loaded[key], tensor), key


def test_fixture_folder_is_versioned_under_cache_dir(cache):
    folder = tiny.saved_fixture("tiny-random-llava")
    assert folder == cache / "tiny" / "tiny-random-llava" / str(tiny.TINY_VERSION)
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_fingerprints_are_stable_and_dtype_specific(registry):
    spec = resolve_model(registry, "tiny-random-llava-ov")
    fingerprint = spec.fingerprinter.load()
    assert fingerprint(spec, "float32") == fingerprint(spec, "float32") == fingerprint(spec, "auto")
    assert fingerprint(spec, "float32") != fingerprint(spec, "bfloat16")
    assert fingerprint(spec, "float32") == {
        "builder": "tiny-random-llava-ov",
        "version": tiny.TINY_VERSION,
        "seed": tiny.SEED,
        "dtype": "float32",
    }
    other = resolve_model(registry, "tiny-random-llava")
    assert fingerprint(other, "float32") != fingerprint(spec, "float32")


def test_bfloat16_load_generates(registry, cache, images):
    spec = resolve_model(registry, "tiny-random-llava")
    adapter = spec.builder.load()(spec, dtype="bfloat16", device="cpu")
    assert next(adapter.model.parameters()).dtype == torch.bfloat16
    assert adapter.encode([make_request("Hi", images[0])])["pixel_values"].dtype == torch.bfloat16
    assert adapter.generate([make_request("Hi", images[0], max_new_tokens=3)])[0].output_tokens == 3


def test_ad_hoc_local_folder_detects_family_and_loads(registry, cache, images):
    folder = tiny.saved_fixture("tiny-random-qwen2-vl")
    spec = resolve_model(registry, str(folder))
    assert spec.family == AUTO_FAMILY
    fingerprint = spec.fingerprinter.load()(spec, "float32")
    assert fingerprint["sha256"] == spec.fingerprinter.load()(spec, "float32")["sha256"]
    adapter = spec.builder.load()(spec, dtype="float32", device="cpu")
    assert adapter.family == "qwen2-vl"
    registered = resolve_model(registry, "tiny-random-qwen2-vl").builder.load()(
        resolve_model(registry, "tiny-random-qwen2-vl"), dtype="float32", device="cpu"
    )
    request = make_request("What is this?", images[1])
    assert adapter.generate([request])[0].text == registered.generate([request])[0].text


def test_unknown_fixture_name_fails(registry):
    spec = dataclasses.replace(resolve_model(registry, "tiny-random-llava"), options={"fixture": "tiny-nope"})
    with pytest.raises(KeyError, match="unknown tiny fixture"):
        tiny.build_tiny(spec, "float32", "cpu")


# ------------------------------------------------------------------------------------------ Chameleon
@pytest.fixture(scope="module")
def chameleon(registry, cache) -> VLMAdapter:
    spec = resolve_model(registry, "tiny-random-chameleon")
    return spec.builder.load()(spec, dtype="float32", device="cpu")


def test_chameleon_prompt_is_autosteers_text_then_image_with_no_separator(chameleon, images):
    """<s> + question + <racm3:break> + one token per VQ code + <eoss>, as Anole's tokens_from_ui builds it
    for AutoSteer's [text, image] input: no role marker, no <reserved08706> chat separator."""
    request = make_request("What is shown here?", images[0], system="Be brief.")
    assert chameleon.prompt_text(request) == "Be brief.\nWhat is shown here?<image>"
    assert chameleon.prompt_text(make_request("Hi")) == "Hi"
    tokenizer = chameleon.tokenizer
    ids = chameleon.encode([make_request("What is shown here?", images[0])])["input_ids"][0].tolist()
    question = tokenizer("What is shown here?", add_special_tokens=False)["input_ids"]
    codes = (16 // 4) ** 2
    expected = ([tokenizer.convert_tokens_to_ids("<s>")] + question + [tokenizer.convert_tokens_to_ids("<racm3:break>")]
                + [tokenizer.convert_tokens_to_ids("<image>")] * codes + [tokenizer.convert_tokens_to_ids("<eoss>")])
    assert ids == expected
    assert tokenizer.convert_tokens_to_ids("<reserved08706>") not in ids
    # generation stops at </s> or at the start of an image, as Anole's Options.extra_eos_tokens
    assert chameleon.eos_token_ids == {tokenizer.convert_tokens_to_ids("</s>"),
                                       tokenizer.convert_tokens_to_ids("<racm3:break>")}


def test_chameleon_steering_handles_sit_on_its_early_fusion_decoder(chameleon):
    assert chameleon.language_model is chameleon.model.model  # no separate language model to unwrap
    assert chameleon.decoder_layers is chameleon.model.model.layers and chameleon.final_norm is chameleon.model.model.norm
    assert chameleon.num_layers == tiny.TEXT_LAYERS and chameleon.hidden_size == tiny.TEXT_HIDDEN


def test_chameleon_image_tokens_come_from_the_vq_codebook(chameleon, images):
    """The picture reaches the decoder as VQ codes mapped to the IMGIMG... vocabulary entries."""
    inputs = chameleon.encode([make_request("Describe.", images[0])])
    with torch.inference_mode():
        codes = chameleon.model.model.get_image_tokens(inputs["pixel_values"])[0].tolist()
    names = chameleon.tokenizer.convert_ids_to_tokens(codes)
    assert len(codes) == 16 and all(name.startswith("IMGIMG") and name.endswith("Z") for name in names)
    assert tiny.chameleon_image_token(12) == "IMGIMGBCZ"


def test_chameleon_fingerprint_holds_its_prompt_format(registry):
    from harness.models.chameleon import prompt_format_sha256

    spec = resolve_model(registry, "tiny-random-chameleon")
    assert spec.fingerprinter.load()(spec, "float32")["prompt_format_sha256"] == prompt_format_sha256()
    other = resolve_model(registry, "tiny-random-llava")
    assert "prompt_format_sha256" not in other.fingerprinter.load()(other, "float32")
