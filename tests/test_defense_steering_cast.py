"""CAST: condition check, inverted comparator, behavior vectors added exactly where the code adds them."""

from __future__ import annotations

import pytest
import torch

from harness.defenses.cast import (
    ConditionalActivationSteering,
    behavior_layers,
    best_condition_point,
    condition_search_layers,
    condition_similarity,
    pca_center_direction,
    pca_pairwise_direction,
)
from harness.defenses.none import NoDefense
from harness import registries
from harness.models.catalog import resolve_model
from harness.defense_api.steering import all_hook_counts, encode_texts, text_request
from test_steering_hooks import (
    FirstStepLogits,
    assert_hooks_removed_when_generation_raises,
    fake_artifact,
    layer_calls,
    run_rest_by_hand,
)

TINY = "tiny-random-llava"


@pytest.fixture(scope="module")
def adapter():
    spec = resolve_model(registries.models(), TINY)
    return spec.builder.load()(spec, dtype="float32", device="cpu")


def defense_with(adapter, threshold, when, strength=1.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    condition = torch.nn.functional.normalize(torch.randn(adapter.hidden_size, generator=generator), dim=0)
    tensors = {"condition_vector": condition}
    for layer in (1, 2):
        tensors[f"behavior_vector.{layer}"] = torch.randn(adapter.hidden_size, generator=generator)
    fit = {"condition": {"layer": 1, "threshold": threshold, "condition_holds_when": when}, "behavior_layers": [1, 2]}
    defense = ConditionalActivationSteering(behavior_strength=strength)
    defense.artifact = fake_artifact(fit, tensors)
    return defense, tensors


def test_condition_similarity_is_cos_of_h_and_tanh_of_its_projection():
    h = torch.tensor([[1.0, 2.0, 0.0]])
    c = torch.tensor([0.0, 1.0, 0.0])
    projected = torch.tanh(torch.tensor([0.0, 2.0, 0.0]))
    expected = torch.nn.functional.cosine_similarity(h, projected.unsqueeze(0))
    torch.testing.assert_close(condition_similarity(h, c), expected)
    # even in h (the projection flips with h), zero for states orthogonal to the condition vector
    torch.testing.assert_close(condition_similarity(-h, c), expected)
    assert float(condition_similarity(torch.tensor([[1.0, 0.0, 3.0]]), c)) == pytest.approx(0.0, abs=1e-7)


def test_pca_center_direction_points_from_negatives_to_positives():
    generator = torch.Generator().manual_seed(0)
    axis = torch.tensor([0.0, 0.0, 1.0, 0.0])
    positive = torch.randn(20, 4, generator=generator) * 0.1 + 3 * axis
    negative = torch.randn(20, 4, generator=generator) * 0.1 - 3 * axis
    direction = pca_center_direction(positive, negative)
    assert float(direction @ axis) > 0.99
    assert float(direction.norm()) == pytest.approx(1.0)


def test_pca_pairwise_direction_ignores_what_a_pair_shares():
    generator = torch.Generator().manual_seed(1)
    topics = torch.randn(30, 6, generator=generator) * 10  # large shared (topic) variation per pair
    harm = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    positive, negative = topics + harm, topics - harm
    assert float(pca_pairwise_direction(positive, negative) @ harm) > 0.99
    assert abs(float(pca_center_direction(positive, negative) @ harm)) < 0.5  # the topic axis wins there


def test_best_condition_point_finds_the_separating_rule():
    sims_harmful = {1: torch.tensor([0.30, 0.35, 0.40]), 2: torch.tensor([0.1, 0.5, 0.2])}
    sims_harmless = {1: torch.tensor([0.05, 0.10, 0.12]), 2: torch.tensor([0.3, 0.2, 0.4])}
    best = best_condition_point(sims_harmful, sims_harmless)
    assert best["layer"] == 1 and best["f1"] == pytest.approx(1.0)
    assert best["condition_holds_when"] == "above" and best["code_comparator"] == "smaller"  # inverted naming
    assert 0.12 < best["threshold"] < 0.30


def test_layer_ranges_scale_the_quickstart_choices():
    assert condition_search_layers(32) == list(range(1, 15))
    assert behavior_layers(32) == list(range(15, 24))
    assert behavior_layers(3) == [1, 2] and condition_search_layers(3) == [1]


def test_condition_met_adds_the_behavior_vectors_at_the_behavior_layer_inputs(adapter):
    defense, tensors = defense_with(adapter, threshold=-2.0, when="above", strength=1.5)  # always holds
    request = text_request("How are you today?", max_new_tokens=3)
    inputs = encode_texts(adapter, [adapter.prompt_text(request)], [None])
    calls = layer_calls(adapter, inputs)
    adds = {layer: 1.5 * tensors[f"behavior_vector.{layer}"] for layer in (1, 2)}
    expected = run_rest_by_hand(adapter, calls, 1, calls[1][0][0], add_at_inputs=adds)
    with FirstStepLogits(adapter) as seen:
        outputs = defense.generate(adapter, [request])
    torch.testing.assert_close(seen.logits[0], expected, atol=1e-4, rtol=1e-4)
    assert outputs[0].meta["condition_met"] is True
    assert all_hook_counts(adapter) == 0


def test_condition_not_met_leaves_the_model_untouched(adapter):
    defense, _ = defense_with(adapter, threshold=2.0, when="above")  # cos <= 1: never holds
    requests = [text_request("How are you today?", max_new_tokens=5), text_request("Count to three.", max_new_tokens=5)]
    outputs = defense.generate(adapter, requests)
    assert [o.text for o in outputs] == [o.text for o in NoDefense().generate(adapter, requests)]
    assert all(o.meta["condition_met"] is False for o in outputs)
    # the recorded similarity is the formula on the mean prompt state at the condition layer input
    from harness.defense_api.steering import mean_token_states

    mean = mean_token_states(adapter, requests[:1], [1])[1]
    expected = condition_similarity(mean, defense.artifact.tensors["condition_vector"])
    assert outputs[0].meta["condition_similarity"] == pytest.approx(float(expected[0]), abs=1e-5)


def test_hooks_are_removed_when_generation_raises(adapter, monkeypatch):
    defense, _ = defense_with(adapter, threshold=-2.0, when="above")
    assert_hooks_removed_when_generation_raises(defense, adapter, [text_request("x")], monkeypatch)


def test_ooi_normalisation_is_decided_per_row(monkeypatch):
    """A row whose norm shrinks under the behavior vector is left alone, even beside a row whose norm
    grows (which is rescaled back to its own norm): a row's output never depends on its batch."""
    import contextlib

    import harness.defenses.cast as cast

    hooks = []

    class FirstStep:
        step = 0

        @contextlib.contextmanager
        def counting(self, adapter):
            yield self

        def token_mask(self, hidden):
            return hidden.new_ones(hidden.shape[:2])

    monkeypatch.setattr(cast, "edit_layer_input", lambda adapter, layer, fn: hooks.append(fn) or contextlib.nullcontext())
    monkeypatch.setattr(cast, "StepCounter", FirstStep)
    vector = torch.tensor([1.0, 0.0, 0.0, 0.0])
    defense = ConditionalActivationSteering(behavior_strength=1.0, use_ooi_preventive_normalization=True)
    defense.artifact = fake_artifact({"condition": {"layer": 0, "threshold": 2.0, "condition_holds_when": "below"},
                                      "behavior_layers": [1]}, {"condition_vector": vector, "behavior_vector.1": vector})

    class NoModel:
        device = torch.device("cpu")

        def generate(self, requests):
            return []

    defense.generate(NoModel(), [])
    check, behave = hooks
    shrinks = torch.tensor([[[-3.0, 1.0, 0.0, 0.0]]])  # + v -> norm sqrt(5): kept
    grows = torch.tensor([[[3.0, 1.0, 0.0, 0.0]]])  # + v -> norm sqrt(17): rescaled to sqrt(10)
    batch = torch.cat([shrinks, grows])
    check(batch)
    out = behave(batch)
    torch.testing.assert_close(out[0, 0], torch.tensor([-2.0, 1.0, 0.0, 0.0]))
    assert float(out[1, 0].norm()) == pytest.approx(10 ** 0.5)
    check(shrinks)
    torch.testing.assert_close(behave(shrinks)[0], out[0])
