"""ASTRA: the projection steering formula, and its hook on the residual stream."""

from __future__ import annotations

import pytest
import torch

from harness.defenses.astra import Astra, project_away, steer_layer
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


def test_projection_removes_the_clamped_cosine_share_of_the_norm():
    h = torch.tensor([[3.0, 4.0]])
    v = torch.tensor([2.0, 0.0])
    reference = torch.tensor([0.0, 4.0])
    # h - ref = (3, 0): cos with v = 1, so c = 1 * ||h|| * alpha = 5 * 0.1
    torch.testing.assert_close(project_away(h, v, reference, 0.1), torch.tensor([[3.0 - 0.5, 4.0]]))
    # pointing away from v: the cosine is clamped at 0, nothing changes
    torch.testing.assert_close(project_away(torch.tensor([[-3.0, 4.0]]), v, reference, 0.1), torch.tensor([[-3.0, 4.0]]))
    assert steer_layer(40) == 20 and steer_layer(28) == 14  # the code's layers for LLaVA-13B and Qwen2-VL-7B


def test_astra_hook_equals_the_hand_computed_forward(adapter):
    generator = torch.Generator().manual_seed(4)
    vector, reference = torch.randn(adapter.hidden_size, generator=generator), torch.randn(adapter.hidden_size, generator=generator)
    layer, alpha = 2, 0.5
    defense = Astra(alpha=alpha)
    defense.artifact = fake_artifact({"layer": layer}, {"steering_vector": vector, "reference": reference})
    request = text_request("Tell me about rivers.", max_new_tokens=3)
    inputs = encode_texts(adapter, [adapter.prompt_text(request)], [None])
    calls = layer_calls(adapter, inputs)
    hidden = calls[layer][0][0].clone()  # hidden_states[L] = output of block L - 1 = input of block L
    hidden[:, -1, :] = project_away(hidden[:, -1, :], vector, reference, alpha)
    expected = run_rest_by_hand(adapter, calls, layer, hidden)
    with FirstStepLogits(adapter) as seen:
        outputs = defense.generate(adapter, [request])
    torch.testing.assert_close(seen.logits[0], expected, atol=1e-4, rtol=1e-4)
    assert outputs[0].meta["prefill_shift_norm"] == pytest.approx(
        float((hidden[:, -1] - calls[layer][0][0][:, -1]).norm()), rel=1e-4, abs=1e-6)
    assert all_hook_counts(adapter) == 0


def test_zero_alpha_is_the_undefended_model(adapter):
    defense = Astra(alpha=0.0)
    defense.artifact = fake_artifact({"layer": 2}, {"steering_vector": torch.ones(adapter.hidden_size),
                                                   "reference": torch.zeros(adapter.hidden_size)})
    requests = [text_request("Tell me about rivers.", max_new_tokens=5)]
    assert [o.text for o in defense.generate(adapter, requests)] == [o.text for o in NoDefense().generate(adapter, requests)]


def test_alpha_is_the_codes_per_model_value_stored_by_calibration(adapter):
    from types import SimpleNamespace

    from harness.defenses.astra import alpha_for

    def model(name):
        spec = resolve_model(registries.models(), name)
        return SimpleNamespace(spec=spec, family=spec.family)

    # the code's README: LLaVA-v1.5 --alpha 10 (toxicity), Qwen2-VL --alpha 7
    assert alpha_for(model("llava-1.5-7b"))[0] == 10.0 and alpha_for(model("llava-hf/llava-1.5-13b-hf"))[0] == 10.0
    assert alpha_for(model("qwen2-vl-2b"))[0] == 7.0
    assert alpha_for(model("llava-ov")) == (7.0, "no official value for this model: Qwen2-VL's 7 (README), a choice")
    # inference takes the stored value unless alpha is given: a stored 0 leaves the model as it is
    vector, reference = torch.ones(adapter.hidden_size), torch.zeros(adapter.hidden_size)
    requests = [text_request("Tell me about rivers.", max_new_tokens=5)]
    stored_zero = Astra()
    stored_zero.artifact = fake_artifact({"layer": 2, "alpha": 0.0}, {"steering_vector": vector, "reference": reference})
    outputs = stored_zero.generate(adapter, requests)
    assert [o.text for o in outputs] == [o.text for o in NoDefense().generate(adapter, requests)]
    assert outputs[0].meta["alpha"] == 0.0
    given = Astra(alpha=0.5)
    given.artifact = stored_zero.artifact
    assert given.generate(adapter, requests)[0].meta["alpha"] == 0.5


def test_hooks_are_removed_when_generation_raises(adapter, monkeypatch):
    defense = Astra()
    defense.artifact = fake_artifact({"layer": 2, "alpha": 7.0}, {"steering_vector": torch.ones(adapter.hidden_size),
                                                   "reference": torch.zeros(adapter.hidden_size)})
    assert_hooks_removed_when_generation_raises(defense, adapter, [text_request("x")], monkeypatch)
