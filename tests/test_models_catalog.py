"""The model catalog, name resolution and checkpoint fingerprints: no model is loaded here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.core import hub
from harness.models import hf
from harness.models.catalog import model_specs, register_models, resolve_model
from harness.models.spec import AUTO_FAMILY, FAMILIES, ModelSpec, resolve_dtype
from harness.core.registry import Registry, UnknownNameError

EXPECTED = {
    "llava-ov": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
    "llava-ov-7b": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "llava-1.5-7b": "llava-hf/llava-1.5-7b-hf",
    "qwen2-vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "chameleon-7b": "facebook/chameleon-7b",
    "anole-7b": "leloy/Anole-7b-v0.1-hf",
}
TINY = ["tiny-random-llava-ov", "tiny-random-llava", "tiny-random-qwen2-vl", "tiny-random-chameleon"]


@pytest.fixture
def registry() -> Registry[ModelSpec]:
    models: Registry[ModelSpec] = Registry("model", ModelSpec)
    register_models(models)
    return models


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def test_registers_every_model_with_a_known_family(registry):
    assert set(registry.names()) == {*EXPECTED, *TINY, "smol-llava"}
    for name, source in EXPECTED.items():
        assert registry.get(name).source == source
    for entry in registry:
        spec = entry.load()
        assert spec.name == entry.name
        assert spec.family in FAMILIES
        assert entry.help == spec.help and spec.help


def test_builder_and_fingerprinter_targets_exist(registry):
    for entry in registry:
        spec = entry.load()
        assert callable(spec.builder.load()), spec.builder
        assert callable(spec.fingerprinter.load()), spec.fingerprinter


def test_listing_models_imports_no_torch():
    code = (
        "import sys\n"
        "from harness.registries import models\n"
        "from harness.models.catalog import resolve_model\n"
        "names = models().names()\n"
        "resolve_model(models(), 'some-org/some-model')\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print(len(names), heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"{len(model_specs())} []"


def test_resolve_registered_names_and_aliases(registry):
    assert resolve_model(registry, "llava-ov") is registry.get("llava-ov")
    assert resolve_model(registry, "llava-onevision").name == "llava-ov"
    assert resolve_model(registry, "tiny-llava").name == "tiny-random-llava"


def test_resolve_typo_raises_did_you_mean(registry):
    with pytest.raises(UnknownNameError) as caught:
        resolve_model(registry, "llava-0v")
    assert "Did you mean" in str(caught.value)
    assert "llava-ov" in str(caught.value)


def test_resolve_plain_unknown_word_is_not_taken_for_a_hub_id(registry):
    with pytest.raises(UnknownNameError):
        resolve_model(registry, "gpt4")


def test_ad_hoc_hub_id_is_accepted_without_loading(registry):
    spec = resolve_model(registry, "some-org/Some.Model-1B")
    assert spec.source == spec.name == "some-org/Some.Model-1B"
    assert spec.family == AUTO_FAMILY
    assert str(spec.builder) == "harness.models.hf:load_pretrained"
    assert spec.fingerprinter.load()(spec) == {
        "source": "some-org/Some.Model-1B",
        "revision": "main (unresolved)",
        "dtype": "float32",
    }


def test_ad_hoc_hub_id_with_revision(registry):
    spec = resolve_model(registry, "some-org/model@v2.0")
    assert (spec.source, spec.revision) == ("some-org/model", "v2.0")


def test_hub_id_of_a_registered_model_resolves_to_its_spec(registry):
    assert resolve_model(registry, "Qwen/Qwen2-VL-2B-Instruct") is registry.get("qwen2-vl-2b")


def test_local_directory_becomes_ad_hoc_spec(registry, tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    spec = resolve_model(registry, str(folder))
    assert spec.source == str(folder.resolve())
    assert spec.family == AUTO_FAMILY


def test_resolve_dtype():
    spec = ModelSpec("m", "llava", "org/m", "a:b", "a:c", default_dtype="bfloat16")
    assert resolve_dtype(spec, "auto") == "bfloat16"
    assert resolve_dtype(spec, None) == "bfloat16"
    assert resolve_dtype(spec, "float16") == "float16"
    with pytest.raises(ValueError, match="unsupported dtype"):
        resolve_dtype(spec, "int8")


# ------------------------------------------------------------------------------------ fingerprints
def _hub_spec(revision: str | None = None) -> ModelSpec:
    return ModelSpec("m", "llava", "org/model", hf.__name__ + ":load_pretrained", "x:y", revision=revision)


def test_hub_fingerprint_reads_commit_from_local_cache(tmp_path):
    refs = tmp_path / "hub" / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40 + "\n")
    (refs / "dev").write_text("b" * 40)
    assert hf.fingerprint_pretrained(_hub_spec(), "float32")["revision"] == "a" * 40
    assert hf.fingerprint_pretrained(_hub_spec("dev"), "float32")["revision"] == "b" * 40


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"])
def test_hub_cache_follows_huggingface_hub_variables(variable, tmp_path, monkeypatch):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(variable, "~/hf-cache")  # ~ expanded, as huggingface_hub does
    root = tmp_path / "hf-cache" / ("hub" if variable == "HF_HOME" else "")
    refs = root / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("d" * 40)
    assert hf.hub_cache() == root
    assert hf.fingerprint_pretrained(_hub_spec(), "float32")["revision"] == "d" * 40


def test_hub_fingerprint_without_cache_entry():
    assert hf.fingerprint_pretrained(_hub_spec())["revision"] == "main (unresolved)"
    assert hf.fingerprint_pretrained(_hub_spec("v1.0"))["revision"] == "v1.0"
    assert hf.fingerprint_pretrained(_hub_spec("c" * 40))["revision"] == "c" * 40


def test_hub_fingerprint_differs_by_dtype():
    spec = _hub_spec()
    assert hf.fingerprint_pretrained(spec, "float32") == hf.fingerprint_pretrained(spec, "auto")
    assert hf.fingerprint_pretrained(spec, "float32") != hf.fingerprint_pretrained(spec, "bfloat16")


def _fake_checkpoint(folder):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llava"}))
    (folder / "model.safetensors").write_bytes(b"weights-v1")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "README.md").write_text("not part of the fingerprint")
    return folder


def test_local_fingerprint_is_content_hash_and_memoised(tmp_path, monkeypatch):
    folder = _fake_checkpoint(tmp_path / "ckpt")
    monkeypatch.setattr(hub, "MEMO_MIN_AGE_S", 0.0)  # memoise files written just now
    spec = ModelSpec("m", AUTO_FAMILY, str(folder), "x:y", "x:z")
    first = hf.fingerprint_pretrained(spec, "float32")
    assert first["sha256"] and first["dtype"] == "float32"
    assert "revision" not in first

    def no_rehash(path):
        raise AssertionError(f"{path} re-hashed although unchanged")

    with monkeypatch.context() as patch:
        patch.setattr(hub, "file_sha256", no_rehash)
        assert hf.fingerprint_pretrained(spec, "float32") == first  # from the memo
        (folder / "README.md").write_text("edited")  # not a model file: no effect, no re-hash
        assert hf.fingerprint_pretrained(spec, "float32") == first

    (folder / "model.safetensors").write_bytes(b"weights-version-2")
    assert hf.fingerprint_pretrained(spec, "float32")["sha256"] != first["sha256"]


def test_recently_written_files_are_not_memoised(tmp_path, monkeypatch):
    folder = _fake_checkpoint(tmp_path / "ckpt")
    hf.folder_sha256(folder)
    rehashed = []
    monkeypatch.setattr(hub, "file_sha256", lambda path: rehashed.append(path) or "0" * 64)
    hf.folder_sha256(folder)
    assert len(rehashed) == 3  # all three model files were too fresh to trust size + mtime


def test_local_fingerprint_same_content_elsewhere_is_equal(tmp_path):
    one = _fake_checkpoint(tmp_path / "one")
    two = _fake_checkpoint(tmp_path / "two")
    assert hf.folder_sha256(one) == hf.folder_sha256(two)


def test_local_fingerprint_of_empty_folder_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model files"):
        hf.folder_sha256(tmp_path)


def test_hub_id_one_letter_off_a_registered_one_warns(registry, caplog):
    with caplog.at_level("WARNING"):
        spec = resolve_model(registry, "llava-hf/llava-onevison-qwen2-0.5b-ov-hf")
    assert spec.source == "llava-hf/llava-onevison-qwen2-0.5b-ov-hf"  # still taken: it may be meant
    assert "did you mean 'llava-hf/llava-onevision-qwen2-0.5b-ov-hf'" in caplog.text


def test_chameleon_keys_hold_the_harness_prompt_format_wherever_the_family_is_known(registry, tmp_path):
    """Chameleon checkpoints get the harness's prompt format on load (their own template is replaced), so
    its hash is part of their key: registered, an ad-hoc folder, an ad-hoc Hub id in the cache."""
    from harness.models.chameleon import prompt_format_sha256

    expected = prompt_format_sha256()
    assert len(expected) == 64
    registered = hf.fingerprint_pretrained(registry.get("chameleon-7b"))
    assert registered == {"source": "facebook/chameleon-7b", "revision": "main (unresolved)", "dtype": "bfloat16",
                          "prompt_format_sha256": expected}
    folder = _fake_checkpoint(tmp_path / "chameleon")
    (folder / "config.json").write_text(json.dumps({"model_type": "chameleon"}))
    assert hf.fingerprint_pretrained(resolve_model(registry, str(folder)))["prompt_format_sha256"] == expected
    snapshot = tmp_path / "hub" / "models--org--cham" / "snapshots" / ("e" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "chameleon"}))
    (tmp_path / "hub" / "models--org--cham" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--cham" / "refs" / "main").write_text("e" * 40)
    cached = hf.fingerprint_pretrained(resolve_model(registry, "org/cham"))
    assert (cached["revision"], cached["prompt_format_sha256"]) == ("e" * 40, expected)
    # other families keep the keys they had; an uncached ad-hoc id cannot say, and adds nothing
    assert "prompt_format_sha256" not in hf.fingerprint_pretrained(registry.get("llava-ov"))
    assert "prompt_format_sha256" not in hf.fingerprint_pretrained(resolve_model(registry, "org/unknown"))
