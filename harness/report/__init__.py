"""Report rendering: stored runs -> one offline HTML file and a LaTeX table file."""

from harness.report.latex import TexSafe, latex_escape
from harness.report.render import render_report

__all__ = ["TexSafe", "latex_escape", "render_report"]
