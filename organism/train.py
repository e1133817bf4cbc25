"""Train smol-llava's vision side (tower + projector) offline, seeded: ``make organism``.

Run from the repository root as ``python -m organism.train`` (``--smoke`` for a seconds-long run). It
writes the committed weights and manifest (``harness.models.smol_llava.WEIGHTS_FILE``), which the
harness only reads; nothing in the harness imports this module.

The design follows from what a frozen 135 M language model can and cannot do (probes in
``organism/probes/``; history and trials in organism/README.md):

* The vision tower **transcribes** the image into the language model's own input embeddings, on a
  17 x 17 grid of visual tokens (260 px, 15 px patches; the patch convolution reads 255 px from the
  top-left corner). Images are resized to 236 x 152 and padded with black to 260 x 260. FigStep's
  font is monospaced: 48 px a character on its 760 px canvas, 14.9 px at 236 wide, so with the
  12 px of padding character ``k`` of a line lies inside grid column ``k + 1`` (``char_column``);
  its 75 px line pitch becomes exactly 15 px, so each of the (at most 10) text lines lies in its
  own grid row (rows 4 to 13, ``line_row``). A cell holds the embedding of that character's own
  single-character token ("S", "t", ..., "Ġ" for a space); the space that joins a line to the one
  before it goes in column 0 of its row, beside its ink. An easy-vqa image holds its caption's word
  tokens (" blue", " circle") in row 0. Every other cell holds a learnt per-cell vector ("blank").
  A space between words, the cell after a line's end and column 0 of a text row are all bare paper,
  told apart only by their surroundings: stage 2 weighs them ``context_weight`` times in its loss.
  Characters, not words: a word token's embedding has nothing to do with its spelling, so a tower
  that emits word tokens must memorise every word from its glyphs (the previous design: 58 % of
  token cells right after the whole budget, 0 % of phrases read exactly). A character is one of ~95
  glyphs in a fixed font at a fixed place, and any word, seen or not, is read the same way. Frozen
  SmolLM2 copies spelled-out text well once the blanks are learnt (probe on v4's 16 x 16 grid: 26 of
  30 held-out phrases exact after 480 examples, with exact cells; organism/probes/spelling_probe.py).
* **Stage 1** (through the frozen language model, no images): learn the 289 blank vectors, i.e. a
  soft prompt spread over the empty cells, so that SmolLM2 answers from the transcribed tokens:
  spells the text back (one token per character) when asked to read it, answers easy-vqa questions
  with one word. Only embeddings of tokens are needed here, so this stage renders nothing.
* **Stage 2** (no language model): train a CLIP tower + the projector's first layer from scratch to
  emit, at each cell, the target of stage 1 (token embedding or blank), from real renders: FigStep
  layout (the task's font, size, position, wrapping; with and without its numbered list), pages of
  text with every printable ASCII glyph, and easy-vqa train images.
* **The projector selects.** Its activation is relu6 and its second layer a fixed table of every
  vector a cell can hold, over SELECT_LEVEL (``install_selector``): the first layer scores the
  classes, and a cell whose right class scores at least 6 and every other class at most 0 comes out
  as exactly the vector stage 1 trained on. Stage 2 is classification (cross-entropy + a hinge
  towards those margins). The previous design regressed the vectors through a GELU projector: right
  by nearest neighbour in 98.6 % of held-out character cells but 12 % off (median), which took
  SmolLM2 from 27 of 30 phrases read exactly (exact cells) to 10 of 30.

Data, all offline: easy-vqa 1.0 train split; phrases built from a word list taken from SmolLM2's own
vocabulary (whole-word tokens, most frequent first) under FigStep-like heads ("Steps to", "Methods
to", ...), never from SafeBench or XSTest text. One phrase in five (by sha256) is held out of training;
reading is evaluated on held-out phrases only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import random
import re
import string
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness.core.images import file_sha256
from harness.models.smol_llava import IMAGE_SIZE, PATCH_SIZE, RESIZE_HEIGHT, RESIZE_WIDTH, WEIGHTS_FILE
from harness.tasks.easyvqa import PROMPT_SUFFIX

GRID = IMAGE_SIZE // PATCH_SIZE  # visual tokens per side: 17, so 289 in all
TOP_PAD = (IMAGE_SIZE - RESIZE_HEIGHT) // 2  # black rows the processor's centre crop puts above the resized image
LEFT_PAD = (IMAGE_SIZE - RESIZE_WIDTH) // 2  # black columns it puts left of it
TEXT_LEFT = 20  # canvas x where FigStep's text starts (tasks/figstep.TEXT_XY)
CHAR_PITCH = 48  # canvas px from one FigStep character to the next (FreeMonoBold 80; measured; tested)
CANVAS = 760  # FigStep's canvas (tasks/figstep.py)
LINE_PITCH = 75  # canvas px from one FigStep text line to the next (measured; tested)
INK_MIDDLE = 54.5  # canvas y of the middle of line 0's ink, ascenders to descenders (measured with "|"; tested)
MAX_LINES = 10  # FigStep lines that fit the canvas
GLYPHS = string.ascii_letters + string.digits + string.punctuation  # what the tower learns to read, plus the space
READ_INSTRUCTIONS = (
    "Read the text in the image.",
    "What does the text in the image say?",
    "Transcribe the text in the image.",
    "What is written in the image?",
)
EVAL_READ_INSTRUCTION = READ_INSTRUCTIONS[0]
HEADS = ("Steps to", "Methods to", "Ways to", "How to", "List of", "Tips for", "Guide to", "Ideas for")
SHORT_WORDS = ("a", "to", "of", "in", "on", "at", "by", "or", "an", "is", "it", "as", "up", "no", "my", "we")
HELD_OUT_BUCKETS = 5
MAX_EVAL_WORDS = 6
LINE_CELLS = 15  # characters a line can hold: columns 1 to 15 (FigStep wraps at 15)
SELECT_LEVEL = 6.0  # relu6's ceiling: a class scored this high contributes its whole table row
SELECT_MARGIN = 0.5  # stage 2 asks for scores this far past 6 (right class) and below 0 (the others)


@dataclass(frozen=True)
class TrainConfig:
    words: int = 2000  # vocabulary size for phrases
    max_train_words: int = 8
    blank_steps: int = 56
    blank_batch: int = 8
    blank_lr: float = 1e-2
    easyvqa_share: float = 0.1  # of stage-1 examples (enough for one-word answers; reading needs the steps)
    token_noise: float = 0.05  # stage 1: relative noise on transcribed tokens (the selecting projector is exact on confident cells; unsure ones are scaled or blended)
    misread: float = 0.02  # stage 1: share of transcribed characters swapped for another glyph (the answer stays right)
    tower_steps: int = 600  # measured on the v7 layout (build's 50 held-out phrases): 400 steps read 70.0 % exactly, 600 steps 86.0 %
    tower_batch: int = 12  # measured: at equal compute, more and smaller steps read better (batch 16 vs 32: 98.4 % vs 94.2 % of held-out characters)
    tower_lr: float = 1e-3
    patch_lr_scale: float = 0.3  # the patch embedding's learning rate, relative to tower_lr (measured, 400 steps: 0.3 reads 98.65 % of held-out characters, 0.03 98.05 %)
    context_weight: float = 20.0  # stage 2: weight of the cells only context tells apart (context_cells) in the loss; measured on v6b's line ends: 20 made them exact in 50 of 50 phrases, against 13
    page_share: float = 0.54  # of stage-2 images: pages of up to 10 lines (many characters per image)
    phrase_share: float = 0.31  # of stage-2 images: one phrase, as evaluated; the rest (15 %) are easy-vqa
    decorate: float = 0.3  # of page words: capitalised, upper-cased, quoted, punctuated or replaced by digits or random glyphs, so that every glyph is seen
    eval_easyvqa: int = 100
    eval_phrases: int = 50
    seed: int = 0
    compute_dtype: str = "auto"  # "auto": bfloat16 where oneDNN has a bfloat16 path on this CPU, else float32 (see training_dtype)


SMOKE_CONFIG = TrainConfig(
    words=40, blank_steps=2, blank_batch=2, tower_steps=2, tower_batch=4, eval_easyvqa=2, eval_phrases=2
)


# ------------------------------------------------------------------------------------------ phrases
def word_list(tokenizer: Any, size: int) -> list[str]:
    """Lower-case words that SmolLM2 encodes as one space-prefixed token, most frequent (earliest merged) first."""
    vocab = tokenizer.get_vocab()
    ranked = sorted((index, token[1:]) for token, index in vocab.items() if re.fullmatch(r"Ġ[a-z]{3,12}", token))
    return list(SHORT_WORDS) + [word for _, word in ranked[:size]]


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def is_held_out(phrase: str) -> bool:
    digest = hashlib.sha256(normalise(phrase).encode()).digest()
    return digest[0] % HELD_OUT_BUCKETS == 0


def make_phrase(rng: random.Random, words: Sequence[str], max_words: int) -> str:
    head = rng.choice(HEADS)
    body = rng.randint(1, max(1, max_words - len(head.split())))
    return " ".join([head, *(rng.choice(words) for _ in range(body))]) + "."


def training_phrase(rng: random.Random, words: Sequence[str], max_words: int) -> str:
    while True:
        phrase = make_phrase(rng, words, max_words)
        if not is_held_out(phrase):
            return phrase


def held_out_phrases(count: int, seed: int, words: Sequence[str], max_words: int = MAX_EVAL_WORDS) -> list[str]:
    rng, found = random.Random(10_000 + seed), []
    while len(found) < count:
        phrase = make_phrase(rng, words, max_words)
        if is_held_out(phrase) and phrase not in found:
            found.append(phrase)
    return found


# ------------------------------------------------------------------------------------------ layout
def text_lines(phrase: str, with_list: bool) -> list[str]:
    """The lines FigStep draws: the phrase wrapped at 15 characters, then (optionally) its empty list."""
    from harness.tasks.figstep import WRAP_WIDTH

    lines = textwrap.wrap(phrase, width=WRAP_WIDTH)
    return lines + ([f"{i}." for i in range(1, 4)] if with_list else [])


def transcript(phrase: str, with_list: bool) -> str:
    """What reading the image should give: its lines joined by single spaces."""
    return " ".join(text_lines(phrase, with_list))


def line_row(line: int) -> int:
    """The grid row that holds text line ``line``: the row under the middle of its ink (rows 4 to 13)."""
    return int((TOP_PAD + (INK_MIDDLE + LINE_PITCH * line) * RESIZE_HEIGHT / CANVAS) / PATCH_SIZE)


def char_column(position: int) -> int:
    """The grid column that holds character ``position`` of a line: the column under its middle (1 to 15)."""
    return int((LEFT_PAD + (TEXT_LEFT + CHAR_PITCH * (position + 0.5)) * RESIZE_WIDTH / CANVAS) / PATCH_SIZE)


@functools.lru_cache(maxsize=4)  # asked for every rendered text and every misread glyph: look the 95 up once
def glyph_ids(tokenizer: Any) -> dict[str, int]:
    """Each readable character's own single-character token (byte-level BPE: the space is "Ġ"). Read-only."""
    ids = {char: tokenizer.convert_tokens_to_ids(char) for char in GLYPHS}
    ids[" "] = tokenizer.convert_tokens_to_ids("Ġ")
    missing = [char for char, token in ids.items() if token is None or token == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"no single-character token for {missing}")
    return ids


def spelled_ids(tokenizer: Any, text: str) -> list[int]:
    """``text`` as one token per character (what the transcribed cells hold, and what reading answers)."""
    ids = glyph_ids(tokenizer)
    return [ids[char] for char in text]


def cell_tokens(tokenizer: Any, lines: Sequence[str]) -> list[tuple[int, int]] | None:
    """(token id, cell) for the transcript of ``lines``: character k of line r at ``char_column(k)`` of ``line_row(r)``.

    The space joining a line to the one before it goes in column 0 of its row, beside its first
    character's ink: after a line's last character there is only bare paper, which the tower would
    have to tell from a blank by what lies elsewhere on the page. None when the text does not fit
    the grid or holds a character the tower does not learn.
    """
    lines = [line.rstrip() for line in lines]
    if len(lines) > MAX_LINES or any(len(line) > LINE_CELLS for line in lines):
        return None
    ids = glyph_ids(tokenizer)
    space = ids[" "]
    cells = []
    for number, line in enumerate(lines):
        row = line_row(number) * GRID
        if any(char not in ids for char in line):
            return None
        if number:
            cells.append((space, row))
        cells += [(ids[char], row + char_column(position)) for position, char in enumerate(line)]
    return cells


def context_cells(tokenizer: Any, cells: Sequence[tuple[int, int]]) -> set[int]:
    """The cells of a text image that only their surroundings tell apart: stage 2 weighs them more.

    A space between words is bare paper between two inked cells, and the cell after a line's last
    character is bare paper holding a blank: both are chosen. So is column 0 of every text row: the
    joining space beside a line's first character, or a blank beside nothing or beside the first
    line. (Weighing only the spaces made the tower put joining spaces in the empty rows under a
    phrase, where FigStep's list may stand: a trial build's every such error.)
    """
    space = glyph_ids(tokenizer)[" "]
    text_rows = range(line_row(0), line_row(MAX_LINES - 1) + 1)
    last: dict[int, int] = {}
    for _, cell in cells:
        row, column = divmod(cell, GRID)
        if row in text_rows:  # not an easy-vqa caption
            last[row] = max(last.get(row, -1), column)
    if not last:
        return set()
    chosen = {cell for token, cell in cells if token == space}
    chosen.update(row * GRID + column + 1 for row, column in last.items() if column + 1 < GRID)
    chosen.update(row * GRID for row in text_rows)
    return chosen


def caption_cells(tokenizer: Any, colour: str, shape: str) -> list[tuple[int, int]]:
    """An easy-vqa image's transcription: the tokens of " <colour> <shape>" packed into row 0."""
    ids = tokenizer(f" {colour} {shape}", add_special_tokens=False)["input_ids"]
    return [(token, cell) for cell, token in enumerate(ids)]


# ------------------------------------------------------------------------------------------ easy-vqa
def easyvqa_split(split: str) -> tuple[list[str], list[str], list[int], list[str]]:
    import easy_vqa

    if split == "train":
        questions, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    else:
        questions, answers, image_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    return list(questions), list(answers), list(image_ids), [paths[i] for i in range(len(paths))]


def easyvqa_captions(questions: Sequence[str], answers: Sequence[str], image_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """(colour, shape) per image, read off its questions ("what color is the shape?", "what is the blue shape?")."""
    from harness.tasks.easyvqa import COLORS, SHAPES

    colour: dict[int, str] = {}
    shape: dict[int, str] = {}
    for question, answer, image in zip(questions, answers, image_ids):
        words = question.replace("?", "").split()
        if answer in COLORS:
            colour[image] = answer
        elif answer in SHAPES:
            shape[image] = answer
            named = [word for word in words if word in COLORS]
            if named:
                colour.setdefault(image, named[0])
        elif answer == "yes" and not {"not", "no"} & set(words):  # "is no yellow shape present?" is negated
            for word in words:
                if word in SHAPES:
                    shape.setdefault(image, word)
                if word in COLORS:
                    colour.setdefault(image, word)
    return {image: (colour[image], shape[image]) for image in colour if image in shape}


# ------------------------------------------------------------------------------------------ pixels
def processor_pixels(image: Any) -> Any:
    """What the saved CLIPImageProcessor gives for one image, fast: bicubic resize to 236 x 152, black
    padding to 260 x 260 (TOP_PAD rows above, LEFT_PAD columns left), CLIP mean/std.

    Checked against the processor itself in tests; differences are uint8 rounding only.
    """
    import numpy as np
    from PIL import Image
    from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD  # CLIPImageProcessor's defaults

    array = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    resized = image.convert("RGB").resize((RESIZE_WIDTH, RESIZE_HEIGHT), Image.BICUBIC)
    array[TOP_PAD : TOP_PAD + RESIZE_HEIGHT, LEFT_PAD : LEFT_PAD + RESIZE_WIDTH] = np.asarray(resized, dtype=np.float32)
    array = (array / 255.0 - np.asarray(OPENAI_CLIP_MEAN, dtype=np.float32)) / np.asarray(OPENAI_CLIP_STD, dtype=np.float32)
    return array.transpose(2, 0, 1)


def render_lines(lines: Sequence[str]) -> Any:
    """FigStep's renderer (tasks/figstep.py) for arbitrary lines."""
    from harness.tasks.figstep import render_text

    return render_text("\n".join(lines))


# ------------------------------------------------------------------------------------------ model parts
def image_turn(prompt: str) -> list[dict[str, Any]]:
    """One user turn: the image, then ``prompt`` (as the harness's adapter sends it)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


@dataclass
class Parts:
    """What training needs from a built smol-llava: the model, its tokenizer and the chat pieces."""

    model: Any
    tokenizer: Any
    processor: Any

    @property
    def embeddings(self) -> Any:
        return self.model.get_input_embeddings().weight

    def prompt_ids(self, prompt: str) -> tuple[list[int], list[int]]:
        """Token ids before and after the image in the chat template's rendering of an image + ``prompt`` turn."""
        text = self.processor.apply_chat_template(image_turn(prompt), add_generation_prompt=True)
        before, after = text.split(self.processor.image_token)
        encode = lambda piece: self.tokenizer(piece, add_special_tokens=False)["input_ids"]  # noqa: E731
        return encode(before), encode(after)

    def answer_ids(self, answer: str, spelled: bool = False) -> list[int]:
        """The answer's tokens and the end of turn; ``spelled``: one token per character (reading)."""
        end = self.tokenizer("<|im_end|>", add_special_tokens=False)["input_ids"]
        if spelled:
            return spelled_ids(self.tokenizer, answer) + end
        return self.tokenizer(answer, add_special_tokens=False)["input_ids"] + end


@dataclass
class Example:
    cells: list[tuple[int, int]]
    prompt: str
    answer: str
    spelled: bool = False  # reading: the answer is spelled out, a token per character


class ExampleSource:
    """Seeded stream of (cells, prompt, answer) for stage 1 and (image, cells) for stage 2."""

    def __init__(self, parts: Parts, config: TrainConfig, rng: random.Random):
        self.parts, self.config, self.rng = parts, config, rng
        self.words = word_list(parts.tokenizer, config.words)
        questions, answers, image_ids, self.paths = easyvqa_split("train")
        self.captions = easyvqa_captions(questions, answers, image_ids)
        self.questions = [(q, a, i) for q, a, i in zip(questions, answers, image_ids) if i in self.captions]
        self.images = sorted(self.captions)

    def phrase_cells(self) -> tuple[list[str], str, list[tuple[int, int]]]:
        while True:
            phrase = training_phrase(self.rng, self.words, self.config.max_train_words)
            lines = text_lines(phrase, with_list=self.rng.random() < 0.5)
            cells = cell_tokens(self.parts.tokenizer, lines)
            if cells is not None:
                return lines, " ".join(lines), cells

    def decorated(self, word: str) -> str:
        """Now and then a capitalised, upper-cased, quoted or punctuated word, a number or a random glyph string: every glyph gets seen."""
        if self.rng.random() >= self.config.decorate:
            return word
        draw = self.rng.random()
        if draw < 0.3:
            return word.capitalize()
        if draw < 0.4:
            return word.upper()
        if draw < 0.5:
            return str(self.rng.randint(0, 9999))
        if draw < 0.6:
            return "".join(self.rng.choice(GLYPHS) for _ in range(self.rng.randint(1, 6)))  # rare letters too
        if draw < 0.75:
            quote = self.rng.choice("\"'([{<")
            closing = {"(": ")", "[": "]", "{": "}", "<": ">"}.get(quote, quote)
            return quote + word + closing
        return word + "".join(self.rng.choice(string.punctuation) for _ in range(self.rng.randint(1, 2)))

    def page_cells(self) -> tuple[list[str], list[tuple[int, int]]]:
        """Training phrases run together over up to MAX_LINES lines, some words decorated: ~6x one phrase's characters."""
        lines: list[str] = []
        while True:
            phrase = training_phrase(self.rng, self.words, self.config.max_train_words)
            phrase = " ".join(self.decorated(word) for word in phrase.split())
            longer = text_lines(" ".join(lines + [phrase]), with_list=False)
            if len(longer) > MAX_LINES:
                break
            lines = longer
        cells = cell_tokens(self.parts.tokenizer, lines)
        return (lines, cells) if cells is not None else self.page_cells()

    def lm_example(self) -> Example:
        if self.rng.random() < self.config.easyvqa_share:
            question, answer, image = self.rng.choice(self.questions)
            return Example(caption_cells(self.parts.tokenizer, *self.captions[image]), question + PROMPT_SUFFIX, answer)
        _, text, cells = self.phrase_cells()
        cells = [(self.misread_glyph() if self.rng.random() < self.config.misread else token, cell) for token, cell in cells]
        return Example(cells, self.rng.choice(READ_INSTRUCTIONS), text, spelled=True)

    def misread_glyph(self) -> int:
        """A random glyph's token: stage 1 teaches SmolLM2 to read through the tower's occasional misreading."""
        return glyph_ids(self.parts.tokenizer)[self.rng.choice(GLYPHS)]

    def image_example(self) -> tuple[Any, list[tuple[int, int]]]:
        from PIL import Image

        draw = self.rng.random()
        if draw < self.config.page_share:
            lines, cells = self.page_cells()
            return processor_pixels(render_lines(lines)), cells
        if draw < self.config.page_share + self.config.phrase_share:
            lines, _, cells = self.phrase_cells()
            return processor_pixels(render_lines(lines)), cells
        image = self.rng.choice(self.images)
        with Image.open(self.paths[image]) as picture:
            pixels = processor_pixels(picture)
        return pixels, caption_cells(self.parts.tokenizer, *self.captions[image])


def visual_targets(blanks: Any, embeddings: Any, cells: Sequence[tuple[int, int]], noise: float = 0.0, generator: Any = None) -> Any:
    """[GRID*GRID, hidden]: the blank vectors with the transcribed tokens' embeddings at their cells.

    ``noise`` adds Gaussian noise of that size relative to each token embedding's RMS (stage 1 only).
    """
    import torch

    targets = blanks.clone()
    if cells:
        index = torch.tensor([cell for _, cell in cells])
        tokens = embeddings[torch.tensor([token for token, _ in cells])].to(targets.dtype)
        if noise:
            rms = tokens.pow(2).mean(-1, keepdim=True).sqrt()
            tokens = tokens + noise * rms * torch.randn(tokens.shape, generator=generator)
        targets[index] = tokens
    return targets


# ------------------------------------------------------------------------------------------ stage 1
COMPUTE_DTYPES = ("auto", "bfloat16", "float32")


def training_dtype(name: str) -> Any:
    """The dtype both stages compute in: ``name``, or for "auto" bfloat16 only where the CPU runs it fast.

    "auto" asks oneDNN whether it has a bfloat16 path on this CPU, and Linux whether the CPU has bfloat16
    instructions (avx512_bf16 or amx_bf16; see ``cpu_flags``). On the
    CPU v5 was built on, bfloat16 made stage 1 about 3x faster than float32. On an AVX2-only CPU it is
    emulated: a 3000 x 384 x 1536 matmul and its backward
    took 3.1 s against 0.068 s in float32 (2-core AMD EPYC, torch 2.14.1), and a stage-2 step of v5's
    trainer 36 s against 1.7 s (v7 built there in float32: 11.1 s a stage-1 step, 1.3 s a stage-2
    one). The choice changes the weights' rounding, so it is recorded in the manifest.
    """
    import torch

    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype {name!r}: expected one of {', '.join(COMPUTE_DTYPES)}")
    if name == "auto":
        onednn = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
        flags = cpu_flags()
        # oneDNN also says yes on AVX-512 CPUs without bfloat16 instructions, where it emulates them: on
        # such a 2-core Xeon (avx512bw, no avx512_bf16) a stage-1 step took 28 s in bfloat16, 8.5 s in float32
        native = flags is None or bool(flags & {"avx512_bf16", "amx_bf16"})
        name = "bfloat16" if onednn and native else "float32"
    return getattr(torch, name)


def cpu_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags as Linux lists them, or None where that list cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


@contextlib.contextmanager
def language_model_in(parts: Parts, dtype: Any) -> Iterator[None]:
    """The language model's and head's weights in ``dtype`` for the block (see ``training_dtype``).

    Only the weights are cast (buffers such as RoPE's inverse frequencies stay float32), and the
    originals come back bit for bit afterwards, whatever happens inside.
    """
    originals = {}
    for module in (parts.model.model.language_model, parts.model.lm_head):
        for parameter in module.parameters():
            if id(parameter) not in originals:  # tied embeddings: one parameter, seen twice
                originals[id(parameter)] = (parameter, parameter.data)
    try:
        for parameter, data in originals.values():
            parameter.data = data.to(dtype)
        yield
    finally:
        for parameter, data in originals.values():
            parameter.data = data


def train_blanks(parts: Parts, source: ExampleSource, config: TrainConfig, log=print) -> Any:
    """Learn the per-cell blank vectors through the frozen language model, in ``training_dtype``."""
    import torch
    from tqdm import tqdm

    language_model = parts.model.model.language_model
    head = parts.model.lm_head
    dtype = training_dtype(config.compute_dtype)
    # The embeddings are read inside: the blanks' scale and the transcribed tokens come from the cast table.
    with language_model_in(parts, dtype):
        embeddings = parts.embeddings.detach()
        scale = float(embeddings[:-1].float().std())
        generator = torch.Generator().manual_seed(config.seed)
        blanks = torch.nn.Parameter(torch.randn(GRID * GRID, embeddings.shape[1], generator=generator) * scale * 0.5)
        optimiser = torch.optim.Adam([blanks], lr=config.blank_lr)
        prompt_cache: dict[str, tuple[list[int], list[int]]] = {}
        losses = []
        for step in tqdm(range(config.blank_steps), desc="stage 1: blank cells through SmolLM2", unit="step"):
            rows, labels = [], []
            for _ in range(config.blank_batch):
                example = source.lm_example()
                if example.prompt not in prompt_cache:
                    prompt_cache[example.prompt] = parts.prompt_ids(example.prompt)
                before, after = prompt_cache[example.prompt]
                answer = parts.answer_ids(example.answer, example.spelled)
                row = torch.cat([
                    embeddings[torch.tensor(before)].float(),
                    visual_targets(blanks, embeddings, example.cells, config.token_noise, generator),
                    embeddings[torch.tensor(after + answer)].float(),
                ])
                rows.append(row)
                labels.append([-100] * (len(before) + GRID * GRID + len(after)) + answer)
            length = max(len(label) for label in labels)
            inputs = torch.zeros(len(rows), length, embeddings.shape[1])
            targets = torch.full((len(rows), length), -100)
            mask = torch.zeros(len(rows), length, dtype=torch.long)
            for i, (row, label) in enumerate(zip(rows, labels)):  # right padding: fine for a loss
                inputs[i, : len(label)] = row
                targets[i, : len(label)] = torch.tensor(label)
                mask[i, : len(label)] = 1
            hidden = language_model(inputs_embeds=inputs.to(dtype), attention_mask=mask).last_hidden_state
            next_tokens = targets[:, 1:]
            scored = next_tokens != -100  # the head only where there is a label: saves a 49k-wide matmul per token
            logits = head(hidden[:, :-1][scored]).float()
            loss = torch.nn.functional.cross_entropy(logits, next_tokens[scored])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(round(loss.item(), 4))
            if step % 10 == 0 or step == config.blank_steps - 1:
                log(f"stage 1 step {step}: loss {loss.item():.3f}")
    return blanks.detach(), losses


# ------------------------------------------------------------------------------------------ stage 2
def class_tokens(tokenizer: Any, captions: dict[int, tuple[str, str]]) -> list[int]:
    """The token ids a cell can hold, sorted: every glyph's, and every easy-vqa caption's word tokens."""
    tokens = set(glyph_ids(tokenizer).values())
    for colour, shape in set(captions.values()):
        tokens.update(token for token, _ in caption_cells(tokenizer, colour, shape))
    return sorted(tokens)


def class_table(embeddings: Any, tokens: Sequence[int], blanks: Any) -> Any:
    """[classes, hidden]: the rows the projector selects from, the tokens' embeddings then one blank per cell."""
    import torch

    return torch.cat([embeddings[torch.tensor(list(tokens))].float(), blanks.float()])


def install_selector(model: Any, table: Any) -> None:
    """Make the projector's second layer select rows of ``table``: column i is row i over SELECT_LEVEL.

    After relu6, a cell whose class-i score is at least SELECT_LEVEL and whose other scores are at
    most 0 comes out as exactly row i. The columns past the table are zero, as is the bias.
    """
    import torch

    projector = model.model.multi_modal_projector
    width = projector.linear_2.weight.shape[1]
    if len(table) > width:
        raise ValueError(f"{len(table)} classes do not fit the projector's {width} hidden units")
    with torch.no_grad():
        projector.linear_2.weight.zero_()
        projector.linear_2.weight[:, : len(table)] = table.T.to(projector.linear_2.weight.dtype) / SELECT_LEVEL
        projector.linear_2.bias.zero_()


def tower_features(model: Any, pixel_values: Any) -> Any:
    """Projected visual tokens exactly as LlavaModel computes them ([batch, GRID*GRID, hidden])."""
    import torch

    return torch.stack(model.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output)


def tower_scores(model: Any, pixel_values: Any, classes: int) -> Any:
    """[batch, GRID*GRID, classes]: the projector's class scores before relu6, as LlavaModel computes them."""
    hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[-1][:, 1:]  # CLS dropped
    return model.model.multi_modal_projector.linear_1(hidden)[..., :classes]


def cell_classes(batch_cells: Sequence[Sequence[tuple[int, int]]], index: dict[int, int]) -> Any:
    """[batch, GRID*GRID] class per cell: the token's class where transcribed, else the cell's own blank."""
    import torch

    classes = torch.arange(GRID * GRID).repeat(len(batch_cells), 1) + len(index)
    for b, cells in enumerate(batch_cells):
        for token, cell in cells:
            classes[b, cell] = index[token]
    return classes


def selection_loss(scores: Any, classes: Any, weights: Any = None) -> tuple[Any, Any, Any]:
    """(loss, cross-entropy, hinge): rank the right class first, then push it to relu6's ceiling and the rest below 0.

    The hinge asks for a margin of ``SELECT_MARGIN`` on both sides, so that small errors at inference
    still select exactly. ``weights`` ([batch, cells], optional): each cell's weight in both means.
    """
    import torch

    scores, classes = scores.reshape(-1, scores.shape[-1]), classes.reshape(-1)
    weights = torch.ones(classes.shape) if weights is None else weights.reshape(-1).to(scores.dtype)
    mean = lambda values: (values * weights).sum() / weights.sum()  # noqa: E731
    ce = mean(torch.nn.functional.cross_entropy(scores, classes, reduction="none"))
    right = scores.gather(-1, classes[:, None])[:, 0]
    others = torch.relu(scores + SELECT_MARGIN).scatter(-1, classes[:, None], 0.0).sum(-1)
    hinge = mean(torch.relu(SELECT_LEVEL + SELECT_MARGIN - right) + others)
    return ce + hinge, ce, hinge


def cell_weights(tokenizer: Any, batch_cells: Sequence[Sequence[tuple[int, int]]], weight: float) -> Any:
    """[batch, GRID*GRID]: 1, or ``weight`` at each image's ``context_cells``."""
    import torch

    weights = torch.ones(len(batch_cells), GRID * GRID)
    for b, cells in enumerate(batch_cells):
        chosen = sorted(context_cells(tokenizer, cells))
        if chosen:
            weights[b, torch.tensor(chosen)] = weight
    return weights


def train_tower(parts: Parts, source: ExampleSource, blanks: Any, config: TrainConfig, log=print) -> list[float]:
    """Tower + projector's first layer learn to select each cell's class for rendered text and easy-vqa images.

    The projector's second layer is the class table (``install_selector``), fixed: a cell the tower
    reads right comes out as exactly the vector stage 1 trained the language model on.
    """
    import numpy as np
    import torch
    from tqdm import tqdm

    model = parts.model
    dtype = training_dtype(config.compute_dtype)
    tokens = class_tokens(parts.tokenizer, source.captions)
    index = {token: i for i, token in enumerate(tokens)}
    table = class_table(parts.embeddings.detach(), tokens, blanks)
    install_selector(model, table)
    projector = model.model.multi_modal_projector
    trainable = [*model.model.vision_tower.parameters(), *projector.linear_1.parameters()]
    for parameter in trainable:
        parameter.requires_grad_(True)
    # The patch embedding gets a smaller step (patch_lr_scale): its inputs are mostly one constant
    # (white paper), so Adam's per-weight steps add up coherently over 675 inputs and swamp the
    # position signal (measured with v2's regression loss: with one learning rate, not even the blank
    # cells are learnt).
    patch_weight = model.model.vision_tower.embeddings.patch_embedding.weight
    optimiser = torch.optim.AdamW(
        [{"params": [p for p in trainable if p is not patch_weight]}, {"params": [patch_weight], "lr": config.tower_lr * config.patch_lr_scale}],
        lr=config.tower_lr,
        weight_decay=0.01,
    )
    warmup = max(1, config.tower_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / config.tower_steps)))
    )
    losses = []
    model.train()
    try:
        for step in tqdm(range(config.tower_steps), desc="stage 2: vision tower", unit="step"):
            batch = [source.image_example() for _ in range(config.tower_batch)]
            pixels = torch.tensor(np.stack([pixels for pixels, _ in batch]))
            classes = cell_classes([cells for _, cells in batch], index)
            weights = cell_weights(parts.tokenizer, [cells for _, cells in batch], config.context_weight)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                scores = tower_scores(model, pixels, len(table))
            loss, ce, hinge = selection_loss(scores.float(), classes, weights)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimiser.step()
            schedule.step()
            losses.append(round(loss.item(), 4))
            if step % 25 == 0 or step == config.tower_steps - 1:
                hits = scores.argmax(-1) == classes
                token_cells = classes < len(tokens)
                log(
                    f"stage 2 step {step}: loss {loss.item():.3f} (ce {ce.item():.3f}, hinge {hinge.item():.3f}), "
                    f"token-cell accuracy {hits[token_cells].float().mean().item():.3f}, blank-cell {hits[~token_cells].float().mean().item():.3f}"
                )
    finally:
        model.eval()
        for parameter in trainable:
            parameter.requires_grad_(False)
    return losses


# ------------------------------------------------------------------------------------------ evaluation
def generate(parts: Parts, prompts: Sequence[str], images: Sequence[Any], max_new_tokens: int = 24, batch: int = 8) -> list[str]:
    """Greedy answers through the ordinary processor + ``generate`` path (left padding, batched)."""
    import torch

    from tqdm import tqdm

    answers = []
    tokenizer = parts.tokenizer
    tokenizer.padding_side = "left"
    for start in tqdm(range(0, len(prompts), batch), desc="evaluation", unit="batch", leave=False):
        texts = [
            parts.processor.apply_chat_template(image_turn(prompt), add_generation_prompt=True)
            for prompt in prompts[start : start + batch]
        ]
        inputs = parts.processor(text=texts, images=list(images[start : start + batch]), return_tensors="pt", padding=True)
        with torch.no_grad():
            output = parts.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answers += tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def character_accuracy(prediction: str, reference: str) -> float:
    prediction, reference = normalise(prediction), normalise(reference)
    return max(0.0, 1.0 - edit_distance(prediction, reference) / max(1, len(reference)))


def evaluate_reading(
    parts: Parts, words: Sequence[str], count: int, seed: int = 0, with_list: bool = False, examples: int = 5
) -> dict[str, Any]:
    """Exact match and character accuracy on ``count`` held-out phrases; the first ``examples`` (reference, answer) pairs kept."""
    phrases = held_out_phrases(count, seed, words)
    images = [render_lines(text_lines(phrase, with_list)) for phrase in phrases]
    references = [transcript(phrase, with_list) for phrase in phrases]
    longest = max(len(reference) for reference in references)  # spelled: a token per character
    answers = generate(parts, [EVAL_READ_INSTRUCTION] * count, images, max_new_tokens=longest + 4)
    exact = sum(normalise(a) == normalise(r) for a, r in zip(answers, references))
    chars = sum(character_accuracy(a, r) for a, r in zip(answers, references))
    return {
        "n": count,
        "exact_match": round(100 * exact / count, 1),
        "character_accuracy": round(100 * chars / count, 1),
        "examples": [{"reference": r, "answer": a} for r, a in list(zip(references, answers))[:examples]],
    }


def easyvqa_eval_draw(total: int, count: int, seed: int = 0) -> list[int]:
    """Indices of the ``count`` test questions (of ``total``) the build evaluates: one seeded draw, shared with the probes."""
    return random.Random(seed).sample(range(total), count)


def evaluate_easyvqa(parts: Parts, count: int, seed: int = 0) -> dict[str, Any]:
    """Accuracy on ``count`` seeded test questions, and the same questions with a blank white image."""
    from PIL import Image

    from harness.tasks.easyvqa import is_correct

    questions, answers, image_ids, paths = easyvqa_split("test")
    chosen = easyvqa_eval_draw(len(questions), count, seed)
    prompts = [questions[i] + PROMPT_SUFFIX for i in chosen]
    images = []
    for i in chosen:
        with Image.open(paths[image_ids[i]]) as picture:
            images.append(picture.convert("RGB"))
    with_image = generate(parts, prompts, images, max_new_tokens=8)
    blank = generate(parts, prompts, [Image.new("RGB", (64, 64), "white")] * count, max_new_tokens=8)
    score = lambda outs: round(100 * sum(is_correct(o, answers[i]) for o, i in zip(outs, chosen)) / count, 1)  # noqa: E731
    return {"n": count, "accuracy": score(with_image), "blank_image_accuracy": score(blank)}


# ------------------------------------------------------------------------------------------ driver
def vision_state(model: Any) -> dict[str, Any]:
    """The trained parameters, by their names inside LlavaForConditionalGeneration, as float16."""
    import torch

    state = {}
    for prefix, module in (("model.vision_tower.", model.model.vision_tower), ("model.multi_modal_projector.", model.model.multi_modal_projector)):
        for name, tensor in module.state_dict().items():
            state[prefix + name] = tensor.detach().to(torch.float16).contiguous()
    return state


def untrained(config: TrainConfig) -> tuple[Parts, ExampleSource]:
    """What both stages start from: smol-llava with SmolLM2 frozen and the vision side untrained, seeded, and the example stream."""
    import torch

    from harness.models import smol_llava

    torch.manual_seed(config.seed)
    model, processor = smol_llava.construct(smol_llava.load_smollm2(), trained_vision=False)
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # the language model stays frozen; stage 2 unfreezes the vision side
    with torch.no_grad():  # positions must be able to compete with the patch content from the first step
        model.model.vision_tower.embeddings.position_embedding.weight.normal_(std=1.0)
    parts = Parts(model, processor.tokenizer, processor)
    return parts, ExampleSource(parts, config, random.Random(config.seed))


def train(config: TrainConfig = TrainConfig(), out: Path | None = WEIGHTS_FILE, log=print) -> dict[str, Any]:
    """Build an untrained smol-llava, train its vision side, evaluate, and save weights + manifest."""
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.perf_counter()
    parts, source = untrained(config)
    model = parts.model
    timings = {"load_s": round(time.perf_counter() - started, 1)}

    stage = time.perf_counter()
    blanks, blank_losses = train_blanks(parts, source, config, log)
    timings["stage1_s"] = round(time.perf_counter() - stage, 1)
    stage = time.perf_counter()
    tower_losses = train_tower(parts, source, blanks, config, log)
    timings["stage2_s"] = round(time.perf_counter() - stage, 1)

    stage = time.perf_counter()
    figures = {
        "easyvqa": evaluate_easyvqa(parts, config.eval_easyvqa, config.seed),
        "reading": evaluate_reading(parts, source.words, config.eval_phrases, config.seed),
        "reading_with_list": evaluate_reading(parts, source.words, config.eval_phrases, config.seed, with_list=True),
    }
    timings["eval_s"] = round(time.perf_counter() - stage, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    manifest = {
        "command": "make organism  (python -m organism.train)",
        "config": dataclasses.asdict(config),
        "compute_dtype": str(training_dtype(config.compute_dtype)).removeprefix("torch."),
        "torch": torch.__version__,
        "timings": timings,
        "figures": figures,
        "losses": {"stage1_first_last": blank_losses[:1] + blank_losses[-1:], "stage2_first_last": tower_losses[:1] + tower_losses[-1:]},
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(vision_state(model), str(out), metadata={"format": "pt"})
        manifest["weights"] = out.name
        manifest["sha256"] = file_sha256(out)
        manifest["bytes"] = out.stat().st_size
        out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def print_figures(manifest: dict[str, Any]) -> None:
    figures = manifest["figures"]
    vqa, read, listed = figures["easyvqa"], figures["reading"], figures["reading_with_list"]
    print(f"easy-vqa accuracy {vqa['accuracy']} % (question-only, blank image: {vqa['blank_image_accuracy']} %), n={vqa['n']}")
    print(f"reading held-out FigStep-layout phrases: exact {read['exact_match']} %, characters {read['character_accuracy']} %, n={read['n']}")
    print(f"  with FigStep's numbered list: exact {listed['exact_match']} %, characters {listed['character_accuracy']} %")
    for example in read["examples"][:3]:
        print(f"  {example['reference']!r} -> {example['answer']!r}")
    print(f"time: {manifest['timings']}")
    if "sha256" in manifest:
        print(f"weights: {manifest['weights']} ({manifest['bytes'] / 1e6:.1f} MB) sha256 {manifest['sha256']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m organism.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_FILE, help="where to write the weights (manifest beside it)")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long scaled-down run (tests)")
    for field in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=None)
    args = parser.parse_args(argv)
    config = SMOKE_CONFIG if args.smoke else TrainConfig()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None}
    config = dataclasses.replace(config, **overrides)
    manifest = train(config, args.out)
    print_figures(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
