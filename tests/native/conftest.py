"""Fixtures of the native tier: the sanitizer-built pkt.c harness, shared by the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .pkt_harness import PktHarness, build_harness


@pytest.fixture(scope="session")
def pkt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PktHarness]:
    """One harness process for every pkt test: an ASan binary per packet would be too slow.

    Closing it at the end also fails the session if LeakSanitizer or anything else made the
    process exit non-zero.
    """
    out = tmp_path_factory.mktemp("pkt_harness")
    harness = PktHarness(build_harness(out), out / "stderr.txt")
    yield harness
    harness.close()
