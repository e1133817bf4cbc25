"""harness/steering.py on a tiny random Llama-based LLaVA: edits equal a hand-run forward, hooks always go."""

from __future__ import annotations

import pytest
import torch

from harness import registries
from harness.models.catalog import resolve_model
from harness.defense_api.steering import (
    StepCounter,
    all_hook_counts,
    edit_final_norm_output,
    edit_layer_input,
    edit_layer_output,
    encode_texts,
    last_logits,
    read_residuals,
    rendered_with,
    text_request,
)

TINY = "tiny-random-llava"


@pytest.fixture(scope="module")
def adapter():
    spec = resolve_model(registries.models(), TINY)
    return spec.builder.load()(spec, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def inputs(adapter):
    return encode_texts(adapter, [adapter.prompt_text(text_request("What is the capital of France?"))], [None])


def layer_calls(adapter, inputs):
    """(args, kwargs) each decoder layer received in an unhooked forward pass."""
    calls = {}

    def keeper(index):
        def hook(module, args, kwargs):
            calls[index] = (args, kwargs)

        return hook

    handles = [layer.register_forward_pre_hook(keeper(i), with_kwargs=True) for i, layer in enumerate(adapter.decoder_layers)]
    try:
        with torch.inference_mode():
            adapter.model(**inputs, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def run_rest_by_hand(adapter, calls, start, hidden, add_at_inputs=None):
    """Blocks start.. with the recorded arguments, then final norm and LM head: last-position logits."""
    add_at_inputs = add_at_inputs or {}
    with torch.inference_mode():
        for index in range(start, adapter.num_layers):
            if index in add_at_inputs:
                hidden = hidden + add_at_inputs[index]
            args, kwargs = calls[index]
            out = adapter.decoder_layers[index](hidden, *args[1:], **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return adapter.lm_head(adapter.final_norm(hidden))[:, -1, :].float()


def test_adding_a_vector_at_a_layer_output_equals_the_hand_computed_logits(adapter, inputs):
    vector = torch.randn(adapter.hidden_size, generator=torch.Generator().manual_seed(1))
    calls = layer_calls(adapter, inputs)
    layer = 0
    expected = run_rest_by_hand(adapter, calls, layer + 1, calls[layer + 1][0][0] + vector)
    with edit_layer_output(adapter, layer, lambda hidden: hidden + vector):
        steered = last_logits(adapter, inputs)
    plain = last_logits(adapter, inputs)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)
    assert (steered - plain).abs().max() > 1e-2  # the edit did change the distribution


def test_adding_a_vector_at_a_layer_input_equals_the_hand_computed_logits(adapter, inputs):
    vector = torch.randn(adapter.hidden_size, generator=torch.Generator().manual_seed(2))
    calls = layer_calls(adapter, inputs)
    layer = 2
    expected = run_rest_by_hand(adapter, calls, layer, calls[layer][0][0] + vector)
    with edit_layer_input(adapter, layer, lambda hidden: hidden + vector):
        steered = last_logits(adapter, inputs)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(steered, last_logits(adapter, inputs), atol=1e-3)


def test_residual_indexing_matches_hugging_face_hidden_states(adapter, inputs):
    residuals = read_residuals(adapter, inputs, [0, 1, 2, 3], with_final=True)
    with torch.inference_mode():
        reference = adapter.model(**inputs, use_cache=False, output_hidden_states=True).hidden_states
    for layer in (0, 1, 2):
        torch.testing.assert_close(residuals.states[layer], reference[layer].float())
    expected_final = adapter.final_norm(residuals.states[3])
    torch.testing.assert_close(residuals.final, expected_final.float(), atol=1e-5, rtol=1e-5)


def test_hooks_are_removed_after_use_and_when_the_forward_raises(adapter, inputs):
    assert all_hook_counts(adapter) == 0
    with edit_layer_output(adapter, 1, lambda hidden: None), edit_final_norm_output(adapter, lambda hidden: None):
        assert all_hook_counts(adapter) == 2
    assert all_hook_counts(adapter) == 0

    def explode(hidden):
        raise RuntimeError("boom inside the hook")

    with pytest.raises(RuntimeError, match="boom inside the hook"):
        with edit_layer_input(adapter, 1, explode):
            adapter.generate([text_request("hello", max_new_tokens=3)])
    assert all_hook_counts(adapter) == 0
    # and the model still answers exactly as before
    first = adapter.generate([text_request("hello", max_new_tokens=3)])[0].text
    assert first == adapter.generate([text_request("hello", max_new_tokens=3)])[0].text


def test_step_counter_numbers_forward_passes_and_resets(adapter):
    counter = StepCounter()
    seen = []
    with counter.counting(adapter), edit_final_norm_output(adapter, lambda hidden: seen.append((counter.step, hidden.shape[1]))):
        adapter.generate([text_request("count with me", max_new_tokens=4)], max_new_tokens=4)
    steps = [step for step, _ in seen]
    assert steps == list(range(len(steps))) and 1 <= len(steps) <= 4
    assert seen[0][1] > 1 and all(length == 1 for _, length in seen[1:])  # prefill, then one token a step
    seen.clear()
    with counter.counting(adapter), edit_final_norm_output(adapter, lambda hidden: seen.append((counter.step, 0))):
        adapter.generate([text_request("again", max_new_tokens=2)], max_new_tokens=2)
    assert seen[0][0] == 0
    assert all_hook_counts(adapter) == 0


def test_rendered_with_overrides_the_template_only_inside(adapter):
    request = text_request("hi")
    original = adapter.prompt_text(request)
    with rendered_with(adapter, lambda r: "custom " + r.prompt):
        assert adapter.prompt_text(request) == "custom hi"
    assert adapter.prompt_text(request) == original
    with pytest.raises(ValueError):
        with rendered_with(adapter, lambda r: "x"):
            raise ValueError("stop")
    assert "prompt_text" not in vars(adapter)


# ------------------------------------------------------------------------ helpers for the defense tests
def assert_hooks_removed_when_generation_raises(defense, adapter, requests, monkeypatch):
    """``defense.generate`` with a model whose generation raises: the error propagates, no hook stays."""

    def broken(*args, **kwargs):
        raise RuntimeError("generation failed")

    monkeypatch.setattr(adapter, "generate", broken)
    with pytest.raises(RuntimeError, match="generation failed"):
        defense.generate(adapter, requests)
    monkeypatch.undo()
    assert all_hook_counts(adapter) == 0


def fake_artifact(fit, tensors):
    """A loaded calibration built in memory, for exact tests of a defense's inference path."""
    from pathlib import Path

    from harness.defense_api.calibration import Artifact

    return Artifact(path=Path("in-memory"), tensors=tensors, manifest={"fit": fit}, hashes={"artifact.safetensors": "test"})


class FirstStepLogits:
    """Records the final-norm output (the LM head's unedited input) and the LM head's output of the
    first forward pass of a generation, at the last position."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.normed = []
        self.logits = []

    def __enter__(self):
        self.handles = [
            self.adapter.final_norm.register_forward_hook(lambda m, a, out: self.normed.append(out[:, -1, :].detach().clone())),
            self.adapter.lm_head.register_forward_hook(lambda m, a, out: self.logits.append(out[:, -1, :].detach().float().clone())),
        ]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
