"""The on-disk deletion queue: order, one entry per attachment, the bound, concurrent plugins
(separate processes, as kubelet runs them), and files that are not ours."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cni import queue

ROOT = Path(__file__).resolve().parents[2]


def test_enqueue_then_drain_in_order_and_once(tmp_path: Path) -> None:
    d = str(tmp_path / "state")
    for cid in ("a", "b", "c"):
        assert queue.enqueue(d, cid, "eth0") == 0
    assert queue.enqueue(d, "b", "eth0") == 0  # a repeated DEL
    assert queue.enqueue(d, "b", "net1") == 0  # another attachment of the same container
    assert [(e["containerId"], e["ifName"]) for e in queue.pending(d)] == \
        [("a", "eth0"), ("b", "eth0"), ("c", "eth0"), ("b", "net1")]
    drained = queue.drain(d)
    assert [(e["containerId"], e["ifName"]) for e in drained] == \
        [("a", "eth0"), ("b", "eth0"), ("c", "eth0"), ("b", "net1")]
    assert all(e["op"] == "cni_del" and isinstance(e["queuedAt"], float) for e in drained)
    assert queue.drain(d) == []
    assert sorted(os.listdir(d)) == [queue.LOCK_FILE]  # no temporary files left


def test_queue_is_private(tmp_path: Path) -> None:
    d = tmp_path / "state"
    queue.enqueue(str(d), "a", "eth0")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / queue.QUEUE_FILE).stat().st_mode) == 0o600


def test_bound_drops_the_oldest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue, "MAX_ENTRIES", 5)
    d = str(tmp_path)
    dropped = [queue.enqueue(d, f"c{i}", "eth0") for i in range(7)]
    assert dropped == [0, 0, 0, 0, 0, 1, 1]
    assert [e["containerId"] for e in queue.drain(d)] == ["c2", "c3", "c4", "c5", "c6"]


def test_default_bound_is_1024() -> None:
    assert queue.MAX_ENTRIES == 1024


def test_drain_of_a_missing_dir_creates_nothing(tmp_path: Path) -> None:
    assert queue.drain(str(tmp_path / "never")) == []
    assert queue.pending(str(tmp_path / "never")) == []
    assert not (tmp_path / "never").exists()


def test_lines_that_are_not_entries_are_skipped(tmp_path: Path) -> None:
    d = tmp_path
    queue.enqueue(str(d), "a", "eth0")
    with open(d / queue.QUEUE_FILE, "a") as f:
        f.write("not json\n" + json.dumps({"op": "cni_add", "containerId": "x"}) + "\n")
    queue.enqueue(str(d), "b", "eth0")
    assert [e["containerId"] for e in queue.drain(str(d))] == ["a", "b"]


def test_concurrent_plugins_lose_nothing(tmp_path: Path) -> None:
    """8 processes x 25 deletions at once: the flock serialises the read-modify-rename."""
    code = ("import sys; from agent.cni import queue\n"
            "for i in range(25): queue.enqueue(sys.argv[1], f'p{sys.argv[2]}-{i}', 'eth0')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(n)], cwd=ROOT)
             for n in range(8)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 8
    entries = queue.drain(str(tmp_path))
    assert len(entries) == 200
    assert {e["containerId"] for e in entries} == {f"p{n}-{i}" for n in range(8)
                                                   for i in range(25)}
    for n in range(8):  # each process's own deletions stay in its order
        mine = [e["containerId"] for e in entries if str(e["containerId"]).startswith(f"p{n}-")]
        assert mine == [f"p{n}-{i}" for i in range(25)]
