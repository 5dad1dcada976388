"""The checked-in code of agent/api/v1 is what the pinned protoc makes of the .proto files
next to it (regenerate with `python -m agent.api.gen`)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

from agent.api import gen

pytestmark = pytest.mark.unit


def test_grpcio_tools_is_the_pinned_version() -> None:
    pyproject = (gen.ROOT / "pyproject.toml").read_text()
    pins = re.findall(r'"grpcio-tools==([^"]+)"', pyproject)
    assert len(pins) == 1, "pyproject.toml must pin grpcio-tools exactly once (==)"
    assert importlib.metadata.version("grpcio-tools") == pins[0], (
        "the installed grpcio-tools is not the pinned one: its protoc may generate other "
        "bytes; run scripts/setup.sh")


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    written = gen.generate(tmp_path)
    fresh_dir = tmp_path / gen.PROTO_DIR.relative_to(gen.ROOT)
    assert sorted(p.name for p in fresh_dir.iterdir()) == gen.generated_names()
    checked_in = sorted(p.name for s in gen.SUFFIXES for p in gen.PROTO_DIR.glob("*" + s))
    assert checked_in == gen.generated_names(), "stale generated files: python -m agent.api.gen"
    stale = [p.name for p in written
             if p.read_bytes() != (gen.PROTO_DIR / p.name).read_bytes()]
    assert not stale, f"{stale} differ from their .proto: run `python -m agent.api.gen`"


def test_generated_modules_import_inside_the_package() -> None:
    from agent.api.v1 import policy_pb2, telemetry_pb2

    assert telemetry_pb2.DESCRIPTOR.package == "ringlane.v1"
    assert telemetry_pb2.FlowRecord.DESCRIPTOR.fields_by_name["direction"].enum_type is (
        policy_pb2.Direction.DESCRIPTOR)


def test_every_field_and_value_of_the_api_is_commented() -> None:
    """The .proto files are the API reference: nothing in them goes undocumented."""
    for proto in gen.protos():
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            code = line.split("//")[0].strip()
            declares = re.match(r"(rpc|message|enum|service|oneof)\b", code) or re.search(
                r"=\s*\d+", code)
            if declares and not lines[i - 1].strip().startswith("//"):
                pytest.fail(f"{proto.name}:{i + 1}: {code!r} has no comment above it")
