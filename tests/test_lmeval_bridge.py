"""lm-eval bridge: local YAML tasks (text, text + image, multiple choice) run through lm_eval.simple_evaluate
and lm-eval's CLI on the tiny random LLaVA-OneVision under `none` and a calibrated `refusal-direction`.

Expected values are computed by hand from the harness itself: the same request sent straight to the
defense, and log-probabilities from one plain forward pass with the steering vector added by a hook this
file registers. Nothing may reach the network (a socket guard fails the test on any connection).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager
from PIL import Image

from harness import lmeval_bridge, registries
from harness.defense_api.calibration import ARTIFACT_FILE, MANIFEST_FILE, Calibration, artifact_dir, manifest_sha256, save_artifact
from harness.core.images import file_sha256
from harness.lmeval_bridge import (
    DefendedMultimodalLM,
    Turn,
    context_to_turn,
    cut_at_stop_sequences,
    encode_chat,
    parse_batch_size,
    parse_defense_args,
)
from harness.models.catalog import resolve_model
from harness.models.tiny import fingerprint_tiny
from harness.defense_api.steering import all_hook_counts, text_request

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lmeval"
TINY = "tiny-random-llava-ov"
TASKS = ["harness_bridge_vqa", "harness_bridge_text", "harness_bridge_vqa_mc"]
LAYER, COEFF = 1, 3.0
DOCS = [json.loads(line) for line in (FIXTURES / "vqa.jsonl").read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every connection attempt or name lookup fails the test (offline flags alone do not prove it)."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config

    # datasets reads the variables once at import: set its live flags too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    yield
    assert attempts == []


@pytest.fixture
def in_fixture_dir(monkeypatch):
    """The YAMLs name their data file relative to the working directory (datasets' rule for data_files)."""
    monkeypatch.chdir(FIXTURES)
    return FIXTURES


@pytest.fixture
def direction():
    return torch.randn(64, generator=torch.Generator().manual_seed(0)) * 3.0


@pytest.fixture
def calibration(tmp_path, monkeypatch, direction):
    """A refusal-direction artifact for the tiny model, written through the real save path with a chosen
    direction (layer 1), so the steering is known exactly."""
    monkeypatch.setenv("HARNESS_CALIBRATION_DIR", str(tmp_path / "calibration"))
    spec = resolve_model(registries.models(), TINY)
    from harness.defenses.refusal_direction import RefusalDirection

    manifest = {"defense": "refusal-direction", "calibration_version": RefusalDirection.calibration_version, "model": TINY,
                "model_fingerprint": fingerprint_tiny(spec, "float32")}
    return save_artifact(artifact_dir("refusal-direction", TINY),
                         Calibration({"direction": direction}, {"layer": LAYER}), manifest)


@pytest.fixture
def adapter(reuse_loaded_models):
    spec = resolve_model(registries.models(), TINY)
    return spec.builder.load()(spec, dtype="float32", device="cpu")


def run_tasks(model_args: str, tasks=TASKS, **kwargs):
    manager = TaskManager(include_path=str(FIXTURES), include_defaults=False)
    return lmeval_bridge.simple_evaluate(model_args=model_args, tasks=tasks, task_manager=manager, limit=len(DOCS),
                                         bootstrap_iters=0, log_samples=True, **kwargs)


def responses(results, task: str) -> list:
    return [sample["resps"] for sample in sorted(results["samples"][task], key=lambda s: s["doc_id"])]


def defended(name: str, adapter, **params):
    defense = registries.defenses().get(name)(**params)
    defense.prepare(TINY, {**fingerprint_tiny(adapter.spec, "float32"), "device": "cpu"})
    return defense


def image_of(doc) -> str | None:
    return str(FIXTURES / doc["image"]) if doc["image"] else None


def direct_answer(defense, adapter, prompt: str, image: str | None, system: str | None = None) -> str:
    """What the harness itself answers (the runner's call: defense.generate on a Request), cut at the
    task's stop sequence."""
    request = text_request(prompt, image=image, system=system, max_new_tokens=8)
    return cut_at_stop_sequences(defense.generate(adapter, [request])[0].text, ["\n\n"])


def hand_loglikelihood(adapter, prompt: str, image: str | None, continuation: str, steer=None, transform=None):
    """log P(continuation | rendered prompt) from one full forward pass, with ``steer`` added to the input
    of decoder block LAYER by a hook registered here and the request first passed through ``transform``
    (a prompt defense's); also whether every token is the argmax."""
    request = text_request(prompt, image=image)
    rendered = adapter.prompt_text(transform(request) if transform else request)
    n = len(adapter.tokenizer(continuation, add_special_tokens=False)["input_ids"])
    inputs = adapter.encode_texts([rendered + continuation], [image])

    def add(module, args, kwargs):
        if args:
            return (args[0] + steer, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + steer}

    layer = adapter.decoder_layers[LAYER]
    handle = layer.register_forward_pre_hook(add, with_kwargs=True) if steer is not None else None
    try:
        with torch.no_grad():
            logits = adapter.model(**inputs).logits[0].float()
    finally:
        if handle is not None:
            handle.remove()
    ids = inputs["input_ids"][0, -n:]
    step_logits = logits[-n - 1 : -1]
    logprob = torch.log_softmax(step_logits, dim=-1).gather(-1, ids.unsqueeze(-1)).sum().item()
    return logprob, bool((step_logits.argmax(dim=-1) == ids).all())


def instance(kind: str, arguments: tuple, doc_id: int = 0) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=arguments, idx=0, metadata=("direct", doc_id, 1))


# ------------------------------------------------------------------------------- simple_evaluate runs
def test_yaml_tasks_run_under_a_steering_defense_and_record_its_fingerprint(
        adapter, calibration, direction, in_fixture_dir, isolated_dirs):
    steered = run_tasks(f"model={TINY},defense=refusal-direction,defense_args=coeff:{COEFF}")
    plain = run_tasks(f"model={TINY},defense=none")

    # Provenance: the runner's defense fingerprint (name, params, calibration sha256) is in the config.
    config = steered["config"]
    artifact_sha = file_sha256(calibration / ARTIFACT_FILE)
    manifest = json.loads((calibration / MANIFEST_FILE).read_text())
    expected = {"name": "refusal-direction", "params": {"coeff": COEFF},
                "artifacts": {ARTIFACT_FILE: artifact_sha, MANIFEST_FILE: manifest_sha256(manifest)}}
    assert config["defense_fingerprint"] == expected
    assert config["defense_fingerprint"] == defended("refusal-direction", adapter, coeff=COEFF).fingerprint()
    assert config["defense"] == "refusal-direction" and config["defense_params"] == {"coeff": COEFF}
    assert config["defense_calibration_sha256"][ARTIFACT_FILE] == artifact_sha
    assert config["harness_model"] == TINY and config["model_fingerprint"]["device"] == "cpu"
    assert "defense=refusal-direction" in config["model_args"]
    assert plain["config"]["defense_fingerprint"] == {"name": "none", "params": {}, "artifacts": {}}
    assert set(steered["results"]) == set(TASKS)
    assert steered["results"]["harness_bridge_vqa_mc"]["sample_len"] == len(DOCS)

    # Each answer is exactly what the harness's own call gives for that prompt and image.
    for name, results in (("refusal-direction", steered), ("none", plain)):
        defense = defended(name, adapter, **({"coeff": COEFF} if name != "none" else {}))
        vqa, text = responses(results, "harness_bridge_vqa"), responses(results, "harness_bridge_text")
        for doc, got_vqa, got_text in zip(DOCS, vqa, text):
            assert got_vqa == [[direct_answer(defense, adapter, doc["question"], image_of(doc))]]
            assert got_text == [[direct_answer(defense, adapter, doc["question"], None)]]

    # The images reach the model, and the steering changed what it says and how it scores answers.
    plain_vqa = responses(plain, "harness_bridge_vqa")
    assert len({answer[0][0] for answer in plain_vqa[:3]}) == 3  # three images, three answers
    assert plain_vqa[0] != responses(plain, "harness_bridge_text")[0]
    assert responses(steered, "harness_bridge_vqa") != plain_vqa
    assert responses(steered, "harness_bridge_vqa_mc") != responses(plain, "harness_bridge_vqa_mc")
    assert all_hook_counts(adapter) == 0 and "generate" not in vars(adapter)


def test_chat_template_carries_the_system_instruction_to_the_request(adapter, in_fixture_dir, isolated_dirs):
    results = run_tasks(f"model={TINY},defense=none", tasks=["harness_bridge_text"],
                        apply_chat_template=True, system_instruction="Answer briefly.")
    defense = defended("none", adapter)
    for doc, got in zip(DOCS, responses(results, "harness_bridge_text")):
        assert got == [[direct_answer(defense, adapter, doc["question"], None, system="Answer briefly.")]]
    assert got != [[direct_answer(defense, adapter, doc["question"], None)]]


def test_cli_entry_point_runs_lm_eval_with_the_bridge(adapter, in_fixture_dir, isolated_dirs, tmp_path, monkeypatch):
    import lm_eval.tasks
    from functools import partial

    # The CLI indexes lm-eval's ~15k built-in task files first (tens of seconds); only our folder is needed.
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", partial(TaskManager, include_defaults=False))
    out = tmp_path / "lmeval-out"
    assert lmeval_bridge.main([
        "run", "--model", "defended-mm", "--model_args", f"model={TINY},defense=self-reminder,max_new_tokens=3",
        "--tasks", "harness_bridge_text", "--include_path", str(FIXTURES), "--limit", "2",
        "--output_path", str(out), "--log_samples",
    ]) == 0
    [saved] = out.rglob("results_*.json")
    config = json.loads(saved.read_text())["config"]
    assert config["defense"] == "self-reminder" and config["defense_fingerprint"]["name"] == "self-reminder"
    assert config["model_args"]["defense"] == "self-reminder"
    [samples] = out.rglob("samples_harness_bridge_text_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    defense = defended("self-reminder", adapter)
    request = text_request(DOCS[0]["question"], max_new_tokens=3)
    assert rows[0]["resps"] == [[defense.generate(adapter, [request])[0].text]]


# --------------------------------------------------------------------------------- direct requests
def test_generate_until_cuts_at_stop_sequences_and_reports_what_greedy_ignores(adapter):
    lm = DefendedMultimodalLM(model=TINY, defense="none")
    red = Image.open(FIXTURES / "images" / "red_circle.png").convert("RGB")
    blue = Image.open(FIXTURES / "images" / "blue_square.png").convert("RGB")
    [full] = lm.generate_until([instance("generate_until", ("<image>Describe it.", {"max_gen_toks": 8}, {"visual": [red]}))])
    request = text_request("Describe it.", image=str(FIXTURES / "images" / "red_circle.png"), max_new_tokens=8)
    assert full == defended("none", adapter).generate(adapter, [request])[0].text
    assert len(full) >= 4
    stop = full[2:4]
    gen_kwargs = {"until": [stop], "max_gen_toks": 8, "do_sample": True, "num_beams": 2}
    cut = lm.generate_until([instance("generate_until", ("<image>Describe it.", gen_kwargs, {"visual": [red, blue]}))])
    assert cut == [full[: full.index(stop)]]  # the text before the first occurrence of the stop sequence
    info = lm.get_model_info()
    assert info["ignored_gen_kwargs"] == ["do_sample", "num_beams"] and info["images_dropped"] == 1
    assert info["decoding"] == "greedy"


def test_loglikelihood_is_the_teacher_forced_score_under_the_defense(adapter, calibration, direction):
    plain = DefendedMultimodalLM(model=TINY, defense="none")
    steered = DefendedMultimodalLM(model=TINY, defense="refusal-direction", defense_args={"coeff": COEFF})
    image = str(FIXTURES / "images" / "blue_square.png")
    pil = Image.open(image).convert("RGB")
    # A continuation that is the model's own greedy next token, so is_greedy must be True for it.
    rendered = adapter.prompt_text(text_request("Name a color."))
    with torch.no_grad():
        top = adapter.model(**adapter.encode_texts([rendered], [None])).logits[0, -1].argmax().item()
    greedy_text = adapter.tokenizer.decode([top])
    assert adapter.tokenizer(greedy_text, add_special_tokens=False)["input_ids"] == [top]

    cases = [("<image>What color is the shape?", " blue", image, {"visual": [pil]}),
             ("Name a color.", " red", None, None),
             ("Name a color.", greedy_text, None, None)]
    requests = [instance("loglikelihood", (ctx, cont) + ((aux,) if aux else ()), i)
                for i, (ctx, cont, _, aux) in enumerate(cases)]
    got_plain, got_steered = plain.loglikelihood(requests), steered.loglikelihood(requests)
    for (ctx, cont, path, _), (lp, greedy), (slp, sgreedy) in zip(cases, got_plain, got_steered):
        prompt = ctx.replace("<image>", "")
        want, want_greedy = hand_loglikelihood(adapter, prompt, path, cont)
        want_s, want_s_greedy = hand_loglikelihood(adapter, prompt, path, cont, steer=COEFF * direction)
        assert lp == pytest.approx(want, abs=1e-3) and greedy == want_greedy
        assert slp == pytest.approx(want_s, abs=1e-3) and sgreedy == want_s_greedy
        assert abs(slp - lp) > 1e-2  # the steering hook ran during the forced decoding
    assert got_plain[2][1] is True
    assert all_hook_counts(adapter) == 0 and "generate" not in vars(adapter)


def test_loglikelihood_scores_the_prompt_defense_request_and_refuses_wrapping_defenses(adapter):
    from harness.defenses.self_reminder import SelfReminder

    # A prompt defense: the continuation is scored after the transformed (system prompt + reminder) request.
    reminder = DefendedMultimodalLM(model=TINY, defense="self-reminder")
    [(logprob, _)] = reminder.loglikelihood([instance("loglikelihood", ("Name a color.", " red"))])
    want = hand_loglikelihood(adapter, "Name a color.", None, " red", transform=SelfReminder().transform)[0]
    assert logprob == pytest.approx(want, abs=1e-3)
    assert abs(want - hand_loglikelihood(adapter, "Name a color.", None, " red")[0]) > 1e-2

    # ECSO wraps every answer (and self-checks image answers with a second model call).
    ecso = DefendedMultimodalLM(model=TINY, defense="ecso")
    with pytest.raises(NotImplementedError, match="single-pass defenses.*other than the model's own"):
        ecso.loglikelihood([instance("loglikelihood", ("Name a color.", " red"))])
    red = Image.open(FIXTURES / "images" / "red_circle.png").convert("RGB")
    with pytest.raises(NotImplementedError, match="single-pass defenses.*more than once"):
        ecso.loglikelihood([instance("loglikelihood", ("<image>Name a color.", " red", {"visual": [red]}))])
    assert "generate" not in vars(adapter) and all_hook_counts(adapter) == 0
    with pytest.raises(NotImplementedError, match="supported: generate_until .* and loglikelihood"):
        ecso.loglikelihood_rolling([instance("loglikelihood_rolling", ("Some text.",))])


# ------------------------------------------------------------------------------------ pure helpers
def test_contexts_become_a_system_prompt_and_one_user_prompt():
    assert context_to_turn("<image>What is it?\n") == Turn(None, "What is it?", 1)
    chat = encode_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<image> Q?"}], True)
    assert context_to_turn(chat) == Turn("Be brief.", "Q?", 1)
    few_shot = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "Q2"}]
    with pytest.raises(NotImplementedError, match="fewshot_as_multiturn"):
        context_to_turn(encode_chat(few_shot, True))
    with pytest.raises(NotImplementedError, match="gen_prefix"):
        context_to_turn(encode_chat([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A:"}], False))
    assert cut_at_stop_sequences("ab\n\ncd</s>", ["\n\n", "</s>", ""]) == "ab"


def test_defense_args_and_batch_size_parsing():
    assert parse_defense_args(None) == {} and parse_defense_args({"coeff": 2}) == {"coeff": 2}
    assert parse_defense_args('{"coeff": 0.5, "x": [1, 2]}') == {"coeff": 0.5, "x": [1, 2]}
    assert parse_defense_args("coeff:0.5; flag:true ;name:abc") == {"coeff": 0.5, "flag": True, "name": "abc"}
    with pytest.raises(ValueError, match="key:value"):
        parse_defense_args("coeff=0.5")
    assert parse_batch_size("8") == 8 and parse_batch_size(None) == 1
    with pytest.raises(ValueError, match="auto"):
        parse_batch_size("auto:4")


def test_auto_dtype_and_device_are_recorded_as_what_they_resolve_to():
    from harness.core.hub import resolve_device

    lm = DefendedMultimodalLM(model=TINY, defense="none", dtype="auto", device="auto")
    info = lm.get_model_info()
    assert info["model_dtype"] == "float32"  # the tiny fixture's registered dtype
    assert info["model_fingerprint"]["device"] == resolve_device("auto") == lm.adapter.device.type
