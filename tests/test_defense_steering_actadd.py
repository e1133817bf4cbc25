"""refusal-direction (ActAdd): the added direction moves the logits exactly as a hand-run forward predicts."""

from __future__ import annotations

import math

import pytest
import torch

from harness.defenses.none import NoDefense
from harness.defenses.refusal_direction import RefusalDirection, kl_divergence, refusal_scores, refusal_token_ids
from harness import registries
from harness.models.catalog import resolve_model
from harness.defense_api.steering import all_hook_counts, encode_texts, template_suffix, text_request
from test_steering_hooks import FirstStepLogits, fake_artifact, layer_calls, run_rest_by_hand

TINY = "tiny-random-llava"


@pytest.fixture(scope="module")
def adapter():
    spec = resolve_model(registries.models(), TINY)
    return spec.builder.load()(spec, dtype="float32", device="cpu")


def defense_with(direction, layer, coeff):
    defense = RefusalDirection(coeff=coeff)
    defense.artifact = fake_artifact({"layer": layer}, {"direction": direction})
    return defense


def test_actadd_changes_the_next_token_logits_by_the_hand_computed_amount(adapter):
    direction = torch.randn(adapter.hidden_size, generator=torch.Generator().manual_seed(3)) * 2
    layer, coeff = 1, 0.75
    request = text_request("What is the capital of France?", max_new_tokens=3)
    inputs = encode_texts(adapter, [adapter.prompt_text(request)], [None])
    calls = layer_calls(adapter, inputs)
    expected = run_rest_by_hand(adapter, calls, layer, calls[layer][0][0] + coeff * direction)
    with FirstStepLogits(adapter) as seen:
        defense_with(direction, layer, coeff).generate(adapter, [request])
    torch.testing.assert_close(seen.logits[0], expected, atol=1e-4, rtol=1e-4)
    plain = run_rest_by_hand(adapter, calls, layer, calls[layer][0][0])
    assert (seen.logits[0] - plain).abs().max() > 1e-2
    assert all_hook_counts(adapter) == 0


def test_zero_coefficient_is_the_undefended_model(adapter):
    requests = [text_request("Name a fruit.", max_new_tokens=5)]
    direction = torch.randn(adapter.hidden_size) * 10
    assert [o.text for o in defense_with(direction, 1, 0.0).generate(adapter, requests)] == \
        [o.text for o in NoDefense().generate(adapter, requests)]


def test_hooks_are_removed_when_generation_raises(adapter, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no answer")

    monkeypatch.setattr(adapter, "generate", broken)
    with pytest.raises(RuntimeError, match="no answer"):
        defense_with(torch.ones(adapter.hidden_size), 1, 1.0).generate(adapter, [text_request("x")])
    monkeypatch.undo()
    assert all_hook_counts(adapter) == 0


def test_refusal_score_and_kl_follow_the_code_formulas():
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    probs = torch.softmax(logits.double(), -1)[0]
    refusal = float(probs[0] + probs[3])
    assert float(refusal_scores(logits, [0, 3])[0]) == pytest.approx(math.log(refusal + 1e-8) - math.log(1 - refusal + 1e-8))
    assert float(kl_divergence(logits, logits)[0]) == pytest.approx(0.0, abs=1e-9)
    assert float(kl_divergence(logits, torch.zeros_like(logits))[0]) > 0


def test_post_instruction_positions_come_from_the_chat_template(adapter):
    suffix = template_suffix(adapter)
    assert suffix.endswith("ASSISTANT:") and "sentinel" not in suffix
    assert len(refusal_token_ids(adapter)) >= 1


def test_train_and_validation_prompts_are_filtered_by_refusal_score_as_in_the_code():
    from harness.defenses.refusal_direction import filter_by_refusal

    harmful, harmless = ["h0", "h1", "h2", "h3"], ["s0", "s1", "s2"]
    kept = filter_by_refusal(harmful, torch.tensor([0.5, -1.0, 2.0, 0.0]), harmless, torch.tensor([-0.1, 0.3, -2.0]))
    assert kept == (["h0", "h2"], ["s0", "s2"], True)  # harmful kept if > 0, harmless if < 0 (0 is dropped)
    # fewer than two left on a side: both splits unfiltered, and the manifest says so
    assert filter_by_refusal(harmful, torch.tensor([0.5, -1.0, -2.0, 0.0]), harmless, torch.tensor([-1.0] * 3)) == (
        harmful, harmless, False)


def test_calibration_filters_the_held_out_split_too(adapter, monkeypatch):
    import harness.defenses.refusal_direction as refusal_direction
    from harness.defense_api.calibration import load_builtin_data

    calls = []
    real = refusal_direction.filter_by_refusal

    def spy(harmful, harmful_scores, harmless, harmless_scores):
        calls.append(([p.id for p in harmful], [p.id for p in harmless]))
        return real(harmful, harmful_scores, harmless, harmless_scores)

    monkeypatch.setattr(refusal_direction, "filter_by_refusal", spy)
    monkeypatch.setattr(refusal_direction, "SELECTION_PROMPTS", 1)  # a few candidates: keep it fast
    data = load_builtin_data(limit=10)
    fit = RefusalDirection.calibrate(adapter, data).fit
    train, val = data.split("train"), data.split("val")
    assert calls == [([p.id for p in train.harmful], [p.id for p in train.harmless]),
                     ([val.harmful[0].id], [val.harmless[0].id])]
    assert fit["val_filtered"] is False and fit["val_counts"] == {"harmful": 1, "harmless": 1}
