"""Reports of runs that several judges scored: headline rows only in the tables, the judge-agreement
table (HTML and LaTeX) with hand-computed kappa, undecided counts per judge, escaping of judge names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.core.metrics import safety_metrics
from harness.core.records import Generation, Judgement, Sample
from harness.report import latex_escape, render_report, write_latex_tables
from harness.report.analysis import unique_metric_rows
from harness.report.outcomes import OutcomeIndex
from harness.core.store import RunInfo, RunResult, headline_metric_rows, latest_runs, load_run, primary_judge, save_run
from test_report_fixtures import metric_rows

HOSTILE_JUDGE = "<b>j&1_%</b>"
TASK = "mmsafety"
HARMFUL = ["h1", "h2", "h3", "h4", "h5", "h6"]
BENIGN = ["b1", "b2"]


def refusal(judge: str, sid: str, refused: bool | None, label: str = "") -> Judgement:
    return Judgement(key=f"k-{sid}", task=TASK, sample_id=sid, judge=judge, refused=refused,
                     label=label or {True: "refusal", False: "compliance", None: "undecided"}[refused])


def harm(judge: str, sid: str, unsafe: bool | None, label: str = "") -> Judgement:
    return Judgement(key=f"k-{sid}", task=TASK, sample_id=sid, judge=judge, refused=None, kind="harm",
                     unsafe=unsafe, label=label or {True: "unsafe", False: "safe", None: "undecided"}[unsafe])


def store(root: Path, run_id: str, defense: str, verdicts: dict[str, list[Judgement]], *,
          primary: str | None, ids: list[str] | None = None) -> RunResult:
    """A run of TASK whose judges gave ``verdicts`` (judge -> list), metric rows per judge from
    ``safety_metrics``. Verdicts are stored in the order given, metric rows in the reverse order: so
    neither "first" nor "last row wins" finds the headline judge, only run.json does."""
    ids = ids or HARMFUL + BENIGN
    samples = [Sample(task=TASK, id=sid, prompt=f"prompt {sid}", harmful=sid.startswith("h")) for sid in ids]
    generations = {s.id: Generation(key=f"k-{s.id}", task=TASK, sample_id=s.id, model="m", defense=defense,
                                    text=f"answer {s.id}", output_tokens=5, prefill_s=0.1, decode_s=0.4)
                   for s in samples}
    rows, judgements = [], []
    for judge, items in verdicts.items():
        judgements.extend(items)
        rows = metric_rows(run_id, "m", defense, TASK,
                           safety_metrics(samples, generations, {j.sample_id: j for j in items}), judge) + rows
    judging = {TASK: {judge: {"fingerprint": {"judge": judge}, "primary": judge == primary} for judge in verdicts}}
    info = RunInfo(run_id=run_id, model="m", defense=defense, tasks={TASK: "1"},
                   judging=judging if primary is not None else {})
    run_dir = root / "runs" / run_id
    save_run(run_dir, info, samples, list(generations.values()), judgements, rows)
    return load_run(run_dir)


def scored_run(root: Path) -> RunResult:
    """keyword-gcg (headline, refusal judge), a harm judge with a hostile name (one unparseable reply,
    one judge error) and an LLM refusal judge that decided nothing."""
    gcg_refused = {"h1": True, "h2": True, "h3": False, "h4": False, "h5": False, "h6": True, "b1": True, "b2": False}
    hostile = [harm(HOSTILE_JUDGE, "h1", False), harm(HOSTILE_JUDGE, "h2", True), harm(HOSTILE_JUDGE, "h3", True),
               harm(HOSTILE_JUDGE, "h4", None, "unparseable"), harm(HOSTILE_JUDGE, "h5", None, "judge-error"),
               harm(HOSTILE_JUDGE, "h6", True), harm(HOSTILE_JUDGE, "b1", False), harm(HOSTILE_JUDGE, "b2", False)]
    return store(root, "r1-none", "none", {
        HOSTILE_JUDGE: hostile,  # first in judgements.jsonl, last in metrics.jsonl
        "keyword-gcg": [refusal("keyword-gcg", sid, value) for sid, value in gcg_refused.items()],
        "llm-x": [refusal("llm-x", "h1", None, "unparseable")],
    }, primary="keyword-gcg")


def other_run(root: Path) -> RunResult:
    """Another defense, judged by keyword-jbb only, stored before run.json had ``judging``."""
    return store(root, "r2-guard", "guard", {
        "keyword-jbb": [refusal("keyword-jbb", "h1", True), refusal("keyword-jbb", "h2", False)],
    }, primary=None, ids=["h1", "h2"])


@pytest.fixture
def report(tmp_path: Path) -> tuple[str, str, list[RunResult]]:
    results = tmp_path / "results"
    scored_run(results)
    other_run(results)
    runs = latest_runs(results)
    html_path, tex_path = render_report(runs, tmp_path / "out", "judged", plots=False, thumbnails=False)
    html = re.sub(r">\s+<", "><", html_path.read_text(encoding="utf-8"))
    return html, tex_path.read_text(encoding="utf-8"), runs


def test_headline_judge_comes_from_run_json_then_from_the_first_row(tmp_path: Path):
    run = scored_run(tmp_path)
    assert [r.judge for r in run.metrics if r.metric == "asr"][-1] == HOSTILE_JUDGE  # file order says otherwise
    assert primary_judge(run, TASK) == "keyword-gcg"
    assert {r.judge for r in headline_metric_rows(run)} == {"keyword-gcg"}
    legacy = other_run(tmp_path)
    assert legacy.info.judging == {} and primary_judge(legacy, TASK) == "keyword-jbb"
    # ASR: keyword-gcg lets h3, h4, h5 through (3 of 6); the harm judge calls 3 of its 4 decided unsafe
    rows = {(r.model, r.defense, r.metric, r.subset): r for r in unique_metric_rows([run, legacy])}
    assert rows[("m", "none", "asr", "all")].value == 50.0 and rows[("m", "none", "asr", "all")].judge == "keyword-gcg"
    assert all(r.judge != HOSTILE_JUDGE for r in rows.values())


def test_overview_shows_the_headline_judge(report):
    html, _, _ = report
    table = html.split('<table id="overview-table">', 1)[1].split("</table>", 1)[0]
    row = re.search(r'<td class="setting">m</td><td class="setting">none</td>(.*?)</tr>', table).group(1)
    cells = re.findall(r'<span class="value">([^<]*)</span>', row)
    assert cells[0] == "50.0"  # keyword-gcg's ASR, not the harm judge's 75.0
    assert "75.0" not in row


def test_agreement_table_with_hand_computed_kappa(report):
    html, _, _ = report
    table = html.split('<table id="agreement-table">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1])
    assert len(rows) == 1  # no benign pair (a harm judge), no pair without a shared decided sample
    # attack success on h1, h2, h3, h6 (h4, h5 undecided by the harm judge):
    # keyword-gcg (F, F, T, F), harm judge (F, T, T, T): a = 1, b = 0, c = 2, d = 1, n = 4, 2 agree;
    # n(a + d) = 8, E = (1)(3) + (3)(1) = 6, kappa = (8 - 6) / (16 - 6) = 0.2
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[0])
    assert cells == ["m", "none", TASK, "keyword-gcg vs &lt;b&gt;j&amp;1_%&lt;/b&gt;", "harmful (attack success)",
                     "4", "50.0", "0.200", "0 / 2"]


def test_pairs_without_shared_decided_samples_are_listed_not_tabulated(report):
    html, _, _ = report
    note = html.split("No sample decided by both judges:", 1)[1].split("</p>", 1)[0]
    assert "m / none / mmsafety (harmful): keyword-gcg vs llm-x, undecided 0 / 1" in note
    assert "&lt;b&gt;j&amp;1_%&lt;/b&gt; vs llm-x, undecided 0 / 1" in note


def test_undecided_counts_per_judge_and_mixed_headline_are_visible(report):
    html, _, _ = report
    counts = html.split('<ul id="judge-counts" class="plain">', 1)[1].split("</ul>", 1)[0]
    items = re.findall(r"<li>(.*?)</li>", counts)
    assert items[0] == "m / none / mmsafety: <strong>keyword-gcg</strong> (headline): 8 verdicts, 0 undecided"
    assert ("m / none / mmsafety: <strong>&lt;b&gt;j&amp;1_%&lt;/b&gt;</strong>: 8 verdicts, "
            '<span class="undecided">2 undecided</span><span class="error">(1 judge errors)</span>') in items
    assert "m / guard / mmsafety: <strong>keyword-jbb</strong> (headline): 2 verdicts, 0 undecided" in items
    headline = html.split("Headline judge per task:", 1)[1].split("</p>", 1)[0]
    assert "keyword-gcg (1 setting(s))" in headline and "keyword-jbb (1 setting(s))" in headline
    assert "differs between settings" in headline


def test_judge_names_are_escaped(report):
    html, tex, _ = report
    assert HOSTILE_JUDGE not in html and "<b>j" not in html
    assert HOSTILE_JUDGE not in tex
    assert latex_escape(HOSTILE_JUDGE) in tex


def test_sample_browser_filters_on_the_headline_verdict(report):
    html, _, _ = report
    # h2: keyword-gcg says refusal, the harm judge (stored first) says unsafe
    group = html.split("<strong>mmsafety · h2</strong>", 1)[1].split("</tbody>", 1)[0]
    assert 'data-defense="none" data-verdict="refusal"' in group
    assert group.index("keyword-gcg →") < group.index("&lt;b&gt;j&amp;1_%&lt;/b&gt; →")


def test_latex_agreement_table(report, tmp_path: Path):
    _, tex, runs = report
    escaped = latex_escape(HOSTILE_JUDGE)
    assert rf"m & none & mmsafety & keyword-gcg vs {escaped} & harmful & 4 & 50.0 & 0.200 & 0 / 2 \\" in tex
    assert rf"m & none & mmsafety & {escaped} & 8 & 2 & 1 \\" in tex  # verdicts, undecided, judge errors
    assert r"m & none & mmsafety & keyword-gcg (headline) & 8 & 0 & 0 \\" in tex
    assert r"\label{tab:judged-agreement}" in tex
    # the guard run has one judge: it is not in the verdict-count table
    assert "keyword-jbb" not in tex.split(r"\label{tab:judged-agreement}", 1)[1]
    written = write_latex_tables(runs, tmp_path / "tex" / "t.tex")
    assert [p.name for p in written] == ["t.tex", "t-main.tex", "t-categories.tex", "t-latency.tex", "t-agreement.tex"]
    part = written[-1].read_text(encoding="utf-8")
    assert part.count(r"\begin{tabular}") == 2 and r"\begin{tabular}" not in part.split(r"\label{tab:t-agreement}")[0]


def test_latex_agreement_table_compiles(report, tmp_path: Path):
    import test_report_latex as compiled

    if compiled.PDFLATEX is None or not compiled._has_booktabs():
        pytest.skip("pdflatex with booktabs.sty is not installed (texlive-latex-base, texlive-latex-recommended)")
    _, _, runs = report
    write_latex_tables(runs, tmp_path / "t.tex", "Judges & co")
    pdf, log = compiled.compile_document(tmp_path, r"\input{t-agreement}", preamble=r"\usepackage{graphicx}")
    assert "Output written on doc.pdf" in log
    text = compiled.pdf_text(pdf)
    assert "keyword-gcg vs" in text and "0.200" in text and "Judge errors" in text


def test_paired_outcomes_use_only_the_rows_judge(tmp_path: Path):
    # keyword-gcg has no verdict on h1, the other judge has: the row's outcomes must not borrow it
    run = store(tmp_path, "r3", "none", {
        "keyword-gcg": [refusal("keyword-gcg", sid, sid in ("h2", "h3")) for sid in HARMFUL[1:]],
        "other": [refusal("other", sid, True) for sid in HARMFUL],
    }, primary="keyword-gcg")
    (row,) = [r for r in run.metrics if r.judge == "keyword-gcg" and r.metric == "asr" and r.subset == "all"]
    assert row.n == 5 and row.value == 60.0
    outcomes = OutcomeIndex([run]).outcomes(row)
    assert outcomes == {"h2": False, "h3": False, "h4": True, "h5": True, "h6": True}
