"""Report figures as embedded SVG data URIs (matplotlib).

Matplotlib is imported inside the functions, never at ``import harness.report`` time, and only its
object-oriented API is used (``Figure`` on an Agg canvas): no pyplot, so the process-wide backend and
figure registry are left alone. Figures are written as SVG with text kept as text (about twice as fast
as rasterising to PNG, sharper, and searchable) and shown through ``<img src="data:...">``, where an
SVG can run no script. Fixed hash salt and no date: the same data gives the same bytes.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.metrics import ASR, SAFETY, row_metric_info
from harness.core.records import MetricRow
from harness.report.analysis import Analysis, Setting, rate_counts
from harness.report.formatting import BASELINE_DEFENSE, format_number
from harness.core.stats import wilson_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 90
HEATMAP_ANNOTATE_MAX_CELLS = 150  # beyond this, numbers in cells are slow to draw (the tables hold them)
LABEL_CHAR_IN = 0.055  # approximate width of one 7 pt character, for margins without a layout engine


@dataclass
class Plot:
    anchor: str
    title: str
    caption: str
    data_uri: str


def plain(text: str) -> str:
    """Matplotlib reads text between two ``$`` as mathtext; escaped, names print as typed."""
    return str(text).replace("$", r"\$")


def _new_figure(width: float, height: float) -> "Figure":
    """A figure on its own Agg canvas; margins are set by hand (see ``_fixed_margins``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _fixed_margins(figure: "Figure", left_in: float, bottom_in: float, right_in: float, top_in: float) -> None:
    """Margins in inches: the constrained layout engine measures every label and costs ~0.4 s a figure."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(left=left_in / width, right=1 - right_in / width, bottom=bottom_in / height,
                           top=1 - top_in / height)


def _label_rows(axis: Any, labels: list[str], first: int = 0) -> None:
    """Row labels as plain texts left of the axes: tick objects (lines, markers, copied properties)
    cost several times more to build and draw, and a heatmap has dozens of rows."""
    axis.set_yticks([])
    transform = axis.get_yaxis_transform()  # x in axes fractions, y in data units
    for index, label in enumerate(labels):
        axis.text(-0.01, first + index, label, transform=transform, ha="right", va="center", fontsize=7)


def _fix_text_positions(axis: Any, title: str = "", x_label_offset: float = -0.1, y_label_offset: float = -0.1) -> None:
    """Title and axis labels at fixed positions: left automatic, matplotlib measures every tick label's
    box again on each draw to place them, which costs more than drawing the rest of the figure."""
    axis.set_title(title, fontsize=9, y=1.0)  # an explicit y turns automatic title placement off
    axis.xaxis.set_label_coords(0.5, x_label_offset)
    axis.yaxis.set_label_coords(y_label_offset, 0.5)


def figure_data_uri(figure: "Figure") -> str:
    from matplotlib import rc_context

    buffer = io.BytesIO()
    with warnings.catch_warnings(), rc_context({"svg.fonttype": "none", "svg.hashsalt": "harness-report"}):
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")  # CJK names in DejaVu Sans
        figure.savefig(buffer, format="svg", dpi=DPI, metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pooled(rows: list[MetricRow]) -> tuple[float, float, float, int] | None:
    """Pool rate rows (n-weighted): ``(value, low, high, n)`` in percent with a Wilson interval."""
    successes = total = 0
    for row in rows:
        counts = rate_counts(row)
        if counts is None:
            continue
        successes += counts[0]
        total += counts[1]
    if total == 0:
        return None
    low, high = wilson_interval(successes, total)
    return 100.0 * successes / total, 100.0 * low, 100.0 * high, total


def _setting_label(setting: Setting, with_model: bool) -> str:
    return plain(f"{setting[0]} / {setting[1]}" if with_model else setting[1])


def _defense_styles(defenses: list[str]) -> dict[str, tuple[Any, str]]:
    """A colour and marker per defense; the baseline is a black star."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    markers = "osD^vPXph<>"
    styles = {}
    for index, defense in enumerate(d for d in defenses if d != BASELINE_DEFENSE):
        styles[defense] = (palette[index % len(palette)], markers[(index // len(palette)) % len(markers)])
    styles[BASELINE_DEFENSE] = ("black", "*")
    return styles


def tradeoff_plot(analysis: Analysis) -> Plot | None:
    """ASR (pooled over safety tasks) against utility (pooled over utility rates), a panel per model."""
    points: dict[str, list[tuple[str, tuple, tuple]]] = {}
    for setting in analysis.settings:
        cells = analysis.cells.get(setting, {})
        asr = _pooled([c.row for c in cells.values() if c.row.metric == ASR.name])
        # the accuracies the metric table marks for pooling (not POPE's precision and recall, which
        # re-count the answers its accuracy counts, nor its direction-less yes-ratio)
        utility = _pooled([c.row for c in cells.values() if row_metric_info(c.row).pooled_utility])
        if asr and utility:
            points.setdefault(setting[0], []).append((setting[1], asr, utility))
    if not points:
        return None
    models = sorted(points)
    defenses = sorted({d for group in points.values() for d, _, _ in group}, key=lambda d: (d != BASELINE_DEFENSE, d))
    styles = _defense_styles(defenses)
    columns = min(len(models), 3)
    rows = math.ceil(len(models) / columns)
    legend_in = 0.6 + LABEL_CHAR_IN * max(len(d) for d in defenses)
    width, height = 3.9 * columns + legend_in, 3.6 * rows
    figure = _new_figure(width, height)
    figure.subplots_adjust(left=0.6 / width, right=1 - legend_in / width, bottom=0.5 / height, top=1 - 0.3 / height,
                           wspace=0.3, hspace=0.35)
    axes = figure.subplots(rows, columns, squeeze=False)
    handles = {}
    for index, model in enumerate(models):
        axis = axes[index // columns][index % columns]
        for defense, (x, x_low, x_high, _), (y, y_low, y_high, _) in points[model]:
            color, marker = styles[defense]
            handles[defense] = axis.errorbar(
                x, y, xerr=[[max(0.0, x - x_low)], [max(0.0, x_high - x)]],
                yerr=[[max(0.0, y - y_low)], [max(0.0, y_high - y)]],  # stored intervals may be rounded
                fmt=marker, color=color, markersize=6, capsize=2, elinewidth=0.8,
            )
        axis.set_xlabel("ASR, pooled over safety tasks (%) \u2193", fontsize=8)
        axis.set_ylabel("Utility, pooled accuracy (%) \u2191", fontsize=8)
        _fix_text_positions(axis, plain(model), -0.1, -0.12)
        axis.set_xlim(-5, 105)
        axis.set_ylim(-5, 105)
        axis.grid(True, linewidth=0.3)
        axis.tick_params(labelsize=7)
    # one legend for all panels: a defense keeps its colour and marker across models
    figure.legend([handles[d] for d in defenses if d in handles], [plain(d) for d in defenses if d in handles],
                  loc="center right", fontsize=7, frameon=False)
    for index in range(len(models), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    return Plot(
        "plot-tradeoff",
        "Safety\u2013utility trade-off",
        "One point per defense (the undefended baseline: black star). x: ASR pooled over every safety "
        "task's harmful samples; y: accuracy "
        "pooled over every utility task's accuracy rate; error bars: 95 % Wilson intervals of the pooled counts. "
        "Best corner: top left.",
        figure_data_uri(figure),
    )


def category_heatmaps(analysis: Analysis) -> list[Plot]:
    """One heatmap per (task, metric) with categories whose metric the table puts in the safety area
    (ASR; not over-refusal): settings x categories, values in percent. Other breakdowns stay in the tables."""
    plots = []
    for table in analysis.category_tables:
        if table.info.area != SAFETY:
            continue
        settings = list(table.cells)
        with_model = len({s[0] for s in settings}) > 1
        values = [
            [table.cells[s][c].row.value if c in table.cells[s] else math.nan for c in table.categories]
            for s in settings
        ]
        labels = [_setting_label(s, with_model) for s in settings]
        left = 0.3 + LABEL_CHAR_IN * max(len(label) for label in labels)
        bottom = 0.4 + 0.7 * LABEL_CHAR_IN * max(len(category) for category in table.categories)
        title = plain(f"{table.task}: {table.label} by category (%)")
        # wide enough for the title, which is centred over the cells
        body_width = max(0.55 * len(table.categories), LABEL_CHAR_IN * 1.3 * len(title) - 2 * min(left, 1.2))
        body_height = max(0.2 * len(settings), 0.6)
        figure = _new_figure(left + body_width + 1.2, bottom + body_height + 0.4)
        _fixed_margins(figure, left, bottom, 1.2, 0.4)
        axis = figure.subplots()
        grid = np.ma.masked_invalid(np.array(values, dtype=float))
        image = axis.imshow(grid, cmap=_reds(), vmin=0, vmax=100, aspect="auto", interpolation="nearest")
        _label_rows(axis, labels)
        axis.set_xticks([])
        for index, category in enumerate(table.categories):
            axis.text(index, -0.02, plain(category), transform=axis.get_xaxis_transform(), rotation=40,
                      rotation_mode="anchor", ha="right", va="top", fontsize=7)
        if len(settings) * len(table.categories) <= HEATMAP_ANNOTATE_MAX_CELLS:
            for i, line in enumerate(values):
                for j, value in enumerate(line):
                    if not math.isnan(value):
                        axis.text(j, i, format_number(value, 0), ha="center", va="center", fontsize=6,
                                  color="white" if value > 60 else "black")
        colorbar_axis = figure.add_axes((1 - 1.0 / figure.get_figwidth(), bottom / figure.get_figheight(),
                                         0.15 / figure.get_figwidth(), body_height / figure.get_figheight()))
        figure.colorbar(image, cax=colorbar_axis).ax.tick_params(labelsize=7)
        _fix_text_positions(colorbar_axis)
        _fix_text_positions(axis, title)
        plots.append(Plot(
            f"plot-heatmap-{len(plots)}",
            f"{table.task}: {table.label} by category",
            "Rows: model / defense; columns: the task's categories; grey: no value.",
            figure_data_uri(figure),
        ))
    return plots


def _reds() -> Any:
    from matplotlib import colormaps

    return colormaps["Reds"].with_extremes(bad="#dddddd")


def latency_plot(analysis: Analysis) -> Plot | None:
    """Per-sample latency distribution per (model, defense): horizontal box plots."""
    settings = [s for s in analysis.settings if analysis.latencies.get(s)]
    if not settings:
        return None
    with_model = len({s[0] for s in settings}) > 1
    labels = [_setting_label(s, with_model) for s in settings]
    left = 0.3 + LABEL_CHAR_IN * max(len(label) for label in labels)
    figure = _new_figure(left + 6.0, 0.8 + 0.22 * len(settings))
    _fixed_margins(figure, left, 0.55, 0.2, 0.15)
    axis = figure.subplots()
    axis.boxplot(
        [analysis.latencies[s] for s in settings],
        **_horizontal(),
        widths=0.6,
        flierprops={"markersize": 2, "alpha": 0.5},
    )
    axis.invert_yaxis()  # first setting on top, as in the tables
    _label_rows(axis, labels, first=1)
    axis.set_xlabel("seconds per sample (prefill + decode)", fontsize=8)
    _fix_text_positions(axis, "", -0.45 / (figure.get_figheight() - 0.7), -0.1)
    axis.tick_params(axis="x", labelsize=7)
    axis.grid(True, axis="x", linewidth=0.3)
    return Plot(
        "plot-latency",
        "Latency distribution per defense",
        "Box: quartiles; whiskers: 1.5 IQR; points: outliers. Successful generations only; cached "
        "generations keep their original timings.",
        figure_data_uri(figure),
    )


def _horizontal() -> dict[str, Any]:
    """``orientation=`` replaced ``vert=`` in matplotlib 3.10 (and ``vert`` now warns)."""
    import matplotlib

    major, minor = (int(part) for part in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def all_plots(analysis: Analysis) -> list[Plot]:
    plots = []
    tradeoff = tradeoff_plot(analysis)
    if tradeoff:
        plots.append(tradeoff)
    plots.extend(category_heatmaps(analysis))
    latency = latency_plot(analysis)
    if latency:
        plots.append(latency)
    return plots
