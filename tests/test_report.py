"""Report rendering: escaping (HTML and LaTeX), table numbers, offline HTML, provenance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.records import Generation, Judgement, MetricRow, Sample
from harness.report import latex_escape, render_report
from harness.store import RunInfo, RunResult, load_run, save_run

HOSTILE_RESPONSE = (
    'Here: <script>alert(1)</script> </table> {{ x }} {% if %} <img src="http://evil.example/x.png">'
)
TEX_MODEL = "m&1%$#_{x}~^\\y"
TEX_DEFENSE = "def_~^"
TITLE = "Report <v1> & co"


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
    ]
    metrics = [
        metric(run_id, model, defense, "mmsafety", "asr", 50.0, 2, 9.46, 90.54),
        metric(run_id, model, defense, "mmsafety", "asr", 100.0, 1, 20.66, 100.0, subset="weapons"),
        metric(run_id, model, defense, "mmsafety", "refusal_rate", float("nan"), 0, 0.0, 100.0),
        metric(run_id, model, defense, "mme", "accuracy", 75.0, 4, 30.06, 95.44, higher=True),
    ]
    info = RunInfo(run_id=run_id, model=model, defense=defense, tasks={"mmsafety": "1", "mme": "1"},
                   model_fingerprint={"revision": "abc123"}, judges={"mmsafety": {"judge": "keyword-gcg"}},
                   counts={"samples": 3, "errors": 1}, provenance={"git_commit": "deadbeef"})
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


def test_html_escapes_model_text(rendered):
    html, _ = rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    assert "&lt;/table&gt;" in html
    assert html.count("<table>") == html.count("</table>") == 4  # summary, per-category, latency, errors
    # template syntax inside a response is data: printed as is, never evaluated
    assert "{{ x }}" in html and "{% if %}" in html
    assert "Explain &lt;b&gt;bold&lt;/b&gt; things" in html
    assert "Report &lt;v1&gt; &amp; co" in html


def test_html_is_offline(rendered):
    html, _ = rendered
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert '<img src="http' not in html  # the hostile response's <img> was escaped


def test_html_tables_show_numbers(rendered):
    html, _ = rendered
    assert "50.0 [9.5, 90.5] (2)" in html  # summary ASR
    assert "n/a [0.0, 100.0] (0)" in html  # refusal rate with no benign sample judged
    assert "75.0 [30.1, 95.4] (4)" in html  # utility accuracy
    assert "12.3 [3.0, 30.0] (10)" in html
    assert "100.0 [20.7, 100.0] (1)" in html  # per-category row
    # latency over s1 (1.0 s) and s2 (2.0 s, cached); the failed s3 is left out
    for cell in ("1.500", "1.950", "26.7"):  # mean and p50, p95 = 1 + 0.95, 60 tokens / 2.25 s
        assert f'<td class="num">{cell}</td>' in html
    assert '<td class="num">1 / 3</td>' in html  # one failed generation of three
    assert "CUDA out of memory" in html


def test_html_samples_and_provenance(rendered):
    html, _ = rendered
    assert "cat_01.png" in html and "/data/imgs" not in html  # image file name only
    assert "keyword-gcg → refusal: I cannot" in html
    assert "not judged" in html  # run B has no judgements
    assert html.count("<details>") == 3 + 1 + 2  # run A samples, run B sample, two provenance blocks
    assert "&#34;revision&#34;: &#34;abc123&#34;" in html  # JSON escaped
    assert "deadbeef" in html


def test_sample_browser_limit(tmp_path: Path):
    html_path, _ = render_report([make_run_a(tmp_path)], tmp_path, "one", samples_per_task=1)
    html = html_path.read_text(encoding="utf-8")
    assert "(1 of 3; run 20260101T000000Z-a)" in html
    assert "Second prompt" not in html


def test_latex_escape_all_specials():
    assert latex_escape("a\\b&c%d$e#f_g{h}i~j^k") == (
        r"a\textbackslash{}b\&c\%d\$e\#f\_g\{h\}i\textasciitilde{}j\textasciicircum{}k"
    )
    response = "50% of $x_1$ & #2 {a}\n\n~^ \\cmd <b>"
    assert latex_escape(response) == (
        r"50\% of \$x\_1\$ \& \#2 \{a\}  \textasciitilde{}\textasciicircum{} \textbackslash{}cmd \textless{}b\textgreater{}"
    )
    assert latex_escape(None) == ""


def test_tex_tables(rendered):
    _, tex = rendered
    assert r"m\&1\%\$\#\_\{x\}\textasciitilde{}\textasciicircum{}\textbackslash{}y" in tex
    assert r"def\_\textasciitilde{}\textasciicircum{}" in tex
    assert TEX_MODEL not in tex and TEX_DEFENSE not in tex
    assert r"Report \textless{}v1\textgreater{} \& co" in tex
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in tex
    # columns: mme/accuracy then mmsafety/asr and mmsafety/refusal_rate, after model and defense
    assert r"\begin{tabular}{llrrr}" in tex
    assert r"\multicolumn{1}{c}{mme}" in tex and r"\multicolumn{2}{c}{mmsafety}" in tex
    assert r"\cmidrule(lr){3-3}\cmidrule(lr){4-5}" in tex
    # model names sort "m&..." before "tiny-llava"; half-widths (30 - 3) / 2 = 13.5, (95.44 - 30.06) / 2 = 32.69
    assert r"def\_\textasciitilde{}\textasciicircum{} & -- & 12.3 {\scriptsize $\pm$ 13.5} & -- \\" in tex
    assert r"tiny-llava & none & 75.0 {\scriptsize $\pm$ 32.7} & 50.0 {\scriptsize $\pm$ 40.5} & -- \\" in tex
    assert r"tiny-llava & none & mmsafety & 2 & 1.500 & 1.500 & 1.950 & 26.7 & 1 \\" in tex
    assert r"\label{tab:cmp-report-main}" in tex
    # every unescaped brace is balanced
    bare = tex.replace(r"\{", "").replace(r"\}", "")
    assert bare.count("{") == bare.count("}")
    # a blank line inside a tabular would be a paragraph break, which LaTeX rejects
    for table in re.findall(r"\\begin\{tabular\}.*?\\end\{tabular\}", tex, re.DOTALL):
        assert "\n\n" not in table
    assert tex.count(r"\begin{tabular}") == 2


def test_tex_without_ci(tmp_path: Path):
    _, tex_path = render_report([make_run_a(tmp_path)], tmp_path, "plain", tex_ci=False)
    tex = tex_path.read_text(encoding="utf-8")
    assert r"\pm" not in tex
    assert r"tiny-llava & none & 75.0 & 50.0 & -- \\" in tex
