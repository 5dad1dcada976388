"""bench/plot.py: the PNG of a run, drawn from the committed full run and from Results itself."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from bench import plot
from bench.report import Ratio, Results, Section

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
FULL = ROOT / "docs" / "benchmarks-9151880.json"  # the full run docs/benchmarks.md quotes
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a PNG has first."""
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["key"], r["label"]) for s in results["sections"] for r in s["rows"]]


def test_full_run_every_row_drawn(tmp_path: Path) -> None:
    results = json.loads(FULL.read_text())
    out = tmp_path / "bench.png"
    drawn = plot.plot(results, out)
    assert sorted(drawn) == sorted(_rows(results))
    assert len(drawn) == len(set(drawn)) == 12
    data = out.read_bytes()
    width, height = _png_size(data)
    assert 1000 <= width <= 3000 and 1000 <= height <= 4000, (width, height)
    assert 30_000 < len(data) < 3_000_000


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.png"
    assert plot.main([str(FULL), str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "12 rows drawn" in capsys.readouterr().out
    assert plot.main([str(tmp_path / "missing.json"), str(out)]) == 1
    assert plot.main([str(FULL)]) == 2


def test_from_results_partial_run(tmp_path: Path) -> None:
    """What `python -m bench --plot` hands over: Results.to_json() of a run cut short, with a
    peer missing (ratio None), noisy repetitions and a section without rows."""
    results = Results([
        Section("fwd", "1. Forwarding: x", "kpps", ["a", "b"], [Ratio("a/b", "a", "b")]),
        Section("lat", "2. Latency, y", "us", ["a", "b"], [Ratio("a/b", "a", "b")]),
        Section("none", "3. Never measured", "Gbit/s", ["a"], []),
    ])
    results.machine = {"ringlane_commit": "0123456789ab", "kernel": "6.1"}
    for v in (1.0, 2.0, 3.0):
        results.begin_step()
        results.add("fwd", "p1", "one CPU", "a", v * 100)
        results.add("fwd", "p1", "one CPU", "b", v * 50)
        results.end_step(noisy=v == 2.0)
    results.add("lat", "p50", "UDP p50", "a", 60.0)  # b never measured: the run aborted
    out = tmp_path / "partial.png"
    drawn = plot.plot(results.to_json(), out)
    assert drawn == [("fwd", "one CPU"), ("lat", "UDP p50")]
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_nothing_to_draw(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows"):
        plot.plot(Results([]).to_json(), tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()
