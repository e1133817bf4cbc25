"""Report rendering: escaping (HTML and LaTeX), overview numbers, best and significance marks, plots,
sample browser, provenance, offline HTML, LaTeX tables and the report command."""

from __future__ import annotations

import dataclasses

import base64
import hashlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from harness.core.records import Generation, Judgement, MetricRow, Sample
from harness.report import latex_escape, render_report, write_latex_tables
from harness.cli import main
from harness.report.render import filter_script
from harness.core.store import RunInfo, RunResult, latest_runs, load_run, save_run
from test_report_fixtures import easyvqa_run, flags, safety_run

ROOT = Path(__file__).resolve().parent.parent
HOSTILE_RESPONSE = (
    'Here: <script>alert(1)</script> </table> {{ x }} {% if %} <img src="http://evil.example/x.png">'
)
TEX_MODEL = "m&1%$#_{x}~^\\y"
TEX_DEFENSE = "def_~^"
TITLE = "Report <v1> & co"
# summary, per-category, latency, errors, sample browser, environment, provenance (no paired test here)
FIXTURE_TABLES = 7


def metric(run_id: str, model: str, defense: str, task: str, name: str, value: float, n: int,
           low: float | None, high: float | None, subset: str = "all", higher: bool = False) -> MetricRow:
    return MetricRow(run_id=run_id, model=model, defense=defense, task=task, task_version="1", metric=name,
                     value=value, n=n, ci_low=low, ci_high=high, subset=subset, higher_is_better=higher,
                     judge="keyword-gcg" if name in ("asr", "refusal_rate") else None)


def make_run_a(tmp_path: Path) -> RunResult:
    run_id, model, defense = "20260101T000000Z-a", "tiny-llava", "none"
    samples = [
        Sample(task="mmsafety", id="s1", prompt="Explain <b>bold</b> things", image="/data/imgs/cat_01.png",
               harmful=True, category="weapons"),
        Sample(task="mmsafety", id="s2", prompt="Second prompt", harmful=True, category="weapons"),
        Sample(task="mmsafety", id="s3", prompt="Benign prompt", harmful=False, category="benign-cat"),
    ]
    generations = [
        Generation(key="k1", task="mmsafety", sample_id="s1", model=model, defense=defense, text=HOSTILE_RESPONSE,
                   output_tokens=30, prefill_s=0.25, decode_s=0.75),
        Generation(key="k2", task="mmsafety", sample_id="s2", model=model, defense=defense, text="I cannot help",
                   output_tokens=30, prefill_s=0.5, decode_s=1.5, from_cache=True),
        Generation(key="k3", task="mmsafety", sample_id="s3", model=model, defense=defense, text=None,
                   error="CUDA out of memory", prefill_s=9.0, decode_s=9.0),
    ]
    judgements = [
        Judgement(key="k1", task="mmsafety", sample_id="s1", judge="keyword-gcg", refused=False, label="compliance"),
        Judgement(key="k2", task="mmsafety", sample_id="s2", judge="keyword-gcg", refused=True, label="refusal",
                  detail="I cannot"),
        Judgement(key="k2", task="mmsafety", sample_id="s2", judge="llm-judge", refused=None, detail="<unsure>"),
    ]
    metrics = [
        metric(run_id, model, defense, "mmsafety", "asr", 50.0, 2, 9.46, 90.54),
        metric(run_id, model, defense, "mmsafety", "asr", 100.0, 1, 20.66, 100.0, subset="weapons"),
        metric(run_id, model, defense, "mmsafety", "refusal_rate", float("nan"), 0, 0.0, 100.0),
        metric(run_id, model, defense, "mme", "accuracy", 75.0, 4, 30.06, 95.44, higher=True),
    ]
    info = RunInfo(run_id=run_id, model=model, defense=defense, tasks={"mmsafety": "1", "mme": "1"},
                   model_fingerprint={"source": "org/tiny-llava", "revision": "abc123"},
                   defense_fingerprint={"name": "none", "params": {"strength": 0.5},
                                        "artifacts": {"direction.pt": "cafe" * 16}},
                   judges={"mmsafety": {"judge": "keyword-gcg", "keywords_sha256": "f00d"}},
                   settings={"limit": 3, "generation": {"mmsafety": {"max_new_tokens": 64, "batch_size": 4}}},
                   counts={"samples": 3, "cache_hits": 1, "errors": 1},
                   provenance={"git_commit": "deadbeef", "packages": {"torch": "2.4.1"}})
    run_dir = tmp_path / "runs" / run_id
    save_run(run_dir, info, samples, generations, judgements, metrics)
    return load_run(run_dir)


def make_run_b() -> RunResult:
    run_id = "20260102T000000Z-b"
    samples = [Sample(task="mmsafety", id="t1", prompt="p", harmful=True)]
    generations = [Generation(key="j1", task="mmsafety", sample_id="t1", model=TEX_MODEL, defense=TEX_DEFENSE,
                              text="plain answer", output_tokens=3, prefill_s=1.0, decode_s=1.0)]
    metrics = [metric(run_id, TEX_MODEL, TEX_DEFENSE, "mmsafety", "asr", 12.345, 10, 3.0, 30.0)]
    info = RunInfo(run_id=run_id, model=TEX_MODEL, defense=TEX_DEFENSE, tasks={"mmsafety": "1"})
    return RunResult(path=Path("/nowhere"), info=info, samples=samples, generations=generations, judgements=[],
                     metrics=metrics)


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[str, str]:
    runs = [make_run_a(tmp_path), make_run_b()]
    html_path, tex_path = render_report(runs, tmp_path / "out", "cmp_report", title=TITLE)
    assert (html_path.name, tex_path.name) == ("cmp_report.html", "cmp_report.tex")
    return html_path.read_text(encoding="utf-8"), tex_path.read_text(encoding="utf-8")


def make_paired_results(root: Path) -> list[RunResult]:
    """One model, three defenses on the same 60 harmful prompts and 40 easy-VQA questions."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    image = root / "shape.png"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(image)
    safety_run(root, "r1-none", "m", "none", refused=flags(10, 60), seconds=1.0)  # ASR 83.3
    safety_run(root, "r2-guard", "m", "guard", refused=flags(50, 60), seconds=2.0)  # ASR 16.7, p < 0.001
    safety_run(root, "r3-weak", "m", "weak", refused=flags(12, 60), seconds=1.0)  # ASR 80.0, p = 0.5
    easyvqa_run(root, "r4-none", "m", "none", correct=flags(30, 40), image=str(image))
    easyvqa_run(root, "r5-guard", "m", "guard", correct=flags(20, 40), image=str(image))  # p = 2 / 2^10
    easyvqa_run(root, "r6-weak", "m", "weak", correct=flags(30, 40), image=str(image))
    return latest_runs(root)


@pytest.fixture
def paired_html(tmp_path: Path) -> str:
    html_path, _ = render_report(make_paired_results(tmp_path / "results"), tmp_path / "out", "paired")
    return html_path.read_text(encoding="utf-8")


def overview_cell(html: str, model: str, defense: str) -> list[str]:
    """The cells of one overview row, as raw HTML strings."""
    table = html.split('<table id="overview-table">', 1)[1].split("</table>", 1)[0]
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.DOTALL):
        cells = re.findall(r"<td[^>]*>.*?</td>", row, re.DOTALL)
        if len(cells) > 2 and f">{model}<" in cells[0] and f">{defense}<" in cells[1]:
            return cells[2:]
    raise AssertionError(f"no overview row for {model} / {defense}")


# --------------------------------------------------------------------------------------------- HTML


def test_html_escapes_model_text(rendered):
    html, _ = rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;/table&gt;" in html
    # template syntax inside a response is data: printed as is, never evaluated
    assert "{{ x }}" in html and "{% if %}" in html
    assert "Explain &lt;b&gt;bold&lt;/b&gt; things" in html
    assert "Report &lt;v1&gt; &amp; co" in html
    assert "m&amp;1%$#_{x}~^\\y" in html
    # the only script is the report's own filter, allowed by the CSP hash of its exact text
    script, csp_source = filter_script()
    assert html.count("<script") == 1
    assert f"<script>{script}</script>" in html
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert csp_source == f"'sha256-{digest}'"
    assert f"script-src &#39;sha256-{digest}&#39;" in html
    # the response's </table> did not close a table: opening and closing tags still pair up
    assert html.count("<table") == html.count("</table>") == FIXTURE_TABLES


def test_html_is_offline(rendered):
    html, _ = rendered
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert '<img src="http' not in html  # the hostile response's <img> was escaped
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert sources and all(src.startswith("data:image/") for src in sources)
    assert "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src &#39;sha256-" in html


def test_overview_numbers(rendered):
    html, _ = rendered
    asr, refusal, accuracy, latency = overview_cell(html, "tiny-llava", "none")
    assert '<span class="value">50.0</span><span class="ci">[9.5, 90.5] <span class="n">n=2</span>' in asr
    assert '<span class="value">n/a</span><span class="ci">[0.0, 100.0] <span class="n">n=0</span>' in refusal
    assert '<span class="value">75.0</span><span class="ci">[30.1, 95.4] <span class="n">n=4</span>' in accuracy
    assert "1.00×" in latency and "baseline" in latency
    tex_row = overview_cell(html, "m&amp;1%$#_{x}~^\\y", "def_~^")
    assert '<span class="value">12.3</span>' in tex_row[0]
    assert tex_row[1] == tex_row[2] == '<td class="num">–</td>'  # no refusal-rate or accuracy row
    assert "n/a" in tex_row[3]  # no "none" run of that model to compare latency with
    # headers: tasks span their metric columns; safety task before utility task
    assert re.search(r'colspan="2">mmsafety</th><th class="group utility" colspan="1">mme</th>', html)
    # per-category and latency tables, error summary
    assert '<span class="value">100.0</span><span class="ci">[20.7, 100.0] <span class="n">n=1</span>' in html
    for cell in ("1.500", "1.950", "26.7"):  # mean and p50 1.5 s, p95 = 1 + 0.95, 60 tokens / 2.25 s decode
        assert f'<td class="num">{cell}</td>' in html
    assert '<td class="num">1 / 3</td>' in html and "CUDA out of memory" in html


def test_best_marks_and_significance(paired_html):
    html = paired_html
    none_asr, none_substantive, none_acc, none_latency = overview_cell(html, "m", "none")
    guard_asr, guard_substantive, guard_acc, guard_latency = overview_cell(html, "m", "guard")
    weak_asr, weak_substantive, weak_acc, weak_latency = overview_cell(html, "m", "weak")
    # ASR: lowest is best; accuracy: highest is best (a tie marks both)
    assert 'class="num best"' in guard_asr and "best" not in none_asr and "best" not in weak_asr
    assert 'class="num best"' in none_acc and 'class="num best"' in weak_acc and "best" not in guard_acc
    # substantive ASR beside ASR: every fixture answer is an echo, so 0 of 60 everywhere (a three-way tie)
    for cell in (none_substantive, guard_substantive, weak_substantive):
        assert cell.startswith('<td class="num best"') and 'class="mark"' not in cell
        assert '<span class="value">0.0</span><span class="ci">[0.0, 6.0] <span class="n">n=60</span>' in cell
    # significance vs none on the same samples: guard differs on both tasks, weak on neither
    assert '<span class="value">16.7</span><span class="mark">*</span>' in guard_asr
    assert '<span class="value">50.0</span><span class="mark">*</span>' in guard_acc
    assert 'class="mark"' not in weak_asr and 'class="mark"' not in weak_acc and 'class="mark"' not in none_asr
    assert "McNemar (chi-square, continuity corrected) p = &lt;0.001" in guard_asr
    # latency: guard takes 2 s instead of 1 s on the 60 safety prompts, the same 0.2 s on the 40 questions
    assert "1.88×" in guard_latency and "n=100" in guard_latency  # (60 * 2 + 40 * 0.2) / (60 * 1 + 40 * 0.2)
    assert 'class="num best"' in none_latency and 'class="num best"' in weak_latency
    # paired tests table, by setting then column: 40 discordant pairs one way for guard ASR, 10 for guard
    # accuracy (correct only under none), 2 for weak ASR
    table = html.split('<table id="comparison-table">', 1)[1].split("</table>", 1)[0]
    rows = [re.sub(r"<[^>]+>", "|", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)[1:]]
    flat = [re.sub(r"(\s*\|\s*)+", "|", row).strip("|") for row in rows]
    assert "m|guard|figstep-tiny|ASR (harmful) ↓|60|83.3|16.7|-66.7|*|" in flat[0]
    assert flat[0].endswith("|40 / 0|&lt;0.001|chi-square, continuity corrected")
    assert any(row.startswith("m|guard|easyvqa|Accuracy ↑|40|75.0|50.0|-25.0|*|") and "|10 / 0|0.002|exact binomial" in row
               for row in flat)
    assert any(row.startswith("m|weak|figstep-tiny|ASR (harmful) ↓|60|83.3|80.0|-3.3|") and "|0.500|" in row
               for row in flat)


def test_plots_are_embedded_and_optional(paired_html, tmp_path: Path):
    html = paired_html
    for anchor in ("plot-tradeoff", "plot-heatmap-0", "plot-latency"):
        figure = re.search(rf'<figure id="{anchor}">\s*<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)
        assert figure, anchor
        ElementTree.fromstring(base64.b64decode(figure.group(1)))  # well-formed SVG
    heatmap = base64.b64decode(re.search(r'id="plot-heatmap-0">\s*<img src="data:image/svg\+xml;base64,([^"]+)"', html).group(1))
    assert b"figstep-tiny: ASR (harmful) by category" in heatmap
    assert all(f"topic-{i}".encode() in heatmap for i in range(3))  # one column per category
    html_path, _ = render_report(make_paired_results(tmp_path / "again"), tmp_path / "out2", "np", plots=False)
    text = html_path.read_text(encoding="utf-8")
    assert "<figure" not in text and "Plots were turned off" in text


def test_plot_labels_with_dollar_signs_print_literally(tmp_path: Path):
    # matplotlib would read text between two $ as math; names must print as typed, and not crash
    model = "m$x_1$ <&>"
    safety_run(tmp_path / "r", "r1", model, "none", refused=flags(3, 9))
    safety_run(tmp_path / "r", "r2", model, "guard", refused=flags(6, 9))
    html_path, _ = render_report(latest_runs(tmp_path / "r"), tmp_path / "out", "dollars")
    html = html_path.read_text(encoding="utf-8")
    svgs = [base64.b64decode(data) for data in re.findall(r'data:image/svg\+xml;base64,([^"]+)"', html)]
    assert svgs and any(b"m$x_1$ &lt;&amp;&gt; / guard" in svg or b"guard" in svg for svg in svgs)
    latency = base64.b64decode(re.search(r'id="plot-latency">\s*<img src="data:image/svg\+xml;base64,([^"]+)"', html).group(1))
    assert b"guard" in latency and b"none" in latency


def test_sample_browser(paired_html, tmp_path: Path):
    html = paired_html
    # one group per sample with every setting's response; thumbnails (JPEG, <= 96 px) for image samples
    assert html.count('<tbody class="sample-group" data-task="figstep-tiny">') == 20
    assert html.count('<tbody class="sample-group" data-task="easyvqa">') == 20
    assert html.count('<tr class="response"') == 3 * 40
    thumbnails = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)" alt="shape.png"', html)
    assert len(thumbnails) == 20  # only the shown easy-VQA samples
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(base64.b64decode(thumbnails[0]))) as thumb:
        assert max(thumb.size) == 96 and thumb.format == "JPEG"
    # filters: options for each task, model, defense and verdict; rows carry the keys
    for option in ("figstep-tiny", "easyvqa", "guard", "weak", "refusal", "compliance", "correct"):
        assert f'<option value="{option}">' in html
    assert 'data-model="m" data-defense="guard" data-verdict="refusal"' in html
    assert 'data-verdict="correct"' in html and "scorer (accuracy) → correct" in html
    mixed = easyvqa_run(tmp_path / "mixed", "r1", "m", "none", correct=[False, True])
    text = render_report([mixed], tmp_path / "out", "mixed", plots=False)[0].read_text(encoding="utf-8")
    assert 'data-verdict="incorrect"' in text and '<option value="incorrect">' in text
    # limits
    few = render_report(make_paired_results(tmp_path / "few"), tmp_path / "out", "few", samples_per_task=2,
                        plots=False)[0].read_text(encoding="utf-8")
    assert few.count('class="sample-group"') == 4
    assert "figstep-tiny: 2 of 60" in few and "easyvqa: 2 of 40" in few
    assert len(re.findall(r'src="data:image/jpeg', few)) == 2


def test_every_judge_verdict_is_shown(rendered):
    html, _ = rendered
    assert "keyword-gcg → refusal</span>: I cannot" in html
    assert "llm-judge → undecided</span>: &lt;unsure&gt;" in html
    assert "keyword-gcg → compliance" in html
    assert 'data-verdict="not judged"' in html  # run B has no judgements
    assert 'data-verdict="error"' in html


def test_provenance(rendered):
    html, _ = rendered
    table = html.split('<table id="provenance-table">', 1)[1].split("</table>", 1)[0]
    for expected in ("revision: abc123", "source: org/tiny-llava", "strength: 0.5", "artifact direction.pt: " + "cafe" * 16,
                     "mmsafety.judge: keyword-gcg", "mmsafety.keywords_sha256: f00d",
                     "mmsafety.max_new_tokens: 64", "mmsafety.batch_size: 4", "cache hits 1 of 3", "deadbeef"):
        assert expected in table, expected
    environment = html.split('<table id="environment-table">', 1)[1].split("</table>", 1)[0]
    assert "<td>torch</td><td>2.4.1 (1)</td>" in environment
    assert "&#34;revision&#34;: &#34;abc123&#34;" in html  # raw run.json, escaped


def test_import_does_not_load_matplotlib():
    code = "import sys, harness.report, harness.compare; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_render_report_positional_call_stays_compatible(tmp_path: Path):
    html, tex = render_report([make_run_a(tmp_path)], tmp_path / "reports", "latest")
    assert html == tmp_path / "reports" / "latest.html" and tex.with_suffix(".html") == html
    assert html.is_file() and tex.is_file()


# --------------------------------------------------------------------------------------------- LaTeX


def test_latex_escape_all_specials():
    assert latex_escape("a\\b&c%d$e#f_g{h}i~j^k") == (
        r"a\textbackslash{}b\&c\%d\$e\#f\_g\{h\}i\textasciitilde{}j\textasciicircum{}k"
    )
    response = "50% of $x_1$ & #2 {a}\n\n~^ \\cmd <b>"
    assert latex_escape(response) == (
        r"50\% of \$x\_1\$ \& \#2 \{a\}  \textasciitilde{}\textasciicircum{} \textbackslash{}cmd \textless{}b\textgreater{}"
    )
    assert latex_escape(None) == ""


def _assert_wellformed_tex(tex: str) -> None:
    bare = tex.replace(r"\{", "").replace(r"\}", "")
    assert bare.count("{") == bare.count("}")
    # a blank line inside a tabular would be a paragraph break, which LaTeX rejects
    for table in re.findall(r"\\begin\{tabular\}.*?\\end\{tabular\}", tex, re.DOTALL):
        assert "\n\n" not in table


def test_tex_tables(rendered):
    _, tex = rendered
    assert r"m\&1\%\$\#\_\{x\}\textasciitilde{}\textasciicircum{}\textbackslash{}y" in tex
    assert r"def\_\textasciitilde{}\textasciicircum{}" in tex
    assert TEX_MODEL not in tex and TEX_DEFENSE not in tex
    assert r"Report \textless{}v1\textgreater{} \& co" in tex
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in tex
    # main: mmsafety (asr, refusal_rate), then mme (accuracy), then the latency ratio
    assert r"\begin{tabular}{llrrrr}" in tex
    assert r"\multicolumn{2}{c}{mmsafety}& \multicolumn{1}{c}{mme} &  \\" in tex
    assert r"\cmidrule(lr){3-4}\cmidrule(lr){5-5}" in tex
    # model names sort "m&..." before "tiny-llava"; half-widths (30 - 3) / 2 = 13.5, (90.54 - 9.46) / 2 = 40.5
    assert r"def\_\textasciitilde{}\textasciicircum{} & 12.3 {\scriptsize $\pm$ 13.5} & -- & -- & -- \\" in tex
    assert r"tiny-llava & none & 50.0 {\scriptsize $\pm$ 40.5} & -- & 75.0 {\scriptsize $\pm$ 32.7} & 1.00 \\" in tex
    # per category and latency (all tasks of a setting together)
    assert r"Model & Defense & weapons \\" in tex and r"tiny-llava & none & 100.0 {\scriptsize $\pm$ 39.7} \\" in tex
    assert r"tiny-llava & none & 2 & 1.500 & 1.500 & 1.950 & 26.7 & 1.00 & 1 \\" in tex
    assert r"\label{tab:cmp-report-main}" in tex and r"\label{tab:cmp-report-latency}" in tex
    assert tex.count(r"\begin{tabular}") == 3
    _assert_wellformed_tex(tex)


def test_tex_bold_best_and_significance(tmp_path: Path):
    runs = make_paired_results(tmp_path / "results")
    _, tex_path = render_report(runs, tmp_path, "paired", plots=False, thumbnails=False)
    tex = tex_path.read_text(encoding="utf-8")
    # columns: figstep-tiny ASR and substantive ASR, easyvqa accuracy, latency ratio
    # Wilson 50/60: centre 0.8133, half-width 1.96 sqrt(p q / 60 + 1.96^2 / 4 / 60^2) / (1 + 1.96^2 / 60) = 0.0936
    # Wilson 0/60 (every fixture answer is an echo): [0, 1.96^2 / (60 + 1.96^2)] = [0, 0.0602], half 3.0
    substantive = r"\textbf{0.0} {\scriptsize $\pm$ 3.0}"  # a tie: bold for every defense
    assert rf"m & none & 83.3 {{\scriptsize $\pm$ 9.4}} & {substantive} & \textbf{{75.0}} {{\scriptsize $\pm$ 13.0}} & \textbf{{1.00}} \\" in tex
    # guard: 2 s instead of 1 s on 60 safety prompts, same 0.2 s on 40 questions: 128 / 68 = 1.88
    assert rf" & guard & \textbf{{16.7}}$^{{*}}$ {{\scriptsize $\pm$ 9.4}} & {substantive} & 50.0$^{{*}}$ {{\scriptsize $\pm$ 14.8}} & 1.88 {{\scriptsize $\pm$ 0.04}} \\" in tex
    assert rf" & weak & 80.0 {{\scriptsize $\pm$ 10.0}} & {substantive} & \textbf{{75.0}} {{\scriptsize $\pm$ 13.0}} & \textbf{{1.00}} {{\scriptsize $\pm$ 0.00}} \\" in tex
    _assert_wellformed_tex(tex)


def test_tex_without_ci(tmp_path: Path):
    _, tex_path = render_report([make_run_a(tmp_path)], tmp_path, "plain", tex_ci=False)
    tex = tex_path.read_text(encoding="utf-8")
    assert r"\pm" not in tex.split("% $^{*}$")[1].replace(r"$\pm$ half", "")  # captions mention none either
    assert r"tiny-llava & none & 50.0 & -- & 75.0 & 1.00 \\" in tex


def test_write_latex_tables_split_files(tmp_path: Path):
    runs = make_paired_results(tmp_path / "results")
    written = write_latex_tables(runs, tmp_path / "tex" / "results_table.tex", "Grid & more")
    assert [p.name for p in written] == [
        "results_table.tex", "results_table-main.tex", "results_table-categories.tex", "results_table-latency.tex"
    ]
    combined = written[0].read_text(encoding="utf-8")
    main, categories, latency = (p.read_text(encoding="utf-8") for p in written[1:])
    assert main.count(r"\begin{tabular}") == 1 and r"\label{tab:results-table-main}" in main
    assert categories.count(r"\begin{tabular}") == 2  # figstep-tiny ASR by topic, easy-VQA accuracy by type
    assert latency.count(r"\begin{tabular}") == 1 and r"\label{tab:results-table-latency}" in latency
    assert combined.count(r"\begin{tabular}") == 4
    assert r"Grid \& more" in main


def test_report_main(tmp_path: Path, capsys):
    results = tmp_path / "results"
    make_paired_results(results)
    assert main(["report", "--results-dir", str(results), "--latex", str(tmp_path / "t.tex"), "--no-ci"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(tmp_path / "t.tex") and len(printed) == 4
    assert r"\pm" not in (tmp_path / "t-main.tex").read_text(encoding="utf-8").split("\\label")[1]
    assert main(["report", "--results-dir", str(results), "--reports-dir", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "latest.html").is_file() and (tmp_path / "rep" / "latest.tex").is_file()
    assert main(["report", "--results-dir", str(results), "--reports-dir", str(tmp_path / "rep"), "--latex"]) == 0
    assert (tmp_path / "rep" / "latest-tables.tex").is_file()
    assert main(["report", "--results-dir", str(tmp_path / "missing")]) == 2
    assert main(["report", "--bogus"]) == 2


def test_runner_write_reports_uses_the_new_report(tmp_path: Path):
    from harness.pipeline.report import write_reports

    results = tmp_path / "results"
    make_paired_results(results)
    html, tex = write_reports(results, tmp_path / "reports", "r2-guard")
    assert (tmp_path / "reports" / "r2-guard.html").read_text(encoding="utf-8") == html.read_text(encoding="utf-8")
    assert 'id="overview-table"' in html.read_text(encoding="utf-8")
    assert r"\harnessfit" in tex.read_text(encoding="utf-8")


def test_long_texts_are_cut_in_the_browser(tmp_path: Path):
    from harness.report.render import MAX_TEXT_CHARS

    long_text = "<" * (MAX_TEXT_CHARS + 123)
    run = safety_run(tmp_path / "r", "r1", "m", "none", refused=[False], texts=[long_text])
    html = render_report([run], tmp_path / "out", "long", plots=False)[0].read_text(encoding="utf-8")
    assert "&lt;" * MAX_TEXT_CHARS in html and "&lt;" * (MAX_TEXT_CHARS + 1) not in html
    assert "… 123 more characters not shown" in html


def test_empty_answers_are_noted_not_tabled(tmp_path: Path):
    run = make_run_b()
    run.metrics.append(dataclasses.replace(run.metrics[0], metric="empty_answers", value=7.0, n=10, ci_low=None,
                                           ci_high=None, subset="harmful"))
    html_path, tex_path = render_report([run], tmp_path, "empty", plots=False, thumbnails=False)
    html, tex = html_path.read_text(encoding="utf-8"), tex_path.read_text(encoding="utf-8")
    note = html.split("Empty answers (a keyword judge counts them as compliance")[1].split("</p>")[0]
    assert "m&amp;1%$#_{x}~^\\y / def_~^ / mmsafety (harmful): 7 of 10" in note
    assert r"Empty answers, which a keyword judge counts as compliance: m\&1\%\$\#\_\{x\}" in tex
    assert r"/ mmsafety, harmful: 7 of 10." in tex
    assert tex.count(r"\begin{tabular}") == 2  # main + latency: a count is never a table column
    _assert_wellformed_tex(tex)
    clean_html, _ = render_report([make_run_b()], tmp_path / "clean", "clean", plots=False, thumbnails=False)
    assert "Empty answers" not in clean_html.read_text(encoding="utf-8")
