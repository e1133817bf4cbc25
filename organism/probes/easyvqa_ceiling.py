"""Where smol-llava's easy-vqa accuracy is lost: the vision tower or the language-model side (issue 3).

    .venv/bin/python -m organism.probes.easyvqa_ceiling [--questions 150] [--blank-steps 60] [--packed-steps 80]

Up to five figures on the same seeded easy-vqa test questions (the trainer's evaluation draw, restricted to
images whose caption is known):

1. caption-cell accuracy of the shipped tower: for the caption cells of row 0, is the nearest
   (cosine) token embedding to the projector's output the caption's token?
2. easy-vqa accuracy of the shipped model, as the trainer measures it;
3. the same, with the caption cells of the projector's output replaced by the exact caption
   embeddings (a perfect tower; the other cells are the tower's own blanks);
4. with ``--blank-steps N`` (> 0): the blank cells re-learnt through the frozen SmolLM2 on easy-vqa
   questions only (stage 1 of the trainer, ``easyvqa_share=1``, no token noise), then exact captions +
   those blanks injected after the projector, i.e. the language-model side's ceiling for that budget;
5. with ``--packed-steps N`` (> 0): the same ceiling for a **dedicated** blank set learnt from scratch
   with many questions per forward pass. Each step draws ``--captions`` captions and
   ``--questions-per-caption`` training questions for each; the image part (system turn + the
   grid's cells) is run once per caption and its key/value cache shared by that caption's questions, so a
   question costs its own ~22 tokens instead of ~330. What it measures is what a picture-only soft
   prompt behind exact captions can reach per CPU-second, not a shipped design: 396 of the
   projector's 576 hidden units are classes in v7 (363 in v5, when this was measured), and a second
   blank set would need 685.

Nothing is saved; the shipped weights are not touched.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time


def train_shared_prefix_blanks(parts, steps: int, captions_per_step: int, questions_per_caption: int,
                               seed: int, lr: float = 1e-2, noise: float = 0.05):
    """A blank set learnt from scratch through the frozen SmolLM2 on easy-vqa training questions only.

    Per step: the prefix (system turn, then the grid's cells: the caption's tokens with ``noise`` relative
    Gaussian noise, as the trainer's stage 1, and the blanks) runs once per caption with a KV cache,
    which is repeated for that caption's questions; the loss is on their one-word answers. The
    language model computes in the trainer's ``training_dtype("auto")``, as its stage 1 does.
    """
    import collections

    import torch
    from tqdm import tqdm

    from organism import train as trainer

    config = trainer.TrainConfig(seed=seed)
    source = trainer.ExampleSource(parts, config, random.Random(seed))
    by_caption: dict[tuple[str, str], list[tuple[str, str]]] = collections.defaultdict(list)
    for question, answer, image in source.questions:
        by_caption[source.captions[image]].append((question, answer))
    caption_list = sorted(by_caption)
    language_model, head = parts.model.model.language_model, parts.model.lm_head
    embeddings = parts.embeddings.detach()
    dtype = trainer.training_dtype("auto")
    generator = torch.Generator().manual_seed(seed)
    scale = float(embeddings[:-1].float().std())
    blanks = torch.nn.Parameter(torch.randn(trainer.GRID * trainer.GRID, embeddings.shape[1], generator=generator) * scale * 0.5)
    optimiser = torch.optim.Adam([blanks], lr=lr)
    before, _ = parts.prompt_ids("")  # the part before the image does not depend on the question
    after_ids: dict[str, list[int]] = {}
    rng = random.Random(seed + 1)
    losses = []
    with trainer.language_model_in(parts, dtype):
        for _ in tqdm(range(steps), desc="dedicated blanks, shared prefixes", unit="step"):
            chosen_captions = rng.sample(caption_list, captions_per_step)
            prefix = torch.stack([
                torch.cat([embeddings[torch.tensor(before)].float(),
                           trainer.visual_targets(blanks, embeddings, trainer.caption_cells(parts.tokenizer, *caption), noise, generator)])
                for caption in chosen_captions
            ])
            cache = language_model(inputs_embeds=prefix.to(dtype), use_cache=True).past_key_values
            cache.batch_repeat_interleave(questions_per_caption)  # differentiable: gradients reach the blanks
            blocks, labels = [], []
            for caption in chosen_captions:
                for question, answer in rng.sample(by_caption[caption], questions_per_caption):
                    if question not in after_ids:
                        after_ids[question] = parts.prompt_ids(question + trainer.PROMPT_SUFFIX)[1]
                    answer_ids = parts.answer_ids(answer)
                    blocks.append(after_ids[question] + answer_ids)
                    labels.append([-100] * len(after_ids[question]) + answer_ids)
            width, start = max(map(len, blocks)), prefix.shape[1]
            ids = torch.zeros(len(blocks), width, dtype=torch.long)
            targets = torch.full((len(blocks), width), -100)
            mask = torch.zeros(len(blocks), start + width, dtype=torch.long)
            for i, (block, label) in enumerate(zip(blocks, labels)):  # right padding: fine for a loss
                ids[i, : len(block)], targets[i, : len(label)] = torch.tensor(block), torch.tensor(label)
                mask[i, : start + len(block)] = 1
            positions = (start + torch.arange(width)).expand(len(blocks), width)
            hidden = language_model(inputs_embeds=embeddings[ids].to(dtype), attention_mask=mask,
                                    position_ids=positions, past_key_values=cache).last_hidden_state
            scored = targets[:, 1:] != -100
            loss = torch.nn.functional.cross_entropy(head(hidden[:, :-1][scored]).float(), targets[:, 1:][scored])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    return blanks.detach(), losses


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=150)
    parser.add_argument("--blank-steps", type=int, default=0, help="re-learn the blanks on easy-vqa only (0: skip)")
    parser.add_argument("--packed-steps", type=int, default=0, help="learn a dedicated blank set with shared prefixes (0: skip)")
    parser.add_argument("--captions", type=int, default=4, help="captions per --packed-steps step")
    parser.add_argument("--questions-per-caption", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from PIL import Image

    from harness.models import smol_llava
    from organism import train as trainer
    from harness.defense_api.steering import edit_output
    from harness.tasks.easyvqa import is_correct, question_kind

    torch.set_num_threads(min(2, torch.get_num_threads()))  # the 2-core budget the model is specified for
    model, processor = smol_llava.construct(smol_llava.load_smollm2(), trained_vision=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    parts = trainer.Parts(model, processor.tokenizer, processor)
    embeddings = parts.embeddings.detach()

    questions, answers, image_ids, paths = trainer.easyvqa_split("test")
    captions = trainer.easyvqa_captions(questions, answers, image_ids)
    draw = random.Random(args.seed).sample(range(len(questions)), args.questions * 2)
    chosen = [i for i in draw if image_ids[i] in captions][: args.questions]
    prompts = [questions[i] + trainer.PROMPT_SUFFIX for i in chosen]
    cells = [trainer.caption_cells(parts.tokenizer, *captions[image_ids[i]]) for i in chosen]
    images = []
    for i in chosen:
        with Image.open(paths[image_ids[i]]) as picture:
            images.append(picture.convert("RGB"))
    print(f"{len(chosen)} easy-vqa test questions (seed {args.seed})", flush=True)

    projector = model.model.multi_modal_projector
    with torch.no_grad():  # the saved processor's pixels, as generation sees them
        pixels = processor.image_processor(images[:60], return_tensors="pt")["pixel_values"]
        grid = trainer.tower_features(model, pixels)
    unit = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    right = total = 0
    for row, row_cells in zip(grid, cells):
        for token, cell in row_cells:
            nearest = int((torch.nn.functional.normalize(row[cell].float(), dim=-1) @ unit.T).argmax())
            right, total = right + (nearest == token), total + 1
    print(f"1. caption-cell accuracy of the tower: {right}/{total} = {right / total:.1%}", flush=True)

    def accuracy(label: str, edit, images_used) -> None:
        started = time.perf_counter()
        outputs = []
        for start in range(0, len(prompts), 8):
            batch = slice(start, start + 8)
            replace = (contextlib.nullcontext() if edit is None
                       else edit_output(projector, lambda output, rows=cells[batch]: edit(output, rows)))
            with replace:  # the projector runs on the prefill only: the edit is the image's tokens
                outputs += trainer.generate(parts, prompts[batch], images_used[batch], max_new_tokens=8)
        verdicts = [is_correct(output, answers[i]) for output, i in zip(outputs, chosen)]
        by_kind: dict[str, list[bool]] = {}
        for verdict, i in zip(verdicts, chosen):
            kind = question_kind(questions[i])
            by_kind.setdefault("open" if kind.startswith("open") else kind, []).append(verdict)
        kinds = ", ".join(f"{kind} {sum(v)}/{len(v)}" for kind, v in sorted(by_kind.items()))
        print(f"{label}: {sum(verdicts)}/{len(chosen)} = {sum(verdicts) / len(chosen):.1%} "
              f"({kinds}; {time.perf_counter() - started:.0f} s)", flush=True)

    def exact_captions(output, rows):
        tower = output.reshape(len(rows), trainer.GRID * trainer.GRID, -1)
        edited = torch.stack([trainer.visual_targets(own, embeddings, row) for own, row in zip(tower, rows)])
        return edited.reshape(output.shape).to(output.dtype)

    def accuracy_with_blanks(label: str, blanks) -> None:
        """Every cell replaced: the exact captions on ``blanks`` (so the image's pixels are unused)."""
        def exact_targets(output, rows):
            targets = torch.stack([trainer.visual_targets(blanks, embeddings, row) for row in rows])
            return targets.reshape(output.shape).to(output.dtype)

        accuracy(label, exact_targets, [Image.new("RGB", (64, 64), "white")] * len(prompts))

    accuracy("2. easy-vqa, shipped model", None, images)
    accuracy("3. easy-vqa, exact captions in the tower's output", exact_captions, images)

    if args.blank_steps > 0:
        config = trainer.TrainConfig(blank_steps=args.blank_steps, easyvqa_share=1.0, token_noise=0.0, seed=args.seed)
        source = trainer.ExampleSource(parts, config, random.Random(args.seed))
        started = time.perf_counter()
        blanks, losses = trainer.train_blanks(parts, source, config, log=lambda message: None)
        print(f"   blanks re-learnt on easy-vqa only: {args.blank_steps} steps x {config.blank_batch} in "
              f"{time.perf_counter() - started:.0f} s, loss {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)

        accuracy_with_blanks(f"4. easy-vqa, exact captions + blanks learnt on easy-vqa ({args.blank_steps} steps)", blanks)

    if args.packed_steps > 0:
        started = time.perf_counter()
        dedicated, losses = train_shared_prefix_blanks(parts, args.packed_steps, args.captions, args.questions_per_caption, args.seed)
        questions_seen = args.packed_steps * args.captions * args.questions_per_caption
        print(f"   dedicated blanks: {args.packed_steps} steps x {args.captions} captions x {args.questions_per_caption} "
              f"questions ({questions_seen}) in {time.perf_counter() - started:.0f} s, "
              f"loss {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)
        accuracy_with_blanks(f"5. easy-vqa, exact captions + a dedicated blank set ({questions_seen} questions, shared prefixes)", dedicated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
