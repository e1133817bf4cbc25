"""Report rendering: stored runs -> one offline HTML file and LaTeX tables.

Matplotlib is imported only while a report is drawn (``harness.report.plots``), never here.
"""

from harness.report.latex import TexSafe, latex_escape, write_latex_tables
from harness.report.render import render_report

__all__ = ["TexSafe", "latex_escape", "render_report", "write_latex_tables"]
