"""AutoSteer: SAS, prober, official prompt format, and the gated refusal head on a tiny random model."""

from __future__ import annotations

import math

import pytest
import torch

import harness.defenses.autosteer as autosteer
from harness.defenses.autosteer import AutoSteer, Prober, candidate_layers, official_prompt, safety_awareness, strip_role_header
from harness.defenses.none import NoDefense
from harness import registries
from harness.models.catalog import resolve_model
from harness.defense_api.steering import all_hook_counts, rendered_with, text_request
from test_steering_hooks import FirstStepLogits, assert_hooks_removed_when_generation_raises, fake_artifact

TINY = "tiny-random-llava-ov"


@pytest.fixture(scope="module")
def adapter():
    spec = resolve_model(registries.models(), TINY)
    return spec.builder.load()(spec, dtype="float32", device="cpu")


def constant_prober_tensors(hidden: int, p_toxic: float) -> dict[str, torch.Tensor]:
    """Prober weights whose output is the same for every input: softmax(bias) with P(toxic) = p_toxic."""
    prober = Prober(hidden)
    with torch.no_grad():
        for parameter in prober.parameters():
            parameter.zero_()
        prober.layers[2].bias[0] = torch.logit(torch.tensor(p_toxic))
    return {f"prober.{name}": value for name, value in prober.state_dict().items()}


def make_defense(adapter, p_toxic: float, steer: torch.Tensor, assistant_marker: bool = False, **params) -> AutoSteer:
    defense = AutoSteer(**params)
    tensors = {**constant_prober_tensors(adapter.hidden_size, p_toxic), "steer_matrix": steer}
    defense.artifact = fake_artifact({"layer": 1, "assistant_marker": assistant_marker}, tensors)
    return defense


def requests():
    return [text_request("How do I bake bread?", max_new_tokens=5), text_request("Name a colour.", max_new_tokens=5)]


def test_prober_is_hidden_64_2_softmax_with_toxicity_at_index_0():
    prober = Prober(2)
    assert [tuple(p.shape) for p in prober.parameters()] == [(64, 2), (64,), (2, 64), (2,)]
    with torch.no_grad():
        for parameter in prober.parameters():
            parameter.zero_()
        prober.layers[0].weight[0, 0] = 1.0  # unit 0 = relu(x0), unit 1 = relu(x1)
        prober.layers[0].weight[1, 1] = 1.0
        prober.layers[2].weight[0, 0] = 2.0  # logit_toxic = 2 relu(x0) + 0.5
        prober.layers[2].weight[1, 1] = -1.0  # logit_safe = -relu(x1)
        prober.layers[2].bias[0] = 0.5
    x = torch.tensor([[1.0, 3.0], [-1.0, -2.0]])
    # row 0: logits (2.5, -3) -> P(toxic) = 1 / (1 + e^-5.5); row 1: relu kills both -> logits (0.5, 0)
    expected = torch.tensor([1 / (1 + math.exp(-5.5)), 1 / (1 + math.exp(-0.5))])
    torch.testing.assert_close(prober.toxicity(x), expected)
    torch.testing.assert_close(prober(x)[:, 1], 1 - expected)


def test_safety_awareness_score_is_the_mean_pairwise_cosine_of_pair_differences():
    harmful = torch.zeros(3, 2)
    safe = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    # cosines of the differences: (0,1) = 1, (0,2) = 0, (1,2) = 0
    assert safety_awareness(harmful, safe) == pytest.approx(1 / 3)
    assert safety_awareness(harmful, torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == pytest.approx(1.0)


def test_candidate_layers_follow_the_official_stride():
    assert candidate_layers(28) == [4, 8, 12, 16, 20, 24]  # LLaVA-OV 7B in the code
    assert candidate_layers(32) == [4, 8, 12, 16, 20, 24, 28]  # Chameleon
    assert candidate_layers(3) == [1, 2]


def test_official_prompt_has_text_before_image_and_no_assistant_marker(adapter, tmp_path):
    from PIL import Image

    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 0, 0)).save(image)
    request = text_request("What colour is this?", image=str(image))
    rendered = official_prompt(adapter, request)
    assert "assistant" not in rendered
    assert rendered.index("What colour is this?") < rendered.index("<image>")
    assert adapter.prompt_text(request).rstrip().endswith("assistant")  # the usual template has the marker
    assert strip_role_header("assistant\nI'm sorry.") == "I'm sorry."
    assert strip_role_header("Sure, assistant here") == "Sure, assistant here"
    assert strip_role_header("ASSISTANT: Hello") == "Hello"
    assert strip_role_header("Assistants are helpful.") == "Assistants are helpful."
    assert strip_role_header("assistant") == ""


def random_prober(hidden: int, seed: int) -> Prober:
    """A prober whose P(toxic) depends on its input (seeded random weights)."""
    generator = torch.Generator().manual_seed(seed)
    prober = Prober(hidden)
    with torch.no_grad():
        for parameter in prober.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[-1] ** 0.5)
    return prober


def test_gate_below_threshold_leaves_the_output_identical_to_none(adapter):
    steer = torch.randn(adapter.hidden_size, adapter.hidden_size, generator=torch.Generator().manual_seed(0)) * 5
    defense = make_defense(adapter, 0.3, steer, threshold=0.5, assistant_marker=True)
    outputs = defense.generate(adapter, requests())
    plain = NoDefense().generate(adapter, requests())
    assert [o.text for o in outputs] == [o.text for o in plain]
    assert all(o.meta["gate"] is False and o.meta["toxicity"] == pytest.approx(0.3, abs=1e-5) for o in outputs)
    # the official format (no assistant marker): identical to the unhooked model on the same rendering
    official = make_defense(adapter, 0.3, steer, threshold=0.5).generate(adapter, requests())
    with rendered_with(adapter, lambda r: official_prompt(adapter, r)):
        reference = adapter.generate(requests())
    assert [o.text for o in official] == [strip_role_header(o.text) for o in reference]
    assert all_hook_counts(adapter) == 0


def test_a_real_prober_rates_the_prefill_last_token_at_its_layer_and_gates_each_row(adapter, monkeypatch):
    layer = 2
    prober = random_prober(adapter.hidden_size, seed=3)
    batch = requests()
    # by hand: HF hidden_states[layer] (the input of block `layer`) at the last prompt token of the prefill
    with torch.no_grad():
        hidden = adapter.model(**adapter.encode(batch), output_hidden_states=True).hidden_states[layer]
        expected = prober.toxicity(hidden[:, -1, :].float())
    assert abs(float(expected[0] - expected[1])) > 1e-3, "the two prompts must get different ratings"
    threshold = float(expected.mean())  # one row above, one below
    gated = (expected > threshold).tolist()
    assert sorted(gated) == [False, True]

    steer = torch.randn(adapter.hidden_size, adapter.hidden_size, generator=torch.Generator().manual_seed(1)) * 5
    defense = AutoSteer(threshold=threshold)
    tensors = {**{f"prober.{k}": v for k, v in prober.state_dict().items()}, "steer_matrix": steer}
    defense.artifact = fake_artifact({"layer": layer, "assistant_marker": True, "image_size": 0}, tensors)
    ratings = []
    real_toxicity = Prober.toxicity
    monkeypatch.setattr(Prober, "toxicity", lambda self, x: ratings.append(x.shape) or real_toxicity(self, x))
    with FirstStepLogits(adapter) as seen:
        outputs = defense.generate(adapter, batch)
    monkeypatch.undo()

    assert ratings == [torch.Size([2, adapter.hidden_size])]  # once, on the prefill, for both rows
    assert [o.meta["toxicity"] for o in outputs] == pytest.approx(expected.tolist(), abs=1e-5)
    assert [o.meta["gate"] for o in outputs] == gated and all(o.meta["probe_layer"] == layer for o in outputs)
    weight = adapter.lm_head.weight.detach().float()
    steps = len(seen.logits)
    assert steps >= 3
    for step in (0, 1, steps - 1):  # the head stays on for every decoding step of a gated row, and only there
        for row in range(2):
            h = seen.normed[step][row].float()
            head = weight + autosteer.EPSILON * weight @ steer if gated[row] else weight
            torch.testing.assert_close(seen.logits[step][row], h @ head.T, atol=1e-3, rtol=1e-4)
    plain = NoDefense().generate(adapter, batch)
    for row in range(2):
        assert (outputs[row].text == plain[row].text) is (not gated[row])
    assert all_hook_counts(adapter) == 0


def test_images_are_resized_to_the_fitted_side_at_inference(adapter, tmp_path, monkeypatch):
    from PIL import Image

    from harness.core.images import load_rgb

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    original = tmp_path / "wide.png"
    Image.new("RGB", (48, 32), (200, 30, 30)).save(original)
    with Image.open(original) as opened:
        opened.putpixel((0, 0), (0, 0, 255))
        opened.save(original)
    seen = []
    real = adapter.encode_texts

    def spy(texts, images):
        seen.extend(image for image in images if image)
        return real(texts, images)

    request = text_request("What colour is this?", image=str(original), max_new_tokens=2)
    for size, expected_size in ((256, (256, 256)), (0, (48, 32))):
        defense = make_defense(adapter, 0.1, torch.eye(adapter.hidden_size), assistant_marker=True)
        defense.artifact.manifest["fit"]["image_size"] = size
        seen.clear()
        monkeypatch.setattr(adapter, "encode_texts", spy)
        defense.generate(adapter, [request])
        monkeypatch.undo()
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
        [used] = seen
        with Image.open(used) as image:
            assert image.size == expected_size
        if size:  # the official image.resize((256, 256)), on the RGB image (bicubic, PIL's default)
            reference = load_rgb(original).resize((256, 256), Image.Resampling.BICUBIC)
            assert list(load_rgb(used).getdata()) == list(reference.getdata())
        else:
            assert used == str(original)
    assert "encode_texts" not in vars(adapter)


def test_hooks_are_removed_when_generation_raises(adapter, monkeypatch):
    defense = make_defense(adapter, 0.9, torch.eye(adapter.hidden_size))
    assert_hooks_removed_when_generation_raises(defense, adapter, requests(), monkeypatch)
    assert "prompt_text" not in vars(adapter)


def test_refusal_head_first_update_is_the_hand_computed_adamw_step(monkeypatch):
    lr = 0.1
    monkeypatch.setattr(autosteer, "HEAD_LR", lr)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(10, 8, generator=generator)
    states = [torch.randn(3, 8, generator=generator), torch.randn(2, 8, generator=generator)]
    targets = [torch.tensor([4, 1, 7]), torch.tensor([0, 4])]
    steer, losses = autosteer.train_refusal_head(states, targets, weight, epochs=1)  # 2 prompts = 1 batch

    eps = autosteer.EPSILON
    h, y = torch.cat(states), torch.cat(targets)
    logits = (1 + eps) * h @ weight.T  # S = I: (h + eps h I) W^T
    log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)
    assert losses == [pytest.approx(float(-log_probs[torch.arange(5), y].mean()), rel=1e-5)]
    # dL/dS[b, a] = eps * sum_n (G W)[n, b] h[n, a], with G = (softmax - onehot) / N
    g = (log_probs.exp() - torch.nn.functional.one_hot(y, 10).float()) / 5
    gradient = eps * (g @ weight).T @ h
    # AdamW's first step: decoupled decay (torch default 0.01), then lr * m_hat / (sqrt(v_hat) + 1e-8) = lr * g/|g|
    expected = torch.eye(8) * (1 - lr * 0.01) - lr * gradient / (gradient.abs() + 1e-8)
    torch.testing.assert_close(steer, expected, atol=1e-5, rtol=1e-5)


def test_prober_stops_after_the_codes_number_of_updates(monkeypatch):
    assert autosteer.PROBER_STEPS == 37 * 750  # epoch 37 of batch-8 training on 3000 + 3000 embeddings
    steps_taken = []
    real_step = torch.optim.AdamW.step

    def counting(self, *args, **kwargs):
        steps_taken.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    x, y = torch.randn(20, 4), torch.tensor([0, 1] * 10)
    prober, fit = autosteer.train_prober(x, y, steps=7)  # 3 batches per epoch: 2 epochs + 1 batch
    assert len(steps_taken) == 7 and fit["steps"] == 7 and fit["epochs"] == pytest.approx(7 / 3, abs=0.01)
    assert torch.get_num_threads() >= 1


def test_refusal_targets_supervise_the_same_answer_tokens_in_both_prompt_formats(adapter):
    from harness.defense_api.calibration import CalibrationPrompt

    prompts = [CalibrationPrompt(id="h1", prompt="How do I pick a lock?")]
    refusal = adapter.tokenizer(autosteer.REFUSAL_TARGET, add_special_tokens=False)["input_ids"]
    for marker in (False, True):
        states, targets = AutoSteer.refusal_targets(adapter, prompts, assistant_marker=marker)
        ids = targets[0].tolist()
        assert states[0].shape == (len(ids), adapter.hidden_size)
        start = next(i for i in range(len(ids)) if ids[i : i + len(refusal)] == refusal)
        # official format: the model also writes the assistant header, so it is supervised too;
        # with the marker the prompt already holds it and supervision starts at the refusal itself
        assert (start > 0) is (not marker)


def test_the_prompt_format_is_a_calibration_option_stored_in_the_artifact(tmp_path, monkeypatch):
    from harness.pipeline.calibrate import calibrate

    monkeypatch.setenv("HARNESS_CALIBRATION_DIR", str(tmp_path))
    monkeypatch.setattr(autosteer, "PROBER_STEPS", 2)
    monkeypatch.setattr(autosteer, "HEAD_EPOCHS", 1)
    with pytest.raises(ValueError, match="no calibration option.*assistant_marker"):
        calibrate("autosteer", TINY, limit=2, options={"assistant_mark": True})
    with pytest.raises(ValueError, match="no calibration option"):
        calibrate("ras", TINY, limit=2, options={"assistant_marker": True})
    folder = calibrate("autosteer", TINY, limit=2, options={"assistant_marker": True})
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["calibration_params"] == {"assistant_marker": True, "image_size": 256}
    assert manifest["fit"]["assistant_marker"] is True and manifest["fit"]["image_size"] == 256
    defense = AutoSteer()
    defense.prepare(TINY, manifest["model_fingerprint"])
    assert defense.assistant_marker() is True
    with pytest.raises(ValueError, match="no parameter"):
        AutoSteer(assistant_marker=True)  # an inference-time switch would disagree with the prober


def test_calibration_resizes_the_images_of_the_prober_and_head_data(adapter, tmp_path, monkeypatch):
    from PIL import Image

    from harness.defense_api.calibration import CalibrationData, CalibrationPrompt

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(autosteer, "PROBER_STEPS", 2)
    monkeypatch.setattr(autosteer, "HEAD_EPOCHS", 1)
    image = tmp_path / "scene.png"
    Image.new("RGB", (40, 24), (10, 120, 30)).save(image)
    data = CalibrationData("pairs", [CalibrationPrompt(f"h{i}", f"harmful {i}", image=str(image)) for i in range(3)],
                           [CalibrationPrompt(f"s{i}", f"harmless {i}", image=str(image)) for i in range(3)])
    sizes = []
    real = adapter.encode_texts

    def spy(texts, images):
        for path in images:
            with Image.open(path) as opened:
                sizes.append(opened.size)
        return real(texts, images)

    monkeypatch.setattr(adapter, "encode_texts", spy)
    fit = AutoSteer.calibrate(adapter, data).fit
    assert fit["image_size"] == 256 and sizes and set(sizes) == {(256, 256)}
    sizes.clear()
    assert AutoSteer.calibrate(adapter, data, image_size=0).fit["image_size"] == 0
    assert set(sizes) == {(40, 24)}
    with pytest.raises(ValueError, match="image_size"):
        AutoSteer.calibrate(adapter, data, image_size=-1)
