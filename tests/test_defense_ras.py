"""RAS / MoRAS: official prompts, the risk formula, the similarity, and stage-3 steering counted by steps."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

import harness.defenses.ras as ras
from harness.defenses.none import NoDefense
from harness.defenses.ras import RiskAdaptiveSteering, risk, slope_for, weighted_similarity
from harness import registries
from harness.models.catalog import resolve_model
from harness.defense_api.steering import all_hook_counts, edit_final_norm_output, text_request
from test_steering_hooks import fake_artifact

TINY = "tiny-random-llava-ov"

# Verbatim from snumprlab/moras LLaVA/utils/utils.py (get_prompt1, get_prompt2).
OFFICIAL_PROMPT1 = (
    "Write a single sentence visual context to outline any safety-critical context in the image. The context "
    "should read out any texts in the image, and begin with 'The image shows'."
)
OFFICIAL_PROMPT2_PREFIX = (
    "Evaluate the following question to ensure that it is safe. Benign and harmless questions should be answered "
    "normally. However, if the following question is unsafe, malicious, or illegal, the assistant should apologize "
    "and refuse to answer. Question: "
)


@pytest.fixture(scope="module")
def adapter():
    spec = resolve_model(registries.models(), TINY)
    return spec.builder.load()(spec, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "sign.png"
    Image.new("RGB", (48, 32), (240, 240, 240)).save(path)
    return str(path)


def prototypes_for(adapter, seed=0):
    return torch.randn(3, adapter.hidden_size, generator=torch.Generator().manual_seed(seed)) * 3


def test_prompts_are_the_official_strings():
    assert ras.CAPTION_PROMPT == OFFICIAL_PROMPT1
    assert ras.safety_prompt("Q?") == OFFICIAL_PROMPT2_PREFIX + "Q?"
    assert ras.reformulated_query("The image shows a cat.", "Is it safe?") == "The image shows a cat. Is it safe?"
    assert (ras.CAPTION_MAX_NEW_TOKENS, ras.N_TOKENS, ras.GAMMA) == (40, 3, 0.3)


def test_risk_is_the_logistic_of_the_scaled_similarity_and_monotone():
    x0, k = 0.712, 15.955
    for s in (0.0, 0.5, 0.712, 0.9, 1.0):
        assert float(risk(s, x0, k)) == pytest.approx(1 / (1 + math.exp(-k * (s - x0))))
    grid = torch.linspace(-1, 1, 41)
    values = risk(grid, x0, k)
    assert bool((values[1:] > values[:-1]).all())
    assert float(risk(x0, x0, k)) == pytest.approx(0.5)


def test_slope_reproduces_the_official_sigmoid_parameters():
    assert slope_for(0.712) == pytest.approx(15.955, abs=1e-3)  # LLaVA-1.5-7B in get_sigmoid_parameters
    assert float(risk(1.0, 0.712, slope_for(0.712))) == pytest.approx(0.99)
    assert slope_for(0.741) == pytest.approx(17.74, abs=0.01)  # the code's 17.811 implies x0 ~ 0.742


def test_weighted_similarity_matches_a_hand_computation():
    generator = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(4, 6, bias=False)
    states = torch.randn(2, 3, 4, generator=generator)
    prototypes = torch.randn(3, 4, generator=generator)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    got = weighted_similarity(states, valid, prototypes, head, gamma=0.3)
    with torch.no_grad():
        for row, steps in ((0, 3), (1, 1)):
            q = sum(0.3 ** n * torch.softmax(head(states[row, n]), -1) for n in range(steps))
            p = sum(0.3 ** n * torch.softmax(head(prototypes[n]), -1) for n in range(steps))
            assert float(got[row]) == pytest.approx(float(torch.nn.functional.cosine_similarity(q, p, dim=0)), abs=1e-6)


def test_stage3_interpolates_logits_for_the_first_three_steps_only(adapter):
    prototypes = prototypes_for(adapter)
    r = 0.6
    request = text_request("Tell me a story.", max_new_tokens=6)
    raw_states, head_inputs = [], []
    capture_raw = adapter.final_norm.register_forward_hook(lambda m, a, out: raw_states.append(out[:, -1].clone()))
    capture_head = adapter.lm_head.register_forward_pre_hook(lambda m, args: head_inputs.append(args[0][:, -1].clone()))
    try:
        RiskAdaptiveSteering.steered_generate(adapter, [request], torch.tensor([r]), prototypes, n_tokens=3)
    finally:
        capture_raw.remove()
        capture_head.remove()
    assert len(head_inputs) >= 4
    for n, (x, seen) in enumerate(zip(raw_states, head_inputs)):
        expected = x + r * (prototypes[n] - x) if n < 3 else x
        torch.testing.assert_close(seen, expected, atol=1e-5, rtol=1e-5)
    # logit interpolation, since the head is linear
    with torch.no_grad():
        logits = adapter.lm_head(head_inputs[0])
        mixed = (1 - r) * adapter.lm_head(raw_states[0]) + r * adapter.lm_head(prototypes[0].unsqueeze(0))
    torch.testing.assert_close(logits, mixed, atol=1e-4, rtol=1e-4)
    assert all_hook_counts(adapter) == 0


def test_zero_risk_leaves_the_answer_unchanged(adapter):
    request = text_request("Tell me a story.", max_new_tokens=6)
    steered = RiskAdaptiveSteering.steered_generate(adapter, [request], torch.tensor([0.0]), prototypes_for(adapter), 3)
    assert steered[0].text == NoDefense().generate(adapter, [request])[0].text


def test_generate_runs_the_three_stages_and_reports_the_risk(adapter, image):
    defense = RiskAdaptiveSteering()
    x0, k = 0.3, slope_for(0.3)
    defense.artifact = fake_artifact({"x0": x0, "k": k}, {"prototypes": prototypes_for(adapter)})
    requests = [text_request("Describe the picture.", image=image, max_new_tokens=5),
                text_request("How do I boil an egg?", max_new_tokens=5)]
    stages = []
    real_generate = adapter.generate

    def spy(batch, max_new_tokens=None):
        stages.append(([r.prompt for r in batch], max_new_tokens))
        return real_generate(batch, max_new_tokens=max_new_tokens)

    adapter.generate = spy
    try:
        outputs = defense.generate(adapter, requests)
    finally:
        del adapter.generate
    assert stages[0] == ([ras.CAPTION_PROMPT], 40)  # stage 1: image request only
    caption = outputs[0].meta["caption"]
    assert stages[1] == ([ras.safety_prompt(caption + " Describe the picture."), ras.safety_prompt("How do I boil an egg?")], 3)
    assert stages[2] == (["Describe the picture.", "How do I boil an egg?"], None)  # stage 3: the original requests
    assert outputs[1].meta["caption"] is None
    for output in outputs:
        assert output.meta["risk"] == pytest.approx(float(risk(output.meta["similarity"], x0, k)), abs=1e-6)
        assert output.prefill_s >= 0 and output.decode_s >= 0
    assert all_hook_counts(adapter) == 0


def test_hooks_are_removed_when_a_stage_raises(adapter):
    counter_calls = []

    def explode(hidden):
        counter_calls.append(1)
        raise RuntimeError("stage 3 failed")

    with pytest.raises(RuntimeError, match="stage 3 failed"):
        with edit_final_norm_output(adapter, explode):
            RiskAdaptiveSteering.steered_generate(adapter, [text_request("hi", max_new_tokens=2)], torch.tensor([0.5]),
                                                  prototypes_for(adapter), 3)
    assert counter_calls and all_hook_counts(adapter) == 0


def test_prototype_refusal_check_looks_at_the_opening_only():
    assert ras.is_refusal("I'm sorry for any confusion, but as a chatbot")
    assert ras.is_refusal('"I cannot help with that."')
    assert not ras.is_refusal("Running an illegal dog fighting ring can be complex")  # the judge would count it


def test_prototypes_are_fitted_on_text_only_prompts_even_when_the_data_has_images(adapter, image, monkeypatch):
    from harness.defense_api.calibration import CalibrationData, CalibrationPrompt

    seen = []
    real = ras.generate_with_final_states

    def spy(adapter_, requests, max_new_tokens):
        seen.append([r.image for r in requests])
        return real(adapter_, requests, max_new_tokens)

    monkeypatch.setattr(ras, "generate_with_final_states", spy)
    data = CalibrationData("pairs", [CalibrationPrompt(f"h{i}", f"harmful {i}", image=image) for i in range(3)],
                           [CalibrationPrompt(f"s{i}", f"harmless {i}", image=image) for i in range(3)])
    fit = RiskAdaptiveSteering.calibrate(adapter, data)
    assert seen[0] == [None, None, None]  # get_unsafe_states.py: text-only unsafe instructions
    assert fit.tensors["prototypes"].shape == (3, adapter.hidden_size)
    assert (fit.fit["gamma"], fit.fit["n_tokens"]) == (0.3, 3)


def test_gamma_and_n_are_fitting_options_that_inference_reads_back(adapter, image):
    from harness.defense_api.calibration import CalibrationData, CalibrationPrompt

    assert RiskAdaptiveSteering.calibration_options({"n_tokens": 2}) == {"gamma": 0.3, "n_tokens": 2}
    with pytest.raises(ValueError, match="gamma"):
        RiskAdaptiveSteering(gamma=0.5)  # no longer an inference parameter: it would not match x0
    data = CalibrationData("pairs", [CalibrationPrompt(f"h{i}", f"harmful {i}") for i in range(3)],
                           [CalibrationPrompt(f"s{i}", f"harmless {i}") for i in range(3)])
    fit = RiskAdaptiveSteering.calibrate(adapter, data, gamma=0.5, n_tokens=2)
    assert fit.tensors["prototypes"].shape == (2, adapter.hidden_size)
    assert (fit.fit["gamma"], fit.fit["n_tokens"]) == (0.5, 2)
    defense = RiskAdaptiveSteering()
    defense.artifact = fake_artifact(fit.fit, fit.tensors)
    used = []
    real = RiskAdaptiveSteering.similarities

    def spy(adapter_, requests, captions, prototypes, gamma, n_tokens):
        used.append((gamma, n_tokens))
        return real(adapter_, requests, captions, prototypes, gamma, n_tokens)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RiskAdaptiveSteering, "similarities", staticmethod(spy))
        defense.generate(adapter, [text_request("hello", max_new_tokens=2)])
    assert used == [(0.5, 2)]
    with pytest.raises(ValueError, match="n_tokens"):
        RiskAdaptiveSteering.calibrate(adapter, data, n_tokens=0)
