"""The figures of one run: collected per section, row and peer over the repetitions, printed as
a table (median and range, ratios of medians) and written as JSON. Figures, never verdicts."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Ratio:
    """A column `label` = median(numerator peer) / median(denominator peer)."""

    label: str
    numerator: str
    denominator: str


@dataclass
class Row:
    label: str
    values: dict[str, list[float]] = field(default_factory=dict)  # peer -> one per repetition
    # peer -> indices into values measured while processes outside the sandbox were busy
    noisy: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Section:
    key: str
    title: str
    unit: str
    peers: list[str]
    ratios: list[Ratio]
    rows: dict[str, Row] = field(default_factory=dict)
    # peer -> row key -> one dict per repetition: counters, CPU split, raw tool output figures
    details: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    decimals: int = 0


class Results:
    """Every section of the benchmark, filled as the measurements come in."""

    def __init__(self, sections: list[Section]) -> None:
        self.sections = {s.key: s for s in sections}
        self.machine: dict[str, Any] = {}
        self.config: dict[str, Any] = {}
        self.warnings: list[str] = []
        # per measurement step: CPU used by processes outside the sandbox
        self.load: list[dict[str, Any]] = []
        self._step: list[tuple[Row, str, int]] = []  # values added in the current step

    def add(self, section: str, row: str, label: str, peer: str, value: float,
            detail: dict[str, Any] | None = None) -> None:
        """One repetition's figure of `peer` in a row (created with `label` if new), and what
        else that repetition recorded."""
        s = self.sections[section]
        r = s.rows.setdefault(row, Row(label))
        r.values.setdefault(peer, []).append(value)
        self._step.append((r, peer, len(r.values[peer]) - 1))
        if detail is not None:
            s.details.setdefault(peer, {}).setdefault(row, []).append(detail)

    def begin_step(self) -> None:
        """Start collecting the values of a measurement step (see end_step())."""
        self._step.clear()

    def end_step(self, *, noisy: bool) -> None:
        """Mark the values added since begin_step() as measured on a busy machine (or not)."""
        if noisy:
            for row, peer, index in self._step:
                row.noisy.setdefault(peer, []).append(index)
        self._step.clear()

    def to_json(self) -> dict[str, Any]:
        """Everything, with median, min and max per peer and the ratios, as plain JSON."""
        sections = []
        for s in self.sections.values():
            rows = []
            for key, r in s.rows.items():
                peers = {p: {**_summary(v), "noisy_reps": r.noisy.get(p, [])}
                         for p, v in r.values.items()}
                ratios = {q.label: _ratio(r, q) for q in s.ratios}
                rows.append({"key": key, "label": r.label, "peers": peers, "ratios": ratios})
            sections.append({"key": s.key, "title": s.title, "unit": s.unit, "rows": rows,
                             "details": s.details, "notes": s.notes})
        return {"machine": self.machine, "config": self.config, "warnings": self.warnings,
                "sections": sections, "load": self.load}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    def render(self) -> str:
        """The report as text: the header, warnings, and a table with notes per section."""
        lines: list[str] = []
        m = self.machine
        lines.append(f"Ringlane benchmark, {m.get('date', '')}: Linux {m.get('kernel', '')}, "
                     f"{m.get('nproc', '')} CPUs ({m.get('cpu_model', '')}), commit "
                     f"{m.get('ringlane_commit', '')}")
        lines.append(f"median of {self.config.get('reps', '?')} repetitions [min-max]; "
                     "ratios are of medians")
        if self.load:
            worst = max(self.load, key=lambda s: float(s["others_pct_of_core"]))
            mean = statistics.fmean(float(s["others_pct_of_core"]) for s in self.load)
            lines.append(f"processes outside the sandbox used {mean:.1f}% of a core on average "
                         f"during the measurements, at most {worst['others_pct_of_core']:.1f}% "
                         f"({worst['step']})")
        if any(r.noisy for s in self.sections.values() for r in s.rows.values()):
            lines.append("* some repetitions of this figure ran while processes outside the "
                         "sandbox used the CPUs (noisy_reps in the JSON)")
        for w, n in _counted(self.warnings):
            lines.append(f"WARNING: {w}" + (f" (x{n})" if n > 1 else ""))
        for s in self.sections.values():
            if not s.rows:
                continue
            lines.append("")
            lines.append(f"{s.title} [{s.unit}]")
            lines.extend(_table(s))
            lines.extend(f"   {n}" for n in s.notes)
        return "\n".join(lines)


def _counted(items: list[str]) -> list[tuple[str, int]]:
    """Each distinct item once, in first-seen order, with how often it occurred."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return list(counts.items())


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def _ratio(row: Row, q: Ratio) -> float | None:
    """The ratio of medians, or None when a peer is missing or zero."""
    a, b = row.values.get(q.numerator), row.values.get(q.denominator)
    if not a or not b or statistics.median(b) == 0:
        return None
    return statistics.median(a) / statistics.median(b)


def _cell(values: list[float] | None, decimals: int) -> str:
    if not values:
        return "-"
    med = f"{statistics.median(values):.{decimals}f}"
    if len(values) == 1:
        return med
    return f"{med} [{min(values):.{decimals}f}-{max(values):.{decimals}f}]"


def _table(s: Section) -> list[str]:
    """A section's rows as aligned text: label, one cell per peer, the ratios."""
    header = ["", *s.peers, *(q.label for q in s.ratios)]
    body = []
    for r in s.rows.values():
        ratios = [_ratio(r, q) for q in s.ratios]
        body.append([r.label, *(_cell(r.values.get(p), s.decimals) + ("*" if r.noisy.get(p)
                                                                         else " ")
                                for p in s.peers),
                     *("-" if x is None else f"{x:.2f}x" for x in ratios)])
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    out = []
    for line in [header, *body]:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:],
                                                                          strict=True)]
        out.append("   " + "  ".join(cells).rstrip())
    return out
