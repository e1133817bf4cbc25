"""lm-eval bridge: any lm-evaluation-harness task, run on a harness model under any harness defense.

Registers the model class ``defended-mm`` (aliases ``defended_mm``, ``harness-defended``) with
lm-eval's model registry (``lm_eval.api.registry.register_model``). It wraps a
:class:`harness.defense_api.adapter.VLMAdapter` brought up exactly as ``harness eval`` brings one up
(:class:`harness.pipeline.bringup.BringUp`: the spec, its builder and fingerprinter) and a defense from
the harness registry (``harness.registries``), prepared the way the pipeline prepares it (its
calibration artifact is found and hashed in ``Defense.prepare``). Every model call goes through
``defense.generate(adapter, requests)``, so prompt, steering, iterative and filtering defenses all act.

Use from Python (importing this module registers the class)::

    from lm_eval.tasks import TaskManager
    from harness import lmeval_bridge

    results = lmeval_bridge.simple_evaluate(          # lm_eval.simple_evaluate with model="defended-mm"
        model_args="model=smol-llava,defense=refusal-direction,defense_args=coeff:1.0",
        tasks=["chartqa"], limit=20,
    )
    results["config"]["defense_fingerprint"]      # name, params, calibration sha256 (the pipeline's cache key part)

or from the shell (lm-eval's own CLI, after this module has registered the class)::

    python -m harness.lmeval_bridge run --model defended-mm \\
        --model_args model=smol-llava,defense=cast,dtype=float32,device=cpu,batch_size=4 \\
        --tasks chartqa --limit 20 --output_path results/lmeval

``model_args`` (lm-eval's ``key=value,key=value`` string, or a dict / JSON object):

* ``model``: a registered harness model name or alias, a Hugging Face id (``org/name[@revision]``) or a
  local model folder (default ``smol-llava``, the harness CLI's default).
* ``defense``: a registered harness defense (default ``none``); steering defenses need
  ``harness calibrate --defense D --model M`` first, exactly as ``harness eval`` does.
* ``defense_args``: the defense's parameters, as a JSON object (``{"coeff":0.5}``) or ``key:value``
  pairs separated by ``;`` (``coeff:0.5;other:2``; values parsed as YAML scalars, like
  ``harness eval --defense-arg``). lm-eval splits a model_args *string* on every comma, so a JSON
  object with several keys only survives in a dict model_args or on the CLI (whose parser keeps braces).
* ``dtype`` (default ``float32``), ``device`` (default ``cpu``): the values ``harness eval --dtype/--device``
  takes, including ``auto`` (recorded as the dtype and device it resolves to). The defaults differ from
  ``harness eval``'s (``auto``): lm-eval's CLI sends its own ``device`` anyway (see ``usable_device``).
* ``batch_size`` (default 1): requests per ``defense.generate`` call (an integer; ``auto`` is refused).
* ``max_new_tokens``: when given, replaces every request's ``max_gen_toks`` (like
  ``harness eval --max-new-tokens``); otherwise a request's ``max_gen_toks`` is used, else 256
  (lm-eval's HFLM default).
* ``max_images``: only 1 (a harness Request carries one image); a document's further images are
  dropped with a warning and counted in ``results["config"]["images_dropped"]`` (lm-eval's
  ``hf-multimodal`` truncates with the same knob).
* ``device``/``batch_size`` given in model_args win over lm-eval's ``--device``/``--batch_size``; lm-eval's
  CLI sends ``cuda:0`` when ``--device`` is absent, and like its HFLM the bridge then falls back to the
  CPU if CUDA is not available.

Provenance in lm-eval's results: ``simple_evaluate`` copies :meth:`DefendedMultimodalLM.get_model_info`
into ``results["config"]`` (next to ``model`` and ``model_args``): ``defense``, ``defense_params``,
``defense_fingerprint`` (the exact dict the pipeline puts into its generation cache key: name, params,
sha256 of every calibration file), ``defense_calibration_sha256``, ``harness_model``,
``model_fingerprint``, and the decoding notes below.

Request types (lm-eval 0.4.x, mirroring ``lm_eval/models/hf_vlms.py`` ``HFMultimodalLM``):

* ``generate_until``: ``args = (context, gen_kwargs)`` or ``(context, gen_kwargs, {"visual": [PIL images]})``.
  The context becomes the request's user prompt with every ``<image>`` placeholder (lm-eval's
  ``DEFAULT_IMAGE_PLACEHOLDER``) removed: the adapter renders the model's own chat template with the
  image *before* the text, as in every harness task, so an interleaved placeholder position is not
  kept. Images are written to PNG under ``cache_dir()/images/lmeval`` (content-addressed, so they are
  hashed like task images). Decoding is the adapter's greedy decoding: ``do_sample: true`` and any
  other sampling or beam option are ignored with a warning and listed in ``results["config"]
  ["ignored_gen_kwargs"]``. ``until`` stop sequences (plus the EOS text, as ``HFMultimodalLM`` adds it)
  cut the defense's final answer after generation; for greedy decoding that is the same text a
  stopping criterion yields, but a multi-stage defense (ECSO, ETA, ...) sees the whole answer up to
  ``max_gen_toks`` or EOS when it checks it.
* ``loglikelihood``: ``args = (context, continuation[, {"visual": [...]}])``, text or text + image.
  The continuation is scored as the start of the assistant's answer, teacher-forced *through the
  defense*: the bridge calls ``defense.generate`` with ``adapter.generate`` replaced by a forced
  decoding that prefills the (defense-transformed, defense-rendered) prompt and then feeds the
  continuation tokens one step at a time, so activation-steering hooks see exactly the prefill and
  decoding steps they see when the defended model writes that continuation. Log-probabilities are
  ``log_softmax`` of the model's raw logits, ``is_greedy`` compares them to their argmax (as HFLM
  does). This is defined only for single-pass defenses (``none``, the prompt defenses and the
  steering defenses that answer with one ``adapter.generate`` call and return the model's text). It is
  checked at run time, per batch: a defense that calls the model more than once (RAS's stages, ECSO's
  self-check of an image request), never calls ``adapter.generate``, or returns anything but the
  model's own outputs (ECSO, ETA and MLLM-Protector wrap or filter the answer) raises
  NotImplementedError.
* ``loglikelihood_rolling``: NotImplementedError (perplexity of raw text has no prompt, which a
  chat-templated, defended model does not define).

``apply_chat_template`` in lm-eval: the adapter always applies the model's chat template itself (that
is where prompt defenses put their system prompt), so this class's :meth:`apply_chat_template` only
carries lm-eval's messages through to the request: a system message (``--system_instruction``, a task
``description``) becomes the request's system prompt and the single user turn its prompt. Few-shot
examples as separate turns (``--fewshot_as_multiturn``) and assistant prefixes (``gen_prefix``) do not
fit a harness Request and raise NotImplementedError; without ``--apply_chat_template``, lm-eval's plain
context (few-shot examples included) is the user prompt.

Caching: generations are not written to the harness's generation cache. lm-eval's ``--use_cache`` keys
an answer on the request only (not on the model or defense), so give every (model, defense) its own
cache path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from harness.pipeline.defaults import DEFAULT_DEFENSE, DEFAULT_MODEL

if TYPE_CHECKING:
    import torch
    from lm_eval.api.instance import Instance

    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import ModelOutput, Request

log = logging.getLogger("harness.lmeval_bridge")

MODEL_NAMES = ("defended-mm", "defended_mm", "harness-defended")
IMAGE_PLACEHOLDER = "<image>"  # lm_eval.models.hf_vlms.DEFAULT_IMAGE_PLACEHOLDER
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval HFLM's default max_gen_toks
# Marks a context that this class's apply_chat_template produced: lm-eval's messages as JSON.
CHAT_MARKER = "<<harness-lmeval-chat>>"
# gen_kwargs that greedy decoding honours (until, max_gen_toks) or that do not change it when
# do_sample is off (temperature, top_p, top_k only shape a sampling distribution).
GREEDY_NEUTRAL_KWARGS = frozenset({"until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k"})
SUPPORTED_REQUESTS = (
    "generate_until (text and text + image) and loglikelihood (text and text + image, single-pass defenses)"
)


# ------------------------------------------------------------------------------------ argument parsing
def parse_defense_args(value: Any) -> dict[str, Any]:
    """``defense_args`` from model_args: a dict, a JSON object, or ``key:value;key:value`` (YAML scalars)."""
    import yaml

    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    text = str(value).strip()
    if text.startswith("{"):
        parsed = json.loads(text)
        if not isinstance(parsed, dict):
            raise ValueError(f"defense_args must be a JSON object, got {text!r}")
        return parsed
    params: dict[str, Any] = {}
    for pair in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, raw = pair.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"defense_args expects key:value pairs separated by ';', got {pair!r}")
        params[key.strip()] = yaml.safe_load(raw.strip())
    return params


def parse_batch_size(value: Any) -> int:
    """lm-eval passes ``batch_size`` as an int or a string ("8", "auto", "auto:4")."""
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().lower().startswith("auto"):
        raise ValueError("batch_size 'auto' is not supported by defended-mm; pass an integer")
    size = int(value)
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    return size


# ------------------------------------------------------------------------------------------ contexts
@dataclass(frozen=True)
class Turn:
    """What an lm-eval context becomes in a harness Request: system prompt, user prompt."""

    system: str | None
    prompt: str
    placeholders: int  # how many <image> placeholders the context had


def encode_chat(chat_history: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    """The context string lm-eval receives from :meth:`DefendedMultimodalLM.apply_chat_template`."""
    payload = {"messages": chat_history, "add_generation_prompt": add_generation_prompt}
    return CHAT_MARKER + json.dumps(payload, ensure_ascii=False)


def strip_placeholders(text: str) -> tuple[str, int]:
    return text.replace(IMAGE_PLACEHOLDER, ""), text.count(IMAGE_PLACEHOLDER)


def context_to_turn(context: str) -> Turn:
    """An lm-eval context (plain text, or carried chat messages) as the request's system + user prompt."""
    if not context.startswith(CHAT_MARKER):
        prompt, count = strip_placeholders(context)
        return Turn(None, prompt.strip(), count)
    payload = json.loads(context[len(CHAT_MARKER):])
    messages = payload["messages"]
    systems = [str(m["content"]) for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if not payload["add_generation_prompt"] or (turns and turns[-1]["role"] == "assistant"):
        raise NotImplementedError(
            "defended-mm cannot start the assistant's answer with a prefix (the task's gen_prefix): a "
            "harness Request has a system prompt, a user prompt and an image only"
        )
    if len(turns) != 1 or turns[0]["role"] != "user":
        raise NotImplementedError(
            f"defended-mm takes one user turn, got roles {[m['role'] for m in turns]}; with few-shot "
            "examples pass fewshot_as_multiturn=False (--fewshot_as_multiturn false) so they join the user turn"
        )
    system, system_count = strip_placeholders("\n\n".join(systems))
    prompt, prompt_count = strip_placeholders(str(turns[0]["content"]))
    return Turn(system.strip() or None, prompt.strip(), system_count + prompt_count)


def visuals_of(arguments: tuple) -> list[Any]:
    """The images of a request: ``args[2]["visual"]`` (a list, a single image, or None) when present."""
    if len(arguments) < 3 or not isinstance(arguments[2], dict):
        return []
    visual = arguments[2].get("visual")
    if visual is None:
        return []
    return list(visual) if isinstance(visual, (list, tuple)) else [visual]


def image_file(image: Any, directory: Path) -> str:
    """A PIL image (written as content-addressed PNG) or an image path, as the path a Request carries."""
    from PIL import Image as PILImage

    from harness.core.images import materialize

    if isinstance(image, PILImage.Image):
        # The adapter feeds RGB to the processor anyway; converting first also lets CMYK etc. be PNG.
        return str(materialize(image.convert("RGB"), directory))
    if isinstance(image, (str, Path)):
        return str(image)
    raise TypeError(f"unsupported visual of type {type(image).__name__}; expected a PIL image or a path")


# ---------------------------------------------------------------------------------------- generation
def cut_at_stop_sequences(text: str, until: Sequence[str]) -> str:
    """``HFMultimodalLM``'s post-hoc cut: the text before the first occurrence of each stop sequence."""
    for term in until:
        if term:
            text = text.split(term)[0]
    return text


@dataclass(frozen=True)
class Decoding:
    """What a request's gen_kwargs mean for the adapter's greedy decoding."""

    max_new_tokens: int
    until: list[str]
    ignored: list[str] = field(default_factory=list)  # options greedy decoding cannot honour


def decoding_of(gen_kwargs: dict[str, Any], eos_text: str | None, override_max: int | None) -> Decoding:
    from lm_eval.models.utils import handle_stop_sequences

    kwargs = dict(gen_kwargs or {})
    until = handle_stop_sequences(kwargs.get("until"), eos=eos_text)
    max_new = override_max or int(kwargs.get("max_gen_toks") or DEFAULT_MAX_GEN_TOKS)
    ignored = sorted(key for key in kwargs if key not in GREEDY_NEUTRAL_KWARGS)
    if kwargs.get("do_sample"):
        ignored.insert(0, "do_sample")
    return Decoding(max_new, until, ignored)


# ------------------------------------------------------------------------------- forced scoring
@dataclass(frozen=True)
class Score:
    logprob: float
    is_greedy: bool
    text: str  # the continuation as the adapter decodes it (compared with the defense's answer)
    tokens: int


def continuation_ids(tokenizer: Any, rendered: str, continuation: str) -> list[int]:
    """Tokens of ``continuation`` after the rendered prompt: whole minus context, as lm-eval's
    ``_encode_pair`` does; if tokenisation merges across the boundary, the continuation alone."""
    context_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    whole_ids = tokenizer(rendered + continuation, add_special_tokens=False)["input_ids"]
    if whole_ids[: len(context_ids)] == context_ids and len(whole_ids) > len(context_ids):
        return list(whole_ids[len(context_ids):])
    return list(tokenizer(continuation, add_special_tokens=False)["input_ids"])


class _ForceTokens:
    """Logits processor that makes step t of row r emit ``targets[r][t]`` (then ``filler``)."""

    def __init__(self, targets: list[list[int]], filler: int):
        self.targets = targets
        self.filler = filler
        self.step = 0

    def __call__(self, input_ids: "torch.LongTensor", scores: "torch.Tensor") -> "torch.Tensor":
        import torch

        forced = torch.full_like(scores, float("-inf"))
        for row, target in enumerate(self.targets):
            forced[row, target[self.step] if self.step < len(target) else self.filler] = 0.0
        self.step += 1
        return forced


def score_continuations(
    adapter: "VLMAdapter", requests: Sequence["Request"], continuations: Sequence[str]
) -> list[Score]:
    """Teacher-forced decoding of each continuation after its rendered request (prefill, then one token
    per step, with whatever hooks are active): summed log-probabilities of the raw logits."""
    import torch
    from transformers import LogitsProcessorList

    texts = [adapter.prompt_text(request) for request in requests]  # the defense's rendering, if it set one
    targets = [continuation_ids(adapter.tokenizer, text, cont) for text, cont in zip(texts, continuations)]
    eos = adapter.eos_token_ids
    for cont, target in zip(continuations, targets):
        if not target:
            raise ValueError(f"loglikelihood: continuation {cont!r} has no tokens")
        if any(token in eos for token in target[:-1]):
            raise ValueError(f"loglikelihood: continuation {cont!r} has an end-of-sequence token before its end")
    filler = min(eos) if eos else adapter.tokenizer.pad_token_id
    inputs = adapter.encode_texts(texts, [request.image for request in requests])
    with torch.inference_mode():
        out = adapter.model.generate(
            **inputs,
            max_new_tokens=max(len(target) for target in targets),
            do_sample=False,
            num_beams=1,
            pad_token_id=adapter.tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([_ForceTokens(targets, filler)]),
            return_dict_in_generate=True,
            output_logits=True,  # raw model logits, before any logits processor
        )
    logits = torch.stack(out.logits, dim=1).float()  # [batch, steps, vocab]
    logprobs = torch.log_softmax(logits, dim=-1)
    scores = []
    for row, target in enumerate(targets):
        ids = torch.tensor(target, device=logits.device)
        picked = logprobs[row, : len(target)].gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        greedy = bool((logits[row, : len(target)].argmax(dim=-1) == ids).all())
        text = adapter.tokenizer.decode(target, skip_special_tokens=True).strip()
        scores.append(Score(float(picked.sum()), greedy, text, len(target)))
    return scores


@contextlib.contextmanager
def generate_replaced(adapter: "VLMAdapter", replacement: Callable[..., list["ModelOutput"]]) -> Iterator[None]:
    """While active, ``adapter.generate`` is ``replacement`` (an instance attribute shadows the method,
    as :func:`harness.defense_api.steering.rendered_with` does for ``prompt_text``; always removed)."""
    adapter.generate = replacement  # type: ignore[method-assign]
    try:
        yield
    finally:
        del adapter.generate


def usable_device(device: str | None) -> str:
    """The device to load on. lm-eval's CLI sends ``cuda:0`` when ``--device`` is not given; like lm-eval's
    HFLM, fall back to the CPU when CUDA is absent (the device used is recorded in the model fingerprint)."""
    import torch

    if not device:
        return "cpu"
    if device == "auto":
        from harness.core.hub import resolve_device

        return resolve_device(device)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available; using cpu", device)
        return "cpu"
    return str(device)


# --------------------------------------------------------------------------------------- the model
class DefendedMultimodalLM(LM):
    """lm-eval LM: a harness model adapter answering through a harness defense (see module docstring)."""

    MULTIMODAL = True  # lm-eval's flag: this model accepts requests with {"visual": [...]}

    @classmethod
    def create_from_arg_string(
        cls, arg_string: str, additional_config: dict[str, Any] | None = None
    ) -> "DefendedMultimodalLM":
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(
        cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None
    ) -> "DefendedMultimodalLM":
        """lm-eval passes its own ``device`` / ``batch_size`` (the CLI always sends both) next to model_args;
        a key in both would be a duplicate keyword, so model_args, this class's interface, wins."""
        extra = {key: value for key, value in (additional_config or {}).items()
                 if value is not None and key not in arg_dict}
        return cls(**arg_dict, **extra)

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        defense: str = DEFAULT_DEFENSE,
        defense_args: Any = None,
        dtype: str = "float32",
        device: str | None = "cpu",
        batch_size: int | str | None = 1,
        max_new_tokens: int | None = None,
        max_images: int = 1,
        max_batch_size: int | None = None,  # lm-eval passes it; auto batch sizing is not supported
        trust_remote_code: bool = False,
    ):
        super().__init__()
        from harness.core.paths import cache_dir
        from harness.pipeline.bringup import BringUp

        if trust_remote_code:
            raise ValueError("defended-mm loads models with trust_remote_code=False only (harness policy)")
        if int(max_images) != 1:
            raise ValueError("a harness Request carries one image: max_images must be 1")
        device = usable_device(device)
        # lm-eval's model_args parser turns the string "none" into None: that is the "none" defense.
        defense = DEFAULT_DEFENSE if defense is None else defense
        self.batch_size = parse_batch_size(batch_size)
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens else None
        self.max_images = 1
        self.image_dir = cache_dir() / "images" / "lmeval"

        # Brought up as `harness eval` brings one up: resolved, the defense prepared (its calibration
        # found and hashed) before the weights load, so a missing calibration fails fast.
        self.bringup = BringUp.resolve(str(model), str(defense), parse_defense_args(defense_args), dtype=str(dtype), device=device)
        self.spec, self.defense_name, self.defense = self.bringup.spec, self.bringup.defense_name, self.bringup.defense
        self.dtype, self.device_name = self.bringup.dtype, self.bringup.device
        log.info("loading model %s (dtype %s, device %s) under defense %s",
                 self.spec.name, self.dtype, self.device_name, self.defense_name)
        self.adapter: VLMAdapter = self.bringup.load()
        self.model_fingerprint = self.bringup.model_fingerprint
        self._device = self.adapter.device
        self.ignored_gen_kwargs: set[str] = set()
        self.images_dropped = 0

    # ------------------------------------------------------------------------------- lm-eval hooks
    @property
    def tokenizer(self) -> Any:
        """lm-eval's results logger reads pad / eos / bos tokens from here."""
        return self.adapter.tokenizer

    @property
    def eot_token_id(self) -> int | None:
        return self.adapter.tokenizer.eos_token_id

    @property
    def tokenizer_name(self) -> str:
        """Names lm-eval's request cache when a chat template is applied."""
        return self.spec.name.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The model's chat template (what the adapter renders with), for lm-eval's run record."""
        processor, tokenizer = self.adapter.processor, self.adapter.tokenizer
        template = getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
        return template if isinstance(template, str) else ""

    def apply_chat_template(self, chat_history: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """Carry lm-eval's messages to the request (the adapter renders the real template; see module doc)."""
        return encode_chat(chat_history, add_generation_prompt)

    def get_model_info(self) -> dict[str, Any]:
        """Merged by ``lm_eval.simple_evaluate`` into ``results["config"]``: the defense fingerprint the
        pipeline puts into its cache key (name, params, calibration sha256) and the model's identity."""
        from harness.core.version import __version__

        fingerprint = self.defense.fingerprint()
        return {
            "harness_version": __version__,
            "harness_model": self.spec.name,
            "harness_model_source": self.spec.source,
            "model_fingerprint": self.model_fingerprint,
            "model_dtype": self.dtype,
            "defense": self.defense_name,
            "defense_params": fingerprint["params"],
            "defense_calibration_sha256": fingerprint["artifacts"],
            "defense_fingerprint": fingerprint,
            "decoding": "greedy",
            "ignored_gen_kwargs": sorted(self.ignored_gen_kwargs),
            "images_dropped": self.images_dropped,
        }

    # ---------------------------------------------------------------------------------- requests
    def to_request(self, instance: "Instance", max_new_tokens: int) -> "Request":
        """A harness Request for one lm-eval request (context + optional images)."""
        from harness.core.images import check_image
        from harness.core.records import GenerationSettings, Request

        turn = context_to_turn(instance.args[0])
        visuals = visuals_of(instance.args)
        if len(visuals) > self.max_images:
            self.images_dropped += len(visuals) - self.max_images
            log.warning("request %s/%s has %d images; keeping the first (max_images=1)",
                        instance.task_name, instance.doc_id, len(visuals))
        image = image_file(visuals[0], self.image_dir) if visuals else None
        return Request(
            task=str(instance.task_name or "lm-eval"),
            sample_id=f"{instance.doc_id}:{instance.idx}",
            prompt=turn.prompt,
            image=image,
            image_sha256=check_image(image) if image else None,
            system=turn.system,
            settings=GenerationSettings(max_new_tokens=max_new_tokens, batch_size=self.batch_size),
        )

    def _chunks(self, items: list[Any]) -> Iterator[list[Any]]:
        for start in range(0, len(items), self.batch_size):
            yield items[start : start + self.batch_size]

    def generate_until(self, requests: list["Instance"], disable_tqdm: bool = False) -> list[str]:
        from tqdm import tqdm

        eos_text = self.adapter.tokenizer.decode([self.eot_token_id], skip_special_tokens=False) \
            if self.eot_token_id is not None else None
        planned = []
        for instance in requests:
            decoding = decoding_of(instance.args[1], eos_text, self.max_new_tokens)
            new = set(decoding.ignored) - self.ignored_gen_kwargs
            if new:
                log.warning("defended-mm decodes greedily; ignoring gen_kwargs %s", sorted(new))
                self.ignored_gen_kwargs |= new
            planned.append((instance, self.to_request(instance, decoding.max_new_tokens), decoding.until))
        answers: list[str] = []
        description = f"defended-mm/{self.defense_name} generate_until"
        with tqdm(total=len(planned), disable=disable_tqdm, desc=description) as bar:
            for chunk in self._chunks(planned):
                outputs = self.defense.generate(self.adapter, [request for _, request, _ in chunk])
                if len(outputs) != len(chunk):
                    raise RuntimeError(
                        f"defense {self.defense_name!r} returned {len(outputs)} outputs for {len(chunk)} requests")
                for (instance, _, until), output in zip(chunk, outputs):
                    text = cut_at_stop_sequences(output.text, until)
                    answers.append(text)
                    self.cache_hook.add_partial("generate_until", instance.args, text)
                bar.update(len(chunk))
        return answers

    def loglikelihood(self, requests: list["Instance"], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        from tqdm import tqdm

        planned = []
        for instance in requests:
            continuation = instance.args[1]
            if not continuation:
                raise ValueError("loglikelihood needs a non-empty continuation")
            # max_new_tokens only sizes the request record: the forced pass decodes the continuation.
            planned.append((instance, self.to_request(instance, 1), continuation))
        results: list[tuple[float, bool]] = []
        description = f"defended-mm/{self.defense_name} loglikelihood"
        with tqdm(total=len(planned), disable=disable_tqdm, desc=description) as bar:
            for chunk in self._chunks(planned):
                scores = self._score_through_defense([r for _, r, _ in chunk], [c for _, _, c in chunk])
                for (instance, _, _), score in zip(chunk, scores):
                    answer = (score.logprob, score.is_greedy)
                    results.append(answer)
                    self.cache_hook.add_partial("loglikelihood", instance.args, answer)
                bar.update(len(chunk))
        return results

    def _score_through_defense(self, requests: list["Request"], continuations: list[str]) -> list[Score]:
        """Run the defense with ``adapter.generate`` replaced by forced decoding of the continuations."""
        from harness.core.records import ModelOutput

        recorded: list[list[Score]] = []
        returned: list[list[ModelOutput]] = []
        single_pass = (
            f"loglikelihood under defense {self.defense_name!r} is defined only for single-pass defenses "
            "(one adapter.generate call whose own outputs the defense returns: none, prompt and steering "
            f"defenses); supported request types: {SUPPORTED_REQUESTS}"
        )

        def forced_generate(batch: list["Request"], max_new_tokens: int | None = None) -> list[ModelOutput]:
            if recorded:
                raise NotImplementedError(f"{single_pass}; it called the model more than once")
            if len(batch) != len(requests):
                raise NotImplementedError(
                    f"{single_pass}; it asked for {len(batch)} answers to {len(requests)} requests")
            scores = score_continuations(self.adapter, batch, continuations)
            recorded.append(scores)
            returned.append([ModelOutput(text=s.text, input_tokens=0, output_tokens=s.tokens, prefill_s=0.0,
                                         decode_s=0.0, batch_size=len(batch)) for s in scores])
            return returned[0]

        with generate_replaced(self.adapter, forced_generate):
            outputs = self.defense.generate(self.adapter, requests)
        if not recorded:
            raise NotImplementedError(f"{single_pass}; it did not call adapter.generate")
        # The model's own output objects, text unchanged: a defense that wraps, filters or rewrites the
        # answer (even when its verdict lets this one through) decides more than the model's likelihood.
        if len(outputs) != len(returned[0]) or any(
            mine is not theirs or theirs.text != score.text
            for mine, theirs, score in zip(returned[0], outputs, recorded[0])
        ):
            raise NotImplementedError(f"{single_pass}; it returned an answer other than the model's own")
        return recorded[0]

    def loglikelihood_rolling(self, requests: list["Instance"], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            f"defended-mm does not support loglikelihood_rolling (perplexity of raw text: a defended, "
            f"chat-templated model has no prompt to score it under); supported: {SUPPORTED_REQUESTS}"
        )


# ------------------------------------------------------------------------------------ entry points
def simple_evaluate(**kwargs: Any) -> Any:
    """``lm_eval.simple_evaluate`` with ``model="defended-mm"`` unless another is given (this module is
    imported, so the class is registered)."""
    import lm_eval

    kwargs.setdefault("model", MODEL_NAMES[0])
    return lm_eval.simple_evaluate(**kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """lm-eval's CLI with ``defended-mm`` registered: ``python -m harness.lmeval_bridge <lm-eval args>``."""
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm-eval", *(sys.argv[1:] if argv is None else argv)]
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    # Run the importable module's copy: registering this __main__ copy too would give lm-eval's
    # registry two different classes under one name (it refuses that).
    from harness.lmeval_bridge import main as _main

    sys.exit(_main())
else:
    register_model(*MODEL_NAMES)(DefendedMultimodalLM)
