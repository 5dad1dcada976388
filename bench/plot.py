"""The figures of a run as a PNG: every row of every section, each peer a bar (median, min-max
whiskers), the section's ratios written next to the row, one panel per unit so that kpps, Gbit/s
and microseconds each get their own scale. Drawn from the JSON of bench.report.Results, so a saved
run can be drawn again without measuring:

    .venv/bin/python -m bench.plot RESULTS.json OUT.png

(`python -m bench --plot OUT.png` draws the same at the end of a run.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

WIDTH_IN = 13.0
BAR_IN = 0.30  # height of one peer's bar, inches
HEADING_IN = 0.30  # a section or row heading line
GAP_IN = 0.15  # above a section that is not the first of its panel
PANEL_EXTRA_IN = 0.75  # a panel's title, axis and tick labels
TOP_IN = 0.95  # the figure's title lines
BOTTOM_IN = 0.35  # the footnote
DPI = 110
# one colour per peer name, in the order the peers first appear (a peer keeps its colour in
# every panel: "ringlane" and "kernel VXLAN" look the same in forwarding, TCP and latency)
PALETTE = ("#1f5fa8", "#e07b24", "#3d9a50", "#b03a48", "#8c6bb1", "#2aa7b8", "#6b8e23",
           "#d4a017", "#5f6b7a", "#c05b9e", "#8b5a2b", "#4a4a9c")


@dataclass
class _Line:
    """One line of a panel, top to bottom: a heading (section or row) or a peer's bar."""

    kind: str  # "gap", "section", "row" or "bar"
    text: str
    section: str  # the key of the section the line belongs to
    ratio: str = ""  # row headings: the section's ratios for this row
    peer: str = ""  # bars
    summary: dict[str, Any] | None = None  # bars: median, min, max, values, noisy_reps


def _short(title: str) -> str:
    """A section title up to its first ':' or ', ' ("1. Overlay forwarding")."""
    cut = [i for i in (title.find(":"), title.find(", ")) if i > 0]
    return title[:min(cut)] if cut else title


def _fmt(v: float) -> str:
    """Three significant figures or so, whatever the unit."""
    a = abs(v)
    if a >= 100 or v == 0:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _ratios(row: dict[str, Any]) -> str:
    return "   ".join(f"{label} {'-' if x is None else f'{x:.2f}x'}"
                       for label, x in row.get("ratios", {}).items())


def _panels(results: dict[str, Any]) -> dict[str, list[_Line]]:
    """unit -> the lines of its panel, in the order of the sections and rows of the JSON."""
    panels: dict[str, list[_Line]] = {}
    for s in results.get("sections", []):
        if not s.get("rows"):
            continue
        lines = panels.setdefault(s["unit"], [])
        if lines:
            lines.append(_Line("gap", "", s["key"]))
        lines.append(_Line("section", _short(s["title"]), s["key"]))
        for row in s["rows"]:
            lines.append(_Line("row", row["label"], s["key"], ratio=_ratios(row)))
            lines.extend(_Line("bar", peer, s["key"], peer=peer, summary=summary)
                         for peer, summary in row["peers"].items())
    return panels


def _line_height(ln: _Line) -> float:
    return {"bar": BAR_IN, "gap": GAP_IN}.get(ln.kind, HEADING_IN)


def _height(lines: list[_Line]) -> float:
    return sum(_line_height(ln) for ln in lines)


def _title(results: dict[str, Any]) -> str:
    m, c = results.get("machine", {}), results.get("config", {})
    first = "Ringlane vs its kernel peers, same run"
    if m.get("ringlane_commit"):
        first += f", commit {m['ringlane_commit']}"
    if m.get("date"):
        first += f", {str(m['date'])[:10]}"
    machine = ", ".join(x for x in (
        f"Linux {m['kernel']}" if m.get("kernel") else "",
        f"{m['nproc']} CPUs" if m.get("nproc") else "",
        str(m.get("cpu_model", ""))) if x)
    how = (f"median of {c['reps']} repetitions, whiskers min-max" if c.get("reps")
           else "median, whiskers min-max")
    return "\n".join(x for x in (first, "; ".join(x for x in (machine, how) if x)) if x)


def _draw_panel(ax: Axes, unit: str, lines: list[_Line], colours: dict[str, str],
                drawn: list[tuple[str, str]]) -> bool:
    """The lines of one unit top to bottom, each row's (section key, label) appended to `drawn`
    once a bar of it is on the axes; True if a bar had noisy repetitions."""
    ys, y = [], 0.0
    for ln in lines:
        ys.append(y + _line_height(ln) / 2)
        y += _line_height(ln)
    top = max((ln.summary["max"] for ln in lines if ln.summary), default=1.0) or 1.0
    heading = blended_transform_factory(ax.transAxes, ax.transData)
    ticks: list[float] = []
    names: list[str] = []
    noisy = False
    row: tuple[str, str] | None = None
    for ln, yc in zip(lines, ys, strict=True):
        if ln.kind == "gap":
            continue
        if ln.kind == "section":
            ax.text(0.004, yc, ln.text, transform=heading, va="center", ha="left",
                    fontsize=10.5, fontweight="bold")
            continue
        if ln.kind == "row":
            row = (ln.section, ln.text)
            ax.text(0.018, yc, ln.text, transform=heading, va="center", ha="left",
                    fontsize=9.5, fontstyle="italic")
            if ln.ratio:
                ax.text(0.996, yc, ln.ratio, transform=heading, va="center", ha="right",
                        fontsize=9.5, fontweight="bold", color="#333333")
            continue
        s = ln.summary or {}
        med, lo, hi = float(s["median"]), float(s["min"]), float(s["max"])
        ax.barh(yc, med, height=BAR_IN * 0.72, color=colours[ln.peer],
                xerr=[[med - lo], [hi - med]], error_kw={"elinewidth": 1, "capsize": 2.5,
                                                         "ecolor": "#222222"})
        star = "*" if s.get("noisy_reps") else ""
        noisy = noisy or bool(star)
        spread = "" if len(s.get("values", [])) <= 1 else f"  [{_fmt(lo)}-{_fmt(hi)}]"
        ax.text(hi + top * 0.008, yc, f"{_fmt(med)}{star}{spread}", va="center", ha="left",
                fontsize=8.5)
        ticks.append(yc)
        names.append(ln.peer)
        if row is not None:  # the row's first bar is on the axes
            drawn.append(row)
            row = None
    ax.set_ylim(y, 0)  # first line at the top
    ax.set_xlim(0, top * 1.30)  # room for the value labels right of the longest bar
    ax.set_yticks(ticks, names, fontsize=9)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(unit, fontsize=9.5, labelpad=2)
    ax.tick_params(axis="x", labelsize=8.5)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return noisy


def plot(results: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    """Draw `results` (Results.to_json(), or a saved JSON) into the PNG `out`. Returns the
    (section key, row label) of every row drawn, panel by panel."""
    panels = _panels(results)
    if not panels:
        raise ValueError("no rows to plot")
    colours: dict[str, str] = {}
    for lines in panels.values():
        for ln in lines:
            if ln.kind == "bar" and ln.peer not in colours:
                colours[ln.peer] = PALETTE[len(colours) % len(PALETTE)]
    heights = [_height(lines) + PANEL_EXTRA_IN for lines in panels.values()]
    total = sum(heights) + TOP_IN + BOTTOM_IN
    # a Figure on the Agg canvas, not pyplot: headless, and no global state to leak
    fig = Figure(figsize=(WIDTH_IN, total), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(panels), 1, height_ratios=heights, hspace=0,
                            left=0.16, right=0.985, top=1 - TOP_IN / total,
                            bottom=BOTTOM_IN / total)
    noisy = False
    drawn: list[tuple[str, str]] = []
    for i, (unit, lines) in enumerate(panels.items()):
        # each panel keeps PANEL_EXTRA_IN below its bars for the axis: shrink the axes
        sub = grid[i].subgridspec(2, 1, height_ratios=[_height(lines), PANEL_EXTRA_IN],
                                  hspace=0)
        noisy = _draw_panel(fig.add_subplot(sub[0]), unit, lines, colours, drawn) or noisy
    fig.suptitle(_title(results), x=0.01, ha="left", y=1 - 0.12 / total, va="top",
                 fontsize=11.5)
    foot = "ratios are of medians"
    if noisy:
        foot += ("; * some repetitions ran while processes outside the sandbox used the "
                 "CPUs (noisy_reps in the JSON)")
    fig.text(0.01, 0.12 / total, foot, fontsize=8.5, color="#444444", va="bottom")
    fig.savefig(out, format="png")
    return drawn


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        print("usage: python -m bench.plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    src, out = Path(argv[0]), Path(argv[1])
    try:
        results = json.loads(src.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"python -m bench.plot: {src}: {exc}", file=sys.stderr)
        return 1
    rows = plot(results, out)
    print(f"{len(rows)} rows drawn to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
