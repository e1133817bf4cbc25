"""AutoSteer: SAS, prober, official prompt format, and the gated refusal head on a tiny random model."""

from __future__ import annotations

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


def test_prober_is_hidden_64_2_softmax():
    prober = Prober(32)
    shapes = [tuple(p.shape) for p in prober.parameters()]
    assert shapes == [(64, 32), (64,), (2, 64), (2,)]
    probabilities = prober(torch.randn(5, 32))
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(5))
    torch.testing.assert_close(prober.toxicity(torch.zeros(1, 32)), probabilities.new_tensor([0.5]), atol=0.5, rtol=0)


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


def test_gate_above_threshold_applies_the_refusal_head_to_the_output_projection(adapter):
    steer = torch.randn(adapter.hidden_size, adapter.hidden_size, generator=torch.Generator().manual_seed(1)) * 5
    defense = make_defense(adapter, 0.7, steer, threshold=0.5, assistant_marker=True)
    with FirstStepLogits(adapter) as seen:
        outputs = defense.generate(adapter, requests())
    h = seen.normed[0].float()
    weight = adapter.lm_head.weight.detach().float()
    expected = h @ (weight + autosteer.EPSILON * weight @ steer).T  # logits = h (W + eps W S)^T
    torch.testing.assert_close(seen.logits[0], expected, atol=1e-3, rtol=1e-4)
    assert (seen.logits[0] - h @ weight.T).abs().max() > 1e-2
    assert all(o.meta["gate"] is True for o in outputs)
    assert [o.text for o in outputs] != [o.text for o in NoDefense().generate(adapter, requests())]
    assert all_hook_counts(adapter) == 0


def test_hooks_are_removed_when_generation_raises(adapter, monkeypatch):
    defense = make_defense(adapter, 0.9, torch.eye(adapter.hidden_size))
    assert_hooks_removed_when_generation_raises(defense, adapter, requests(), monkeypatch)
    assert "prompt_text" not in vars(adapter)


def test_refusal_head_training_lowers_the_loss(monkeypatch):
    monkeypatch.setattr(autosteer, "HEAD_LR", 1e-2)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(10, 8, generator=generator)
    states = [torch.randn(3, 8, generator=generator) for _ in range(6)]
    targets = [torch.full((3,), 4, dtype=torch.long) for _ in range(6)]
    steer, losses = autosteer.train_refusal_head(states, targets, weight, epochs=5)
    assert steer.shape == (8, 8)
    assert losses[-1] < losses[0]


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
    monkeypatch.setattr(autosteer, "PROBER_EPOCHS", 1)
    monkeypatch.setattr(autosteer, "HEAD_EPOCHS", 1)
    with pytest.raises(ValueError, match="no calibration option.*assistant_marker"):
        calibrate("autosteer", TINY, limit=2, options={"assistant_mark": True})
    with pytest.raises(ValueError, match="no calibration option"):
        calibrate("ras", TINY, limit=2, options={"assistant_marker": True})
    folder = calibrate("autosteer", TINY, limit=2, options={"assistant_marker": True})
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["calibration_params"] == {"assistant_marker": True}
    assert manifest["fit"]["assistant_marker"] is True
    defense = AutoSteer()
    defense.prepare(TINY, manifest["model_fingerprint"])
    assert defense.assistant_marker() is True
    with pytest.raises(ValueError, match="no parameter"):
        AutoSteer(assistant_marker=True)  # an inference-time switch would disagree with the prober
