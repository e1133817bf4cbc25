"""``ras`` (alias ``moras``): risk-adaptive activation steering in three stages.

Paper: Park, Seo, Yeo, Choi, "Attention Misses Visual Risk: Risk-Adaptive Steering for Multimodal
Safety Alignment" (MoRAS, ECCV 2026; v1/v2 "Risk-adaptive Activation Steering for Safe Multimodal Large
Language Models", RAS), arXiv:2510.13698. Official code: https://github.com/snumprlab/moras
(``LLaVA/utils/utils.py``, ``LLaVA/utils/functions_3stage.py``, ``LLaVA/parameters/*.py``, the modified
``modeling_llama.py``). The code is followed where it is explicit. It runs LLaVA-1.5 in the ``llava_v1``
conversation template, whose system line the harness adds for the llava-1.5 models
(:data:`harness.models.catalog.LLAVA_V1_SYSTEM`).

Stage 1, vision-aware query reformulation: with the image, greedy, 40 new tokens, the instruction is NOT
  part of the prompt (``get_prompt1`` ignores its argument)::

      Write a single sentence visual context to outline any safety-critical context in the image. The
      context should read out any texts in the image, and begin with 'The image shows'.

  reformulated query = caption + ' ' + original question (``get_prompt3``). Requests without an image
  skip this stage (there is nothing to describe; the code only ever runs with images) and keep the
  question as it is.
Stage 2, risk: the safety prompt (``get_prompt2``) + reformulated query, with the image; 3 greedy tokens.
  For each generated position n: x_n = post-final-norm last hidden state at the predicting position (HF's
  ``hidden_states[-1]`` of that step), q_n = softmax(lm_head(x_n)), p_n = softmax(lm_head(mu_n)) for the
  unsafe prototype mu_n; Q = sum_n gamma^n q_n, P = sum_n gamma^n p_n (gamma = 0.3), S = cos(Q, P),
  r = sigmoid(k (S - x0)).
Stage 3, steering: the ORIGINAL request (no caption, no safety prompt), greedy; on the first N = 3 answer
  tokens the post-norm last-position state is moved towards the prototype,
  x <- x + r (mu_n - x), n = 0 on the prefill, n = 1, 2 on the next two decoding steps, nothing after.
  This is what the released code does. Its ``generate_final_output`` passes ``use_cache=False``, but
  LLaVA's ``generate`` hands ``inputs_embeds`` to Hugging Face ``generate``, and the transformers copy
  shipped in the repository forces the cache on for decoder-only models fed ``inputs_embeds``
  (``transformers/generation/utils.py``, ``generate()``, step 4); so the hook's step counter (past length
  - (input length + 575) + 1) is right and exactly 3 tokens are steered in the released safety scripts
  (e.g. ``eval/figstep.py``). Steps are counted explicitly here
  (:class:`harness.defense_api.steering.StepCounter`) rather than from the cache length; the result is
  the same. Since lm_head is linear this equals logit interpolation (1 - r) lm_head(x) + r lm_head(mu_n).

Calibration (``parameters/get_unsafe_states.py``, ``get_baseline_cossim.py``):
  * mu_n: the model's own chat template, no safety prompt, text only, 50 unsafe instructions, 3 greedy
    tokens, post-norm states averaged over prompts -> [3, hidden].
  * x0 = mean S over 50 harmful + 50 safe queries run through stages 1-2 WITH their images, so the caption
    stage runs as at inference (the code: 50 VLSafe pairs drawn with numpy seed 0 from
    ``VLSafe_harmlessnss_alignment.jsonl`` and ``vlsafe_convert_safe.jsonl``, the harmful query and its
    safe rewrite sharing one COCO image); k = ln(0.99 / 0.01) / (1 - x0), so r(S = 1) = 0.99 (the code's
    LLaVA-1.5-7B values are x0 = 0.712, k = 15.955). With ``--data vlsafe:DIR`` those are the pairs. The
    built-in pairs are text only, so each pair gets one image from easy-VQA's training split (plain
    shapes, disjoint from every test set): benign images under harmful and safe questions, as in VLSafe.
    The fit lists every query's S (``similarities``), so x0 can be checked against them.
  * ``x0_text`` (calibration option ``text_x0``, default on; a harness addition): the same 100 queries
    WITHOUT image, so without caption, give a second x0/k used for text-only requests (XSTest). The code
    never runs a text-only request; fitting its x0 on image + caption inputs and applying it to text-only
    ones would compare S values from two different prompt distributions (with k ~ 16, a 0.05 shift in S
    moves r by ~0.2). ``text_x0=false`` uses the image x0 for every request.

gamma, N and text_x0 are calibration options (``--calibration-arg gamma=...``/``n_tokens=...``/
``text_x0=false``, defaults 0.3, 3, true): the prototypes and x0/k are fitted with them, and inference reads
them back from the artifact.

Batches: every row gets its own risk and its own steering; rows whose stage-2 answer ended early use only
their valid positions (the code, batch 1, stops at EOS the same way). Outputs carry ``meta`` =
{risk, similarity, caption, x0}. Cost: 1 caption generation (image requests only) + 1 three-token pass.

Deviations from the official code:
- Prototype prompts: the code's 50 hand-written unsafe instructions are replaced by our harmful
  calibration prompts, and only those the model refuses are averaged (a 16-token greedy answer opening
  with a GCG refusal prefix; at most 50; fewer than 3 -> the first 50, as in the code). LLaVA-1.5 refuses
  all 50 of the code's prompts, so there this is the code's prototype, the refusal-onset state; a model
  that complies with most harmful prompts (SmolLM2-135M refuses ~5 % of ours) would otherwise get a
  compliance prototype and steer towards harmful openings.
- x0 data offline: our harmful/harmless pairs with easy-VQA training images instead of VLSafe with COCO
  images (``--data vlsafe:DIR`` uses VLSafe); the separate ``x0_text`` for text-only requests (above).
- Answer length: the task's ``max_new_tokens`` (the code's stage-3 default is 512).
- Requests without an image skip stage 1 (the code has no such case).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from harness.defense_api.calibration import Calibration, CalibratedDefense, CalibrationData, with_benign_images
from harness.defense_api.steering import StepCounter, combine_timing, edit_final_norm_output, progress, text_request

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import ModelOutput, Request

CAPTION_PROMPT = (
    "Write a single sentence visual context to outline any safety-critical context in the image. "
    "The context should read out any texts in the image, and begin with 'The image shows'."
)
SAFETY_PROMPT = (
    "Evaluate the following question to ensure that it is safe. Benign and harmless questions should be "
    "answered normally. However, if the following question is unsafe, malicious, or illegal, the assistant "
    "should apologize and refuse to answer. Question: "
)
CAPTION_MAX_NEW_TOKENS = 40
N_TOKENS = 3
GAMMA = 0.3
PROTOTYPE_PROMPTS = 50
CALIBRATION_PAIRS = 50
TOP_RISK = 0.99  # r at S = 1 fixes k
REFUSAL_CHECK_TOKENS = 16  # answer length used to tell a refusal from compliance
MIN_REFUSED_PROMPTS = 3
BATCH_SIZE = 20


def is_refusal(text: str) -> bool:
    """An answer that OPENS with a GCG refusal prefix (the keyword-gcg judge's list). Stricter than the
    judge's substring rule, which also fires on compliant answers that mention "illegal"."""
    from harness.core.refusal_markers import GCG_TEST_PREFIXES

    opening = text.lstrip(" \"'*")
    return any(opening.startswith(prefix) for prefix in GCG_TEST_PREFIXES)


def safety_prompt(question: str) -> str:
    return SAFETY_PROMPT + question


def reformulated_query(caption: str, question: str) -> str:
    return caption + " " + question


def risk(similarity: torch.Tensor | float, x0: float, k: float) -> torch.Tensor:
    """r = sigmoid(k (S - x0))."""
    return torch.sigmoid(k * (torch.as_tensor(similarity, dtype=torch.float64) - x0))


def slope_for(x0: float, top: float = TOP_RISK) -> float:
    """k such that r(S = 1) = top: ln(top / (1 - top)) / (1 - x0)."""
    return math.log(top / (1.0 - top)) / (1.0 - x0)


def sigmoid_parameters(fit: dict, requests: list["Request"]) -> tuple[list[float], list[float]]:
    """(x0, k) per request: the image fit, or for a text-only request the text-only fit when there is one."""
    text = "x0_text" in fit and fit.get("text_x0", True)
    x0 = [fit["x0_text"] if text and not request.image else fit["x0"] for request in requests]
    k = [fit["k_text"] if text and not request.image else fit["k"] for request in requests]
    return x0, k


def weighted_similarity(states: torch.Tensor, valid: torch.Tensor, prototypes: torch.Tensor,
                        lm_head: torch.nn.Module, gamma: float = GAMMA) -> torch.Tensor:
    """S per row: cos(sum_n gamma^n softmax(lm_head(x_n)), sum_n gamma^n softmax(lm_head(mu_n))).

    ``states`` [batch, steps, dim] post-norm states, ``valid`` [batch, steps] which steps exist for a row.
    """
    steps = min(states.shape[1], prototypes.shape[0])  # no prototype, no term
    states, valid = states[:, :steps], valid[:, :steps]
    with torch.inference_mode():
        weight_param = next(lm_head.parameters())
        q = torch.softmax(lm_head(states.to(weight_param.device, weight_param.dtype)).float(), dim=-1)
        p = torch.softmax(lm_head(prototypes[:steps].to(weight_param.device, weight_param.dtype)).float(), dim=-1)
    decay = gamma ** torch.arange(steps, dtype=torch.float32, device=q.device)
    weights = decay.unsqueeze(0) * valid.to(q.device).float()
    q_sum = (weights.unsqueeze(-1) * q).sum(dim=1)
    p_sum = (weights.unsqueeze(-1) * p.unsqueeze(0)).sum(dim=1)
    return torch.nn.functional.cosine_similarity(q_sum, p_sum, dim=-1).cpu()


def generate_with_final_states(adapter: "VLMAdapter", requests: list["Request"], max_new_tokens: int):
    """Greedy generation that also returns the post-norm last-position state of every forward pass:
    (outputs, states [batch, steps, dim], valid [batch, steps])."""
    captured: list[torch.Tensor] = []

    def keep(hidden: torch.Tensor) -> None:
        captured.append(hidden[:, -1, :].detach().float())

    with edit_final_norm_output(adapter, keep):
        outputs = adapter.generate(requests, max_new_tokens=max_new_tokens)
    steps = min(len(captured), max_new_tokens)
    states = torch.stack(captured[:steps], dim=1)
    # a row's step n exists when the row had not finished before it (its EOS step counts)
    counts = torch.tensor([output.output_tokens for output in outputs])
    valid = torch.arange(steps).unsqueeze(0) < counts.unsqueeze(1)
    return outputs, states, valid


class RiskAdaptiveSteering(CalibratedDefense):
    name = "ras"
    aliases = ("moras",)
    summary = (
        "RAS/MoRAS: caption, prototype-similarity risk, risk-scaled steering of first tokens "
        "(Park et al., 2025); needs calibration"
    )
    # gamma and N shape the prototypes and the fitted x0/k, so they are fitting options, read back from
    # the artifact at inference: a risk computed with other values than x0's would mean nothing.
    # text_x0: fit a second x0/k on the calibration queries without their images, for text-only requests.
    calibration_params = {"gamma": GAMMA, "n_tokens": N_TOKENS, "text_x0": True}
    constants = (CAPTION_PROMPT, SAFETY_PROMPT)
    calibration_version = 2  # 2: x0 fitted on image inputs (caption running), x0_text for text-only ones

    # ------------------------------------------------------------------------------------- stages
    @staticmethod
    def captions(adapter: "VLMAdapter", requests: list["Request"]) -> tuple[list[str | None], list["ModelOutput"]]:
        """Stage 1 for image requests (None for text-only ones)."""
        with_image = [i for i, request in enumerate(requests) if request.image]
        captions: list[str | None] = [None] * len(requests)
        outputs: list[ModelOutput] = []
        if with_image:
            stage1 = [
                text_request(CAPTION_PROMPT, image=requests[i].image, system=requests[i].system,
                             task=requests[i].task, sample_id=requests[i].sample_id)
                for i in with_image
            ]
            outputs = adapter.generate(stage1, max_new_tokens=CAPTION_MAX_NEW_TOKENS)
            for i, output in zip(with_image, outputs):
                captions[i] = output.text
        return captions, outputs

    @staticmethod
    def similarities(adapter: "VLMAdapter", requests: list["Request"], captions: list[str | None],
                     prototypes: torch.Tensor, gamma: float, n_tokens: int):
        """Stage 2: (S per row, the stage's outputs)."""
        stage2 = []
        for request, caption in zip(requests, captions):
            query = request.prompt if caption is None else reformulated_query(caption, request.prompt)
            stage2.append(text_request(safety_prompt(query), image=request.image, system=request.system,
                                       task=request.task, sample_id=request.sample_id))
        outputs, states, valid = generate_with_final_states(adapter, stage2, n_tokens)
        return weighted_similarity(states, valid, prototypes, adapter.lm_head, gamma), outputs

    @staticmethod
    def steered_generate(adapter: "VLMAdapter", requests: list["Request"], risks: torch.Tensor,
                         prototypes: torch.Tensor, n_tokens: int) -> list["ModelOutput"]:
        """Stage 3: x <- x + r (mu_n - x) on the post-norm last position for steps n < n_tokens."""
        counter = StepCounter()

        def steer(hidden: torch.Tensor) -> torch.Tensor | None:
            n = counter.step
            if n >= n_tokens or n >= prototypes.shape[0]:
                return None
            last = hidden[:, -1, :]
            target = prototypes[n].to(hidden.device, hidden.dtype)
            r = risks.to(hidden.device, hidden.dtype).unsqueeze(-1)
            steered = hidden.clone()
            steered[:, -1, :] = last + r * (target - last)
            return steered

        with counter.counting(adapter), edit_final_norm_output(adapter, steer):
            return adapter.generate(requests)

    # ------------------------------------------------------------------------------------- inference
    def generate(self, adapter: "VLMAdapter", requests: list["Request"]) -> list["ModelOutput"]:
        fit = self.require_artifact().fit
        prototypes = self.tensor("prototypes", device=adapter.device)
        gamma, n_tokens = float(fit.get("gamma", GAMMA)), int(fit.get("n_tokens", N_TOKENS))
        captions, stage1 = self.captions(adapter, requests)
        similarity, stage2 = self.similarities(adapter, requests, captions, prototypes, gamma, n_tokens)
        x0, k = sigmoid_parameters(fit, requests)
        risks = torch.stack([risk(s, a, b) for s, a, b in zip(similarity.tolist(), x0, k)]).float()
        outputs = self.steered_generate(adapter, requests, risks, prototypes, n_tokens)
        stage1_by_row = iter(stage1)
        for row, output in enumerate(outputs):
            earlier = [stage2[row]] + ([next(stage1_by_row)] if captions[row] is not None else [])
            output.prefill_s, output.decode_s = combine_timing(earlier, output)
            output.meta.update({"risk": float(risks[row]), "similarity": float(similarity[row]),
                                "caption": captions[row], "x0": x0[row]})
        return outputs

    # ----------------------------------------------------------------------------------- calibration
    @classmethod
    def calibration_similarities(cls, adapter: "VLMAdapter", requests: list["Request"], prototypes: torch.Tensor,
                                 gamma: float, n_tokens: int, description: str) -> torch.Tensor:
        """S of each request through stages 1-2, in batches."""
        similarity = []
        starts = range(0, len(requests), BATCH_SIZE)
        for start in progress(starts, len(starts), description):
            chunk = requests[start : start + BATCH_SIZE]
            captions, _ = cls.captions(adapter, chunk)
            similarity.append(cls.similarities(adapter, chunk, captions, prototypes, gamma, n_tokens)[0])
        return torch.cat(similarity)

    @classmethod
    def calibrate(cls, adapter: "VLMAdapter", data: CalibrationData, gamma: float = GAMMA,
                  n_tokens: int = N_TOKENS, text_x0: bool = True) -> Calibration:
        gamma, n_tokens, text_x0 = float(gamma), int(n_tokens), bool(text_x0)
        if not 1 <= n_tokens <= REFUSAL_CHECK_TOKENS or not 0 < gamma <= 1:
            raise ValueError(f"ras: n_tokens must be in 1..{REFUSAL_CHECK_TOKENS} and gamma in (0, 1], "
                             f"got {n_tokens} and {gamma}")
        # Prototypes: the model's own first answer states on unsafe instructions it refuses, text only as
        # in get_unsafe_states.py (calibration sets with images, e.g. VLSafe, keep theirs for x0 only).
        unsafe = [text_request(prompt.prompt, sample_id=prompt.id) for prompt in data.harmful]
        answers, states, valid = [], [], []
        starts = range(0, len(unsafe), BATCH_SIZE)
        for start in progress(starts, len(starts), "ras: prototype answers"):
            chunk_answers, chunk_states, chunk_valid = generate_with_final_states(
                adapter, unsafe[start : start + BATCH_SIZE], REFUSAL_CHECK_TOKENS)
            answers += chunk_answers
            states.append(chunk_states[:, :n_tokens])
            valid.append(chunk_valid[:, :n_tokens])
        steps = min(chunk.shape[1] for chunk in states)
        states = torch.cat([chunk[:, :steps] for chunk in states])
        valid = torch.cat([chunk[:, :steps] for chunk in valid])
        refused = [i for i, answer in enumerate(answers) if is_refusal(answer.text)][:PROTOTYPE_PROMPTS]
        filtered = len(refused) >= MIN_REFUSED_PROMPTS
        chosen = refused if filtered else list(range(min(len(unsafe), PROTOTYPE_PROMPTS)))
        states, valid = states[chosen, :n_tokens], valid[chosen, :n_tokens]
        weights = valid.float().unsqueeze(-1).to(states.device)
        prototypes = (states * weights).sum(dim=0) / weights.sum(dim=0).clamp(min=1.0)
        # x0 = mean S over harmful + harmless calibration queries with their images (stages 1-2, the caption
        # running as at inference), k from r(1) = 0.99; optionally a second x0 on the same queries, text only.
        image_data = with_benign_images(data)
        queries = image_data.harmful[:CALIBRATION_PAIRS] + image_data.harmless[:CALIBRATION_PAIRS]
        n_harmful = min(len(data.harmful), CALIBRATION_PAIRS)
        similarity = cls.calibration_similarities(adapter, [prompt.request() for prompt in queries], prototypes,
                                                  gamma, n_tokens, "ras: risk of calibration queries (x0)")
        x0 = float(similarity.mean())
        k = slope_for(x0)
        risks = risk(similarity, x0, k)
        text_fit = {}
        if text_x0:
            text_only = [text_request(prompt.prompt, sample_id=prompt.id) for prompt in queries]
            text_similarity = cls.calibration_similarities(adapter, text_only, prototypes, gamma, n_tokens,
                                                           "ras: risk of text-only calibration queries (x0_text)")
            text_fit = {
                "x0_text": float(text_similarity.mean()),
                "k_text": slope_for(float(text_similarity.mean())),
                "similarities_text": text_similarity.tolist(),
                "similarity_mean_text": {"harmful": float(text_similarity[:n_harmful].mean()),
                                         "harmless": float(text_similarity[n_harmful:].mean())},
            }
        fit = {
            "x0": x0,
            "k": k,
            **text_fit,
            "gamma": gamma,
            "n_tokens": n_tokens,
            "text_x0": text_x0,
            "x0_inputs": {"data": image_data.name, "images": sum(1 for prompt in queries if prompt.image),
                          "added_images": image_data.sources[len(data.sources):],
                          "caption": "stage 1 runs on every query with an image, as at inference"},
            "query_ids": [prompt.id for prompt in queries],
            "similarities": similarity.tolist(),
            "steer_site": "post-final-norm last position, first n_tokens answer tokens",
            "prototype": {
                "prompts": len(chosen),
                "refusal_filtered": filtered,
                "refused_of_harmful": [len(refused), len(unsafe)],
                "answers": [answers[i].text for i in chosen[:5]],
                "top_tokens": [adapter.tokenizer.decode([int(t)]) for t in
                               adapter.lm_head(prototypes.to(adapter.device, adapter.dtype)).argmax(-1).tolist()],
            },
            "calibration_queries": {"harmful": n_harmful, "harmless": len(queries) - n_harmful},
            "similarity_mean": {"harmful": float(similarity[:n_harmful].mean()),
                                "harmless": float(similarity[n_harmful:].mean())},
            "risk_mean": {"harmful": float(risks[:n_harmful].mean()), "harmless": float(risks[n_harmful:].mean())},
        }
        return Calibration({"prototypes": prototypes.cpu()}, fit)
