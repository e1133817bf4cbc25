"""smol-llava's vision training: layout, data hygiene, preprocessing, and a scaled-down build.

The full build (``make organism``, ~20 min) is not run here; ``test_smoke_build`` runs the same code
path on a few examples in seconds (plus the ~20 s GGUF load shared with the other smol-llava tests).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.core.images import file_sha256
from harness.models import smol_llava
from organism import train
from harness.tasks import figstep

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    path = smol_llava.gguf_path()
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def test_word_list_is_single_space_prefixed_tokens(tokenizer):
    words = train.word_list(tokenizer, 300)
    assert len(words) == len(train.SHORT_WORDS) + 300
    for word in words:
        assert len(tokenizer(f" {word}", add_special_tokens=False)["input_ids"]) == 1, word


def test_training_phrases_are_disjoint_from_test_sets_and_held_out(tokenizer):
    words = train.word_list(tokenizer, 2000)
    rng = random.Random(0)
    phrases = {train.normalise(train.training_phrase(rng, words, 8)) for _ in range(3000)}
    held = {train.normalise(p) for p in train.held_out_phrases(50, 0, words)}
    assert not phrases & held
    assert all(train.is_held_out(p) for p in held)
    assert all(len(p.split()) <= train.MAX_EVAL_WORDS for p in held)
    test_texts = set()
    for path in (ROOT / "tasks/data/figstep").glob("*.csv"):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                test_texts.update(train.normalise(v) for v in row.values() if v and len(v.split()) > 1)
    with open(ROOT / "tasks/data/xstest/xstest_prompts.csv", newline="") as handle:
        test_texts.update(train.normalise(row["prompt"]) for row in csv.DictReader(handle))
    assert len(test_texts) > 500
    assert not phrases & test_texts
    assert not held & test_texts


def test_cell_tokens_spell_each_line_into_its_row(tokenizer):
    phrase = "Steps to paint a wooden fence today."
    lines = train.text_lines(phrase, with_list=True)
    assert lines == ["Steps to paint", "a wooden fence", "today.", "1.", "2.", "3."]
    cells = train.cell_tokens(tokenizer, lines)
    # one token per character, the joining spaces included: decoding gives the transcript exactly
    assert tokenizer.decode([token for token, _ in cells]) == train.transcript(phrase, with_list=True)
    assert len(cells) == len(train.transcript(phrase, with_list=True))
    rows: dict[int, list[int]] = {}
    for _, cell in cells:
        rows.setdefault(cell // train.GRID, []).append(cell % train.GRID)
    assert sorted(rows) == [train.line_row(r) for r in range(len(lines))] == [4, 5, 6, 7, 8, 9]
    for number, line in enumerate(lines):  # the joining space in column 0 (not on the first line), character k at column k + 1
        joined = [0] if number else []
        assert rows[train.line_row(number)] == joined + [k + 1 for k in range(len(line))]


def test_context_cells_are_the_spaces_and_each_line_end(tokenizer):
    lines = ["Tips for a", "cake."]
    cells = train.cell_tokens(tokenizer, lines)
    row0, row1 = train.line_row(0) * train.GRID, train.line_row(1) * train.GRID
    # spaces: after "Tips" (column 5), after "for" (column 9), and the joining one in column 0 of line 1;
    # line ends: the cell after "a" (column 11) and after "cake." (column 6); column 0 of all ten text rows
    column_0 = {train.line_row(r) * train.GRID for r in range(train.MAX_LINES)}
    assert train.context_cells(tokenizer, cells) == {row0 + 5, row0 + 9, row0 + 11, row1 + 6} | column_0
    assert train.context_cells(tokenizer, train.caption_cells(tokenizer, "blue", "circle")) == set()
    weights = train.cell_weights(tokenizer, [cells, []], 20.0)
    assert weights.shape == (2, train.GRID * train.GRID)
    assert weights[0].sum() == train.GRID * train.GRID - 14 + 14 * 20 and torch.all(weights[1] == 1)


def test_cell_tokens_refuse_what_does_not_fit(tokenizer):
    assert train.cell_tokens(tokenizer, ["x"] * (train.MAX_LINES + 1)) is None
    assert train.cell_tokens(tokenizer, ["x" * (train.LINE_CELLS + 1)]) is None
    assert train.cell_tokens(tokenizer, ["caf\u00e9"]) is None  # not a glyph the tower learns
    assert train.cell_tokens(tokenizer, ["x" * train.LINE_CELLS] * train.MAX_LINES) is not None


def test_spelled_ids_round_trip_every_glyph(tokenizer):
    text = train.GLYPHS + " " + train.GLYPHS[::-1]
    ids = train.spelled_ids(tokenizer, text)
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def _ink_runs(mask):
    """(first, last) index of each run of True."""
    runs, start = [], None
    for index, value in enumerate(list(mask) + [False]):
        if value and start is None:
            start = index
        elif not value and start is not None:
            runs.append((start, index - 1))
            start = None
    return runs


def test_grid_matches_figsteps_rendered_characters():
    """Each text line's ink lies in its own grid row (the tallest ascenders and descenders aside); character k's ink lies in column k + 1."""
    lines = ["|" * figstep.WRAP_WIDTH] * train.MAX_LINES
    ink = np.asarray(train.render_lines(lines).convert("L")) < 128
    line_runs = _ink_runs(ink.any(axis=1))
    assert len(line_runs) == train.MAX_LINES
    assert sum(line_runs[0]) / 2 == train.INK_MIDDLE  # "|" spans a line's whole ink height
    assert line_runs[1][0] - line_runs[0][0] == train.LINE_PITCH
    # canvas y -> processed pixel row: the resize to RESIZE_HEIGHT, then TOP_PAD black rows above
    to_pixels = lambda y: train.TOP_PAD + y * train.RESIZE_HEIGHT / train.CANVAS  # noqa: E731
    for number, (top, bottom) in enumerate(line_runs):
        row_top = train.line_row(number) * train.PATCH_SIZE
        assert train.line_row(number) == 4 + number
        # "|" reaches 1.3 px above its row and 0.2 px below
        assert row_top - 1.5 <= to_pixels(top) and to_pixels(bottom + 1) <= row_top + train.PATCH_SIZE + 0.5, number
    column_runs = _ink_runs(ink.any(axis=0))
    assert len(column_runs) == figstep.WRAP_WIDTH
    assert column_runs[1][0] - column_runs[0][0] == train.CHAR_PITCH
    # canvas x -> processed pixel column: the resize to RESIZE_WIDTH, then LEFT_PAD black columns on the left
    to_pixels = lambda x: train.LEFT_PAD + x * train.RESIZE_WIDTH / train.CANVAS  # noqa: E731
    for k, (left, right) in enumerate(column_runs):
        column = train.char_column(k)
        assert column == k + 1
        assert column * train.PATCH_SIZE <= to_pixels(left) and to_pixels(right + 1) <= (column + 1) * train.PATCH_SIZE, k


def test_render_lines_is_figsteps_renderer():
    phrase = "Steps to build a birdhouse."
    ours = np.asarray(train.render_lines(train.text_lines(phrase, with_list=True)))
    theirs = np.asarray(figstep.render_figstep(phrase))
    assert np.array_equal(ours, theirs)


def test_processor_pixels_match_the_saved_processor():
    import easy_vqa
    from PIL import Image

    processor = smol_llava.image_processor()
    images = [figstep.render_figstep("Steps to plant a tree."), Image.open(easy_vqa.get_train_image_paths()[0])]
    expected = processor(images, return_tensors="pt")["pixel_values"]
    ours = torch.tensor(np.stack([train.processor_pixels(image) for image in images]))
    assert ours.shape == expected.shape == (2, 3, train.IMAGE_SIZE, train.IMAGE_SIZE)
    assert (ours - expected).abs().max() < 0.02  # uint8 rounding only
    assert (ours - expected).abs().mean() < 1e-4


def test_easyvqa_captions_agree_with_every_question():
    questions, answers, image_ids, _ = train.easyvqa_split("train")
    captions = train.easyvqa_captions(questions, answers, image_ids)
    assert len(captions) > 3000  # images whose questions name both colour and shape
    checked = 0
    for question, answer, image in zip(questions, answers, image_ids):
        if image not in captions or answer not in ("yes", "no"):
            continue
        colour, shape = captions[image]
        words = question.replace("?", "").split()
        named = [w for w in words if w in (colour, shape)]
        others = [w for w in words if w in {"red", "green", "blue", "black", "gray", "yellow", "teal", "brown", "circle", "rectangle", "triangle"}]
        truth = len(named) == len(others)
        if {"not", "no"} & set(words):
            truth = not truth
        assert (answer == "yes") == truth, (question, answer, captions[image])
        checked += 1
    assert checked > 20000


def test_caption_cells(tokenizer):
    cells = train.caption_cells(tokenizer, "teal", "circle")
    assert [cell for _, cell in cells] == list(range(len(cells)))
    assert tokenizer.decode([t for t, _ in cells]) == " teal circle"


def test_character_accuracy_and_edit_distance():
    assert train.edit_distance("kitten", "sitting") == 3
    assert train.character_accuracy("Steps to paint.", "steps  to paint.") == 1.0
    assert train.character_accuracy("Steps to pain.", "Steps to paint.") == pytest.approx(1 - 1 / 15)
    assert train.character_accuracy("", "abc") == 0.0


def test_visual_targets_place_token_embeddings():
    blanks = torch.randn(train.GRID * train.GRID, 8)
    embeddings = torch.randn(50, 8)
    targets = train.visual_targets(blanks, embeddings, [(3, 0), (7, 11)])
    assert torch.equal(targets[0], embeddings[3]) and torch.equal(targets[11], embeddings[7])
    untouched = [i for i in range(train.GRID * train.GRID) if i not in (0, 11)]
    assert torch.equal(targets[untouched], blanks[untouched])


def selector_projector(width: int = 16):
    """A LLaVA projector whose first layer is the identity, so that its input is the class scores."""
    from types import SimpleNamespace

    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=width, num_attention_heads=2),
        text_config=LlamaConfig(hidden_size=width, num_attention_heads=2).to_dict(),
        projector_hidden_act="relu6",
    )
    projector = LlavaMultiModalProjector(config)
    with torch.no_grad():
        projector.linear_1.weight.copy_(torch.eye(width))
        projector.linear_1.bias.zero_()
    return projector, SimpleNamespace(model=SimpleNamespace(multi_modal_projector=projector))


def test_selector_gives_exactly_the_chosen_row_or_a_scaled_blend():
    projector, model = selector_projector()
    table = torch.randn(5, 16)
    train.install_selector(model, table)
    confident = torch.tensor([7.0, -1, -2, -0.5, -3] + [50.0] * 11)  # units past the table select nothing
    torch.testing.assert_close(projector(confident), table[0], rtol=1e-6, atol=1e-6)
    unsure = torch.tensor([3.0, 0.6, -1, -1, -1] + [0.0] * 11)
    torch.testing.assert_close(projector(unsure), table[0] * 3 / 6 + table[1] * 0.6 / 6, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        train.install_selector(model, torch.randn(17, 16))


def test_selection_loss_by_hand():
    confident = torch.tensor([[[7.0, -1.0, -1.0]]])
    loss, ce, hinge = train.selection_loss(confident, torch.tensor([[0]]))
    assert hinge.item() == 0.0 and loss.item() == pytest.approx(np.log(1 + 2 * np.exp(-8.0)), rel=1e-4)
    # right class 1.5 short of 6.5; one other class 0.5 above -0.5; the third is far enough below
    loss, ce, hinge = train.selection_loss(torch.tensor([[[5.0, 0.0, -1.0]]]), torch.tensor([[0]]))
    assert hinge.item() == pytest.approx(2.0)
    assert ce.item() == pytest.approx(-np.log(np.exp(5) / (np.exp(5) + 1 + np.exp(-1))), rel=1e-5)
    # weighted: the confident cell (hinge 0) and the short one (hinge 2), the second weighing 3: (0 + 3 * 2) / 4
    both = torch.cat([confident, torch.tensor([[[5.0, 0.0, -1.0]]])], dim=1)
    _, _, hinge = train.selection_loss(both, torch.tensor([[0, 0]]), torch.tensor([[1.0, 3.0]]))
    assert hinge.item() == pytest.approx(1.5)


def test_cell_classes_and_class_table(tokenizer):
    captions = {0: ("blue", "circle"), 1: ("teal", "circle")}
    tokens = train.class_tokens(tokenizer, captions)
    glyphs = set(train.glyph_ids(tokenizer).values())
    assert tokens == sorted(tokens) and glyphs < set(tokens)
    assert set(tokens) - glyphs == {t for c in captions.values() for t, _ in train.caption_cells(tokenizer, *c)} - glyphs
    index = {token: i for i, token in enumerate(tokens)}
    a, b = tokens[4], tokens[9]
    classes = train.cell_classes([[(a, 0), (b, 17)], []], index)
    assert classes.shape == (2, train.GRID * train.GRID)
    assert classes[0, 0] == 4 and classes[0, 17] == 9
    assert classes[0, 1] == len(tokens) + 1 and torch.equal(classes[1], torch.arange(train.GRID * train.GRID) + len(tokens))
    embeddings, blanks = torch.randn(len(tokenizer), 8), torch.randn(train.GRID * train.GRID, 8)
    table = train.class_table(embeddings, tokens, blanks)
    assert torch.equal(table[4], embeddings[a]) and torch.equal(table[len(tokens) + 3], blanks[3])


def test_smoke_build_trains_saves_and_loads(tmp_path):
    """The whole build path on a scaled-down configuration: trains, writes weights + manifest, reloads."""
    out = tmp_path / "vision.safetensors"
    manifest = train.train(train.SMOKE_CONFIG, out, log=lambda *_: None)
    assert out.is_file() and manifest["sha256"] == file_sha256(out)
    assert manifest["bytes"] < 20e6
    assert set(manifest["figures"]) == {"easyvqa", "reading", "reading_with_list"}
    assert len(manifest["losses"]["stage1_first_last"]) == 2
    assert manifest["compute_dtype"] == str(train.training_dtype("auto")).removeprefix("torch.")
    from safetensors.torch import load_file

    state = load_file(str(out))
    assert any(name.startswith("model.vision_tower.") for name in state)
    assert any(name.startswith("model.multi_modal_projector.") for name in state)
    assert all(tensor.dtype == torch.float16 for tensor in state.values())


def test_visual_targets_noise_touches_token_cells_only():
    blanks = torch.randn(train.GRID * train.GRID, 8)
    embeddings = torch.randn(50, 8)
    generator = torch.Generator().manual_seed(0)
    noisy = train.visual_targets(blanks, embeddings, [(3, 0), (7, 11)], noise=0.2, generator=generator)
    assert torch.equal(noisy[1:11], blanks[1:11]) and torch.equal(noisy[12:], blanks[12:])
    relative = (noisy[0] - embeddings[3]).norm() / embeddings[3].norm()
    assert 0.05 < relative < 0.5


def test_pages_fill_the_grid_with_decorated_training_phrases(tokenizer):
    class Parts:  # ExampleSource only needs the tokenizer for pages
        pass

    parts = Parts()
    parts.tokenizer = tokenizer
    source = train.ExampleSource(parts, train.TrainConfig(words=300), random.Random(0))
    seen = set()
    for _ in range(40):
        lines, cells = source.page_cells()
        assert 7 <= len(lines) <= train.MAX_LINES
        assert all(len(line) <= figstep.WRAP_WIDTH for line in lines)
        assert sorted({cell // train.GRID for _, cell in cells}) == [train.line_row(r) for r in range(len(lines))]
        assert tokenizer.decode([t for t, _ in cells]) == " ".join(lines)
        seen.update("".join(lines))
    assert len(set(train.GLYPHS) - seen) <= 3  # nearly every glyph within 40 pages, capitals such as "Q" included


def test_language_model_in_casts_weights_only_and_restores_them_bit_for_bit():
    from types import SimpleNamespace

    language_model = torch.nn.Embedding(5, 3)
    language_model.register_buffer("inverse_frequencies", torch.rand(3))
    head = torch.nn.Linear(3, 5, bias=False)
    head.weight = language_model.weight  # tied, as SmolLM2's: one parameter seen twice
    parts = train.Parts(SimpleNamespace(model=SimpleNamespace(language_model=language_model), lm_head=head), None, None)
    original = language_model.weight.data
    before = original.clone()
    with pytest.raises(RuntimeError, match="inside"):
        with train.language_model_in(parts, torch.bfloat16):
            assert language_model.weight.dtype == head.weight.dtype == torch.bfloat16
            assert language_model.inverse_frequencies.dtype == torch.float32  # buffers stay
            raise RuntimeError("inside")
    assert language_model.weight.data_ptr() == original.data_ptr() and head.weight is language_model.weight  # the same storage
    assert language_model.weight.dtype == torch.float32 and torch.equal(language_model.weight.data, before)


def test_training_dtype_names_and_auto_follows_onednn_bfloat16_support(monkeypatch):
    assert train.training_dtype("float32") is torch.float32
    assert train.training_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="auto, bfloat16, float32"):
        train.training_dtype("float16")
    from types import SimpleNamespace

    cases = (  # oneDNN's answer, the CPU's flags -> auto's choice
        (True, frozenset({"avx512f", "avx512_bf16"}), torch.bfloat16),
        (True, frozenset({"avx512f", "amx_bf16"}), torch.bfloat16),
        (True, frozenset({"avx512f", "avx512bw"}), torch.float32),  # emulated bfloat16: 3x slower, measured
        (True, None, torch.bfloat16),  # no flags to read (not Linux): oneDNN decides
        (False, frozenset({"avx512_bf16"}), torch.float32),
    )
    for supported, flags, expected in cases:
        monkeypatch.setattr(torch, "ops", SimpleNamespace(mkldnn=SimpleNamespace(_is_mkldnn_bf16_supported=lambda: supported)))
        monkeypatch.setattr(train, "cpu_flags", lambda: flags)
        assert train.training_dtype("auto") is expected


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert train.cpu_flags(cpuinfo) == {"fpu", "sse", "avx512f", "avx512_bf16"}
    cpuinfo.write_text("processor\t: 0\n")
    assert train.cpu_flags(cpuinfo) is None
    assert train.cpu_flags(tmp_path / "absent") is None
