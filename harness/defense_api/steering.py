"""Forward hooks for activation-steering defenses, and the small model helpers they share.

Every hook is registered inside a context manager that removes it in ``finally``: a generation that
raises leaves the model exactly as it found it. Hooks act on the handles :class:`VLMAdapter` exposes:

* ``decoder_layers[i]`` *input* (a forward pre-hook): the residual stream entering block ``i``, which is
  Hugging Face's ``hidden_states[i]``;
* ``decoder_layers[i]`` *output* (a forward hook): the residual stream leaving block ``i``
  (``hidden_states[i + 1]`` for every block but the last, whose output is normed first);
* ``final_norm`` output: the post-norm last hidden state that the LM head reads;
* ``lm_head`` input: the same tensor, seen by the head (for edits of the output projection).

Generation is greedy with a KV cache: the first forward pass (step 0, the prefill) sees the whole
prompt, and each later pass (step n) sees one new token. :class:`StepCounter` counts passes
explicitly, so defenses never infer the step from cache lengths.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import Request

# edit(hidden [batch, seq, dim]) -> the new hidden (or None after an in-place edit)
HiddenEdit = Callable[[torch.Tensor], "torch.Tensor | None"]


# ----------------------------------------------------------------------------------- registration
@contextlib.contextmanager
def registered(*registrations: Callable[[], Any]) -> Iterator[None]:
    """Run each ``registration()`` (which registers a hook and returns its handle); remove them all on exit."""
    handles = []
    try:
        for register in registrations:
            handles.append(register())
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()


def _first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


def _replace_first(value: Any, tensor: torch.Tensor) -> Any:
    """A module's output (or positional args) with its first tensor replaced, keeping its container type."""
    if isinstance(value, tuple):
        return (tensor, *value[1:])
    if isinstance(value, list):
        return [tensor, *value[1:]]
    return tensor


def _mark(hook: Callable[..., Any]) -> Callable[..., Any]:
    """Tag a hook as ours, so that checks can tell it from hooks transformers installs itself."""
    hook.harness_steering = True  # type: ignore[attr-defined]
    return hook


def _output_editor(edit: HiddenEdit) -> Callable[..., Any]:
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        hidden = _first_tensor(output)
        edited = edit(hidden)
        return _replace_first(output, hidden if edited is None else edited)

    return _mark(hook)


def _input_editor(edit: HiddenEdit) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
        if args:
            hidden = args[0]
            edited = edit(hidden)
            return (_replace_first(args, hidden if edited is None else edited), kwargs)
        hidden = kwargs["hidden_states"]  # decoder layers called with keywords only
        edited = edit(hidden)
        return (args, {**kwargs, "hidden_states": hidden if edited is None else edited})

    return _mark(hook)


def edit_output(module: nn.Module, edit: HiddenEdit) -> contextlib.AbstractContextManager[None]:
    """While active, ``module``'s (first) output tensor is replaced by ``edit(output)``."""
    return registered(lambda: module.register_forward_hook(_output_editor(edit)))


def edit_input(module: nn.Module, edit: HiddenEdit) -> contextlib.AbstractContextManager[None]:
    """While active, ``module``'s first input tensor is replaced by ``edit(input)``."""
    return registered(lambda: module.register_forward_pre_hook(_input_editor(edit), with_kwargs=True))


def edit_layer_output(adapter: "VLMAdapter", layer: int, edit: HiddenEdit) -> contextlib.AbstractContextManager[None]:
    return edit_output(adapter.decoder_layers[layer], edit)


def edit_layer_input(adapter: "VLMAdapter", layer: int, edit: HiddenEdit) -> contextlib.AbstractContextManager[None]:
    return edit_input(adapter.decoder_layers[layer], edit)


def edit_final_norm_output(adapter: "VLMAdapter", edit: HiddenEdit) -> contextlib.AbstractContextManager[None]:
    return edit_output(adapter.final_norm, edit)


def edit_lm_head_input(adapter: "VLMAdapter", edit: HiddenEdit) -> contextlib.AbstractContextManager[None]:
    return edit_input(adapter.lm_head, edit)


def hook_counts(module: nn.Module) -> int:
    """How many of our forward / pre-forward hooks a module carries (transformers adds its own output
    recorders on first use; those are not counted)."""
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return sum(1 for hook in hooks if getattr(hook, "harness_steering", False))


def all_hook_counts(adapter: "VLMAdapter") -> int:
    modules = [adapter.language_model, adapter.final_norm, adapter.lm_head, *adapter.decoder_layers]
    return sum(hook_counts(module) for module in modules)


# ----------------------------------------------------------------------------------- step counting
class StepCounter:
    """Counts forward passes of the text decoder: ``step`` is 0 during the prefill, n on the n-th decode.

    It also keeps the prefill's 2-D attention mask (when the decoder receives one), so that hooks can
    average over real tokens only (prompts are left-padded in a batch).
    """

    def __init__(self) -> None:
        self.calls = 0
        self.prompt_mask: torch.Tensor | None = None

    @property
    def step(self) -> int:
        return self.calls - 1

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.calls += 1
        if self.calls == 1:
            mask = kwargs.get("attention_mask")
            self.prompt_mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    @contextlib.contextmanager
    def counting(self, adapter: "VLMAdapter") -> Iterator["StepCounter"]:
        self.calls, self.prompt_mask = 0, None
        hook = _mark(lambda module, args, kwargs: self._hook(module, args, kwargs))
        with registered(lambda: adapter.language_model.register_forward_pre_hook(hook, with_kwargs=True)):
            yield self

    def token_mask(self, hidden: torch.Tensor) -> torch.Tensor:
        """[batch, seq] float mask of real prompt tokens for a prefill hidden state."""
        mask = self.prompt_mask
        if mask is None or mask.shape != hidden.shape[:2]:
            return hidden.new_ones(hidden.shape[:2])
        return mask.to(hidden.dtype)


# ----------------------------------------------------------------------------------- prompt rendering
@contextlib.contextmanager
def rendered_with(adapter: "VLMAdapter", render: Callable[["Request"], str]) -> Iterator[None]:
    """While active, ``adapter.generate``/``encode`` render requests with ``render`` instead of the chat
    template with a generation prompt (an instance attribute shadows the method; always removed)."""
    adapter.prompt_text = render  # type: ignore[method-assign]
    try:
        yield
    finally:
        del adapter.prompt_text


def render_messages(adapter: "VLMAdapter", request: "Request", *, add_generation_prompt: bool,
                    image_after_text: bool = False, assistant: str | None = None) -> str:
    """The chat template applied to a request, with choices the adapter's ``prompt_text`` does not offer:
    no generation prompt, the image placed after the text, or a finished assistant turn."""
    messages = adapter.chat_messages(request, image_after_text=image_after_text, assistant=assistant)
    return adapter.processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)


def resized_requests(requests: Sequence["Request"], size: int) -> list["Request"]:
    """The requests with each image replaced by a ``size`` x ``size`` copy (converted to RGB, then PIL's
    default bicubic ``resize``), written once as a content-named PNG under ``cache_dir()/resized/<size>``.
    ``size`` 0 leaves the requests as they are. Requests without an image are unchanged."""
    if not size:
        return list(requests)
    import dataclasses

    from PIL import Image

    from harness.core.images import load_rgb, materialize
    from harness.core.paths import cache_dir

    folder = cache_dir() / "resized" / str(int(size))
    done: dict[str, str] = {}
    out = []
    for request in requests:
        if request.image:
            if request.image not in done:
                image = load_rgb(request.image).resize((int(size), int(size)), Image.Resampling.BICUBIC)
                done[request.image] = str(materialize(image, folder))
            request = dataclasses.replace(request, image=done[request.image])
        out.append(request)
    return out


def encode_texts(adapter: "VLMAdapter", texts: Sequence[str], images: Sequence[str | None]) -> dict[str, torch.Tensor]:
    """Model inputs for already-rendered prompt texts: the adapter's own encoding path."""
    return adapter.encode_texts(list(texts), list(images))


# ----------------------------------------------------------------------------------- reading states
@dataclass
class Residuals:
    """Residual-stream states of one forward pass. ``states[l]`` is [batch, seq, dim], float32, on CPU:
    the input of decoder block l for l < num_layers, the last block's (pre-norm) output for l == num_layers."""

    states: dict[int, torch.Tensor]
    mask: torch.Tensor  # [batch, seq] 1 for real tokens (left padding is 0)
    final: torch.Tensor | None = None  # post-norm last hidden [batch, seq, dim] when asked for

    def last(self, layer: int) -> torch.Tensor:
        return self.states[layer][:, -1, :]

    def mean(self, layer: int) -> torch.Tensor:
        mask = self.mask.to(self.states[layer].dtype).unsqueeze(-1)
        return (self.states[layer] * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def read_residuals(adapter: "VLMAdapter", inputs: dict[str, torch.Tensor], layers: Sequence[int],
                   *, with_final: bool = False) -> Residuals:
    """One forward pass over ``inputs`` recording the residual stream at ``layers`` (see :class:`Residuals`)."""
    wanted = sorted(set(layers))
    captured: dict[int, torch.Tensor] = {}
    final: list[torch.Tensor] = []
    num_layers = adapter.num_layers

    def keep_input(layer: int) -> HiddenEdit:
        def record(hidden: torch.Tensor) -> None:
            captured[layer] = hidden.detach().float().cpu()

        return record

    def keep_output(hidden: torch.Tensor) -> None:
        captured[num_layers] = hidden.detach().float().cpu()

    def keep_final(hidden: torch.Tensor) -> None:
        final.append(hidden.detach().float().cpu())

    contexts = [edit_layer_input(adapter, layer, keep_input(layer)) for layer in wanted if layer < num_layers]
    if num_layers in wanted:
        contexts.append(edit_layer_output(adapter, num_layers - 1, keep_output))
    if with_final:
        contexts.append(edit_final_norm_output(adapter, keep_final))
    with contextlib.ExitStack() as stack, torch.inference_mode():
        for context in contexts:
            stack.enter_context(context)
        adapter.model(**inputs, use_cache=False, logits_to_keep=1)
    mask = inputs["attention_mask"].detach().cpu()
    return Residuals(captured, mask, final[0] if final else None)


def progress(iterable: Iterable[Any], total: int | None = None, description: str = "") -> Iterable[Any]:
    """A progress bar for calibration loops (minutes on a CPU): shown on a terminal, silent in logs."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, unit="batch", leave=False, disable=None)


def residuals_for_requests(adapter: "VLMAdapter", requests: Sequence["Request"], layers: Sequence[int],
                           *, suffixes: Sequence[str] | None = None, batch_size: int = 8,
                           render: Callable[["Request"], str] | None = None) -> list[Residuals]:
    """:func:`read_residuals` over requests in batches; ``suffixes`` are appended to each rendered prompt
    (e.g. the start of an assistant answer)."""
    render = render or adapter.prompt_text
    out = []
    starts = range(0, len(requests), batch_size)
    for start in progress(starts, len(starts), f"activations of {len(requests)} prompts"):
        chunk = list(requests[start : start + batch_size])
        texts = [render(request) for request in chunk]
        if suffixes is not None:
            texts = [text + suffix for text, suffix in zip(texts, suffixes[start : start + batch_size])]
        out.append(read_residuals(adapter, encode_texts(adapter, texts, [r.image for r in chunk]), layers))
    return out


def last_token_states(adapter: "VLMAdapter", requests: Sequence["Request"], layers: Sequence[int],
                      **kwargs: Any) -> dict[int, torch.Tensor]:
    """layer -> [n_requests, dim] residual state at the last prompt token."""
    chunks = residuals_for_requests(adapter, requests, layers, **kwargs)
    return {layer: torch.cat([chunk.last(layer) for chunk in chunks]) for layer in layers}


def mean_token_states(adapter: "VLMAdapter", requests: Sequence["Request"], layers: Sequence[int],
                      **kwargs: Any) -> dict[int, torch.Tensor]:
    """layer -> [n_requests, dim] residual state averaged over each prompt's real tokens."""
    chunks = residuals_for_requests(adapter, requests, layers, **kwargs)
    return {layer: torch.cat([chunk.mean(layer) for chunk in chunks]) for layer in layers}


def text_request(prompt: str, *, image: str | None = None, system: str | None = None, task: str = "calibration",
                 sample_id: str = "", max_new_tokens: int = 64) -> "Request":
    """A request built outside the pipeline (calibration prompts, intermediate defense stages)."""
    from harness.core.records import GenerationSettings, Request

    return Request(task=task, sample_id=sample_id, prompt=prompt, image=image, image_sha256=None, system=system,
                   settings=GenerationSettings(max_new_tokens=max_new_tokens))


def combine_timing(outputs: Sequence[Any], final: Any) -> tuple[float, float]:
    """(prefill_s, decode_s) of a multi-stage defense: every earlier stage counts as time before the
    final answer's first token."""
    before = sum(output.total_s for output in outputs)
    return before + final.prefill_s, final.decode_s


def encode_requests(adapter: "VLMAdapter", requests: Sequence["Request"],
                    render: Callable[["Request"], str] | None = None) -> dict[str, torch.Tensor]:
    """Model inputs for requests rendered with ``render`` (default: the adapter's chat template)."""
    render = render or adapter.prompt_text
    return encode_texts(adapter, [render(request) for request in requests], [request.image for request in requests])


def last_logits(adapter: "VLMAdapter", inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """[batch, vocab] float32 next-token logits after the prompt (one forward pass, no cache), with
    whatever hooks the caller has active."""
    with torch.inference_mode():
        logits = adapter.model(**inputs, use_cache=False, logits_to_keep=1).logits
    return logits[:, -1, :].float()


def template_suffix(adapter: "VLMAdapter") -> str:
    """The text the chat template puts after the user's instruction (end of turn + assistant header):
    the "post-instruction" positions of Arditi et al."""
    sentinel = "\u2063sentinel\u2063"
    rendered = adapter.prompt_text(text_request(sentinel))
    return rendered[rendered.rindex(sentinel) + len(sentinel):]
