"""The LaTeX tables compile: a document \\input-ing them goes through pdflatex and the PDF shows them.

Needs Debian ``texlive-latex-base`` (pdflatex) and ``texlive-latex-recommended`` (booktabs.sty);
``poppler-utils`` (pdftotext) to read the PDF back. Skipped with the reason when they are missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.report import write_latex_tables
from harness.core.store import RunResult
from test_report import TEX_DEFENSE, TEX_MODEL, make_paired_results, make_run_a, make_run_b

PDFLATEX = shutil.which("pdflatex")
PDFTOTEXT = shutil.which("pdftotext")
HOSTILE_TITLE = "Results & 100% of $x_1$ #1 {a} ~^ \\end{document} <b>"


def _has_booktabs() -> bool:
    kpsewhich = shutil.which("kpsewhich")
    if kpsewhich is None:
        return False
    found = subprocess.run([kpsewhich, "booktabs.sty"], capture_output=True, text=True, timeout=30)
    return bool(found.stdout.strip())


pytestmark = [
    pytest.mark.skipif(PDFLATEX is None, reason="pdflatex not installed (Debian package texlive-latex-base)"),
    pytest.mark.skipif(PDFLATEX is not None and not _has_booktabs(),
                       reason="booktabs.sty not installed (Debian package texlive-latex-recommended)"),
]

DOCUMENT = r"""\documentclass{article}
\usepackage{booktabs}
%s
\begin{document}
%s
\end{document}
"""


def compile_document(folder: Path, body: str, preamble: str = "") -> tuple[Path, str]:
    """Run pdflatex on a document with ``body``; return the PDF and the log (fails the test on error)."""
    (folder / "doc.tex").write_text(DOCUMENT % (preamble, body), encoding="utf-8")
    result = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
        cwd=folder, capture_output=True, text=True, timeout=180,
    )
    log = (folder / "doc.log").read_text(encoding="utf-8", errors="replace")
    assert result.returncode == 0, f"pdflatex failed:\n{result.stdout[-3000:]}"
    assert "! " not in log  # no TeX error, even a recovered one
    pdf = folder / "doc.pdf"
    assert pdf.is_file() and pdf.stat().st_size > 1000
    return pdf, log


def pdf_text(pdf: Path) -> str:
    if PDFTOTEXT is None:
        pytest.skip("pdftotext not installed (Debian package poppler-utils): the PDF compiled but cannot be read back")
    result = subprocess.run([PDFTOTEXT, "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


def _runs(tmp_path: Path) -> list[RunResult]:
    return [make_run_a(tmp_path / "a"), make_run_b(), *make_paired_results(tmp_path / "paired")]


def test_combined_tables_compile_with_hostile_names(tmp_path: Path):
    written = write_latex_tables(_runs(tmp_path), tmp_path / "tables.tex", HOSTILE_TITLE)
    # graphicx loaded: \harnessfit shrinks the wide main table to the line, so every column is on the page
    pdf, log = compile_document(tmp_path, r"\input{tables}", preamble=r"\usepackage{graphicx}")
    assert "Output written on doc.pdf" in log
    text = pdf_text(pdf)
    # names print as typed (OT1 fonts draw "_" as a rule, which pdftotext reads as a space)
    assert "m&1%$#" in text and "{x}" in text and "\\y" in text
    assert "Results & 100% of $x" in text and "#1 {a}" in text and "\\end{document} <b>" in text
    # table content: headers, values with ± half-widths, the significance mark, the latency table
    assert "ASR (harmful)" in text and "Accuracy" in text
    assert re.search(r"16\.7\s*∗\s*± 9\.4", text)  # guard's ASR: bold best, significant vs none
    # beside it, substantive ASR: every fixture answer is an echo; then guard's accuracy, significant too
    assert "Substantive ASR (harmful)" in text
    assert re.search(r"guard\s+16\.7\s*∗\s*± 9\.4\s+0\.0 ± 3\.0(\s+–){2}\s+50\.0\s*∗\s*± 14\.8", text)
    assert re.search(r"tiny-llava\s+none(\s+–){2}\s+50\.0 ± 40\.5\s+–\s+–\s+75\.0 ± 32\.7\s+1\.00", text)
    assert "Latency × ↓" in text  # the last column of the main table fits on the page
    assert "12.3 ± 13.5" in text
    assert "Tokens/s" in text and "1.88 ± 0.04" in text
    assert "topic-0" in text and "weapons" in text  # per-category tables
    assert len(written) == 4
    assert TEX_MODEL not in (tmp_path / "tables.tex").read_text(encoding="utf-8")
    assert TEX_DEFENSE not in (tmp_path / "tables.tex").read_text(encoding="utf-8")


def test_split_tables_compile_without_intervals_or_graphicx(tmp_path: Path):
    runs = [make_run_a(tmp_path / "a"), *make_paired_results(tmp_path / "paired")]
    write_latex_tables(runs, tmp_path / "t.tex", "Split", with_ci=False)
    pdf, _ = compile_document(tmp_path, "\\input{t-main}\n\\input{t-categories}\n\\input{t-latency}\n")
    text = pdf_text(pdf)
    assert "±" not in text  # no intervals, and captions only mention them when they are there
    # main table (without graphicx it runs off the page after the safety tasks' columns; the combined
    # test above reads the rest), then latency
    assert re.search(r"guard\s+16\.7\s*∗\s+0\.0\s+–", text)
    assert re.search(r"weak\s+80\.0\s+0\.0\s+–", text)
    assert re.search(r"guard\s+100\s+1\.280\s+2\.000\s+2\.000\s+7\.2\s+1\.88\s+0", text)
    assert "Split: latency per sample" in text
