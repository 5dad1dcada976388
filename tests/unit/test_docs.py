"""The documentation against the code it describes.

docs/api.md has two generated parts: the API reference, from agent/api/v1/*.proto and the
comments above every service, method, message, field and enum value (protoc's source info:
the comments are the reference's only source), and the limits table, from the constants the
agent enforces. Both are regenerated with

    .venv/bin/python -m tests.unit.test_docs --write

and the tests below fail while docs/api.md differs from what that would write. The hand-written
parts are checked where they can drift silently: every status code the server can return is
explained, and every relative link in README.md and docs/ leads to a file that exists.
"""

from __future__ import annotations

import importlib.resources
import re
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
PROTO_DIR = ROOT / "agent" / "api" / "v1"
# Files in the reference in this order (the API's own order: policies first); a new .proto
# goes after these, by name.
PROTO_ORDER = ("policy.proto", "endpoint.proto", "telemetry.proto", "agent.proto")
REGIONS = ("limits", "reference")
WELL_KNOWN = "https://protobuf.dev/reference/protobuf/google.protobuf/#"

# FieldDescriptorProto.Type and .Label numbers (descriptor.proto): stable wire constants.
_SCALARS = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64",
            7: "fixed32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32",
            16: "sfixed64", 17: "sint32", 18: "sint64"}
_TYPE_MESSAGE, _TYPE_ENUM, _LABEL_REPEATED = 11, 14, 3
# SourceCodeInfo paths (descriptor.proto field numbers)
_FILE_MESSAGES, _FILE_ENUMS, _FILE_SERVICES, _FILE_SYNTAX = 4, 5, 6, 12
_MESSAGE_FIELDS = 2
_ENUM_VALUES, _SERVICE_METHODS = 2, 2


def _start(region: str) -> str:
    return f"<!-- generated:{region}:start (python -m tests.unit.test_docs --write) -->"


def _end(region: str) -> str:
    return f"<!-- generated:{region}:end -->"


# -- the protos, with their comments ------------------------------------------------------


def descriptor_set() -> Any:
    """Every .proto of agent/api/v1 compiled by protoc (grpcio-tools, a dev dependency) into a
    FileDescriptorSet with source info: comments and positions."""
    try:
        from google.protobuf import descriptor_pb2
        from grpc_tools import protoc
    except ImportError:  # pragma: no cover - dev dependency
        pytest.skip("grpcio-tools is not installed (pip install -e '.[dev]')")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    protos = sorted(PROTO_DIR.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "api.pb"
        status = protoc.main(["protoc", f"-I{ROOT}", f"-I{well_known}", "--include_source_info",
                              f"--descriptor_set_out={out}", *map(str, protos)])
        if status != 0:
            raise RuntimeError(f"protoc exited with {status}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _Comments:
    """A file's comments by SourceCodeInfo path, and each element's first line."""

    def __init__(self, file: Any) -> None:
        self.leading: dict[tuple[int, ...], str] = {}
        self.detached: dict[tuple[int, ...], list[str]] = {}
        self.line: dict[tuple[int, ...], int] = {}
        for loc in file.source_code_info.location:
            path = tuple(loc.path)
            self.leading[path] = loc.leading_comments
            self.detached[path] = list(loc.leading_detached_comments)
            self.line[path] = loc.span[0]

    def paragraphs(self, path: tuple[int, ...]) -> list[str]:
        return _paragraphs(self.leading.get(path, ""))

    def text(self, path: tuple[int, ...]) -> str:
        """The comment as one line (a table cell)."""
        return " ".join(self.paragraphs(path)).replace("|", "\\|")


_ENUM_VALUE_NAME = re.compile(r"(?<![`\w])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?![`\w])")


def _paragraphs(comment: str) -> list[str]:
    """A `//` comment block as paragraphs of one line each; enum value names in backticks."""
    out: list[str] = []
    current: list[str] = []
    for raw in comment.split("\n"):
        line = raw[1:] if raw.startswith(" ") else raw
        if line.strip():
            current.append(line.strip())
        elif current:
            out.append(" ".join(current))
            current = []
    if current:
        out.append(" ".join(current))
    return [_ENUM_VALUE_NAME.sub(r"`\1`", p) for p in out]


def _block(paragraphs: list[str]) -> list[str]:
    """Paragraphs as Markdown lines, wrapped as the hand-written parts are."""
    return [textwrap.fill(p, 96, break_long_words=False, break_on_hyphens=False) + "\n"
            for p in paragraphs]


def _anchor(name: str) -> str:
    """GitHub's anchor of a heading that is just `name` in backticks."""
    return re.sub(r"[^a-z0-9_ -]", "", name.lower()).replace(" ", "-")


def _type_link(type_name: str, package: str) -> str:
    """A type name of a descriptor (".ringlane.v1.Policy") as a link."""
    name = type_name.lstrip(".")
    if name.startswith(package + "."):
        short = name.removeprefix(package + ".")
        return f"[`{short}`](#{_anchor(short)})"
    if name.startswith("google.protobuf."):
        short = name.removeprefix("google.protobuf.")
        return f"[`{name}`]({WELL_KNOWN}{short.lower()})"
    return f"`{name}`"


def _field_type(field: Any, maps: dict[str, Any], package: str) -> str:
    if field.type == _TYPE_MESSAGE and field.type_name in maps:
        key, value = maps[field.type_name].field[0], maps[field.type_name].field[1]
        if value.type in _SCALARS:  # in code: Markdown would read <string, ...> as HTML
            return f"`map<{_SCALARS[key.type]}, {_SCALARS[value.type]}>`"
        return f"map&lt;{_SCALARS[key.type]}, {_field_type(value, maps, package)}&gt;"
    if field.type in (_TYPE_MESSAGE, _TYPE_ENUM):
        base = _type_link(field.type_name, package)
    else:
        base = _SCALARS[field.type]
    if field.label == _LABEL_REPEATED:
        return f"repeated {base}"
    if field.proto3_optional:
        return f"optional {base}"
    return base


def _message(msg: Any, path: tuple[int, ...], c: _Comments, maps: dict[str, Any],
             package: str) -> list[str]:
    for nested in msg.nested_type:
        if not nested.options.map_entry:
            raise ValueError(f"{msg.name}.{nested.name}: nested messages are not documented "
                             "yet: teach tests/unit/test_docs.py")
    if msg.enum_type:
        raise ValueError(f"{msg.name}: nested enums are not documented yet")
    out = [f"#### `{msg.name}`", "", *_block(c.paragraphs(path))]
    if not msg.field:
        return [*out, "No fields.", ""]
    oneofs = [o.name for o in msg.oneof_decl]
    out += ["| field | type | description |", "|---|---|---|"]
    for j, field in enumerate(msg.field):
        name = f"`{field.name}`"
        if field.json_name != field.name:
            name += f" (JSON `{field.json_name}`)"
        kind = _field_type(field, maps, package)
        if field.HasField("oneof_index") and not field.proto3_optional:
            kind += f", oneof `{oneofs[field.oneof_index]}`"
        text = c.text((*path, _MESSAGE_FIELDS, j))
        out.append(f"| {name} = {field.number} | {kind} | {text} |")
    return [*out, ""]


def _enum(enum: Any, path: tuple[int, ...], c: _Comments) -> list[str]:
    out = [f"#### `{enum.name}`", "", *_block(c.paragraphs(path)),
           "| value | number | description |", "|---|---|---|"]
    for j, value in enumerate(enum.value):
        out.append(f"| `{value.name}` | {value.number} | "
                   f"{c.text((*path, _ENUM_VALUES, j))} |")
    return [*out, ""]


def _service(svc: Any, path: tuple[int, ...], c: _Comments, package: str) -> list[str]:
    full = f"{package}.{svc.name}"
    out = [f"#### {svc.name}", "", *_block([f"`{full}`: " + " ".join(c.paragraphs(path))]),
           "| method | request → response | what it does |", "|---|---|---|"]
    for j, m in enumerate(svc.method):
        req = _type_link(m.input_type, package)
        resp = ("stream " if m.server_streaming else "") + _type_link(m.output_type, package)
        if m.client_streaming:
            req = "stream " + req
        out.append(f"| `{m.name}` | {req} → {resp} | "
                   f"{c.text((*path, _SERVICE_METHODS, j))} |")
    return [*out, ""]


def _file_order(name: str) -> tuple[int, str]:
    base = Path(name).name
    return (PROTO_ORDER.index(base) if base in PROTO_ORDER else len(PROTO_ORDER), base)


def reference() -> str:
    """The reference: per .proto file, its header comment, services, then its messages and
    enums in the file's own order."""
    files = sorted(descriptor_set().file, key=lambda f: _file_order(f.name))
    out: list[str] = []
    for f in files:
        c = _Comments(f)
        package = f.package
        out += [f"### `{Path(f.name).name}`", ""]
        for block in c.detached.get((_FILE_SYNTAX,), []):
            out += _block(_paragraphs(block))
        for i, svc in enumerate(f.service):
            out += _service(svc, (_FILE_SERVICES, i), c, package)
        maps = {f".{package}.{m.name}.{n.name}": n for m in f.message_type
                for n in m.nested_type if n.options.map_entry}
        items: list[tuple[int, list[str]]] = []
        for i, msg in enumerate(f.message_type):
            path = (_FILE_MESSAGES, i)
            items.append((c.line[path], _message(msg, path, c, maps, package)))
        for i, enum in enumerate(f.enum_type):
            path = (_FILE_ENUMS, i)
            items.append((c.line[path], _enum(enum, path, c)))
        for _line, lines in sorted(items, key=lambda item: item[0]):
            out += lines
    return "\n".join(out).rstrip("\n")


# -- limits, from the constants the agent enforces ----------------------------------------


def limits() -> str:
    from agent import node_api
    from agent.api import client, server
    from agent.policy import compile as policy_compile
    from agent.policy import engine, model

    mib = 1024 * 1024
    rows = [
        ("request size", f"{server.MAX_MESSAGE // mib} MiB", "larger requests: "
         "`RESOURCE_EXHAUSTED` from gRPC itself"),
        ("response size (ringlanectl)", f"{client.MAX_RESPONSE // mib} MiB",
         "what the client accepts; a List of every policy of a busy node can pass 4 MiB"),
        ("calls at once", str(server.MAX_CONCURRENT_RPCS), "running and queued; beyond: "
         "`RESOURCE_EXHAUSTED` at once"),
        ("open streams (`Watch`, `StreamFlows`)", str(server.MAX_STREAMS),
         f"each holds a thread; {server.UNARY_WORKERS} more threads are kept for unary calls; "
         "beyond: `RESOURCE_EXHAUSTED`"),
        ("flow queue per `StreamFlows` client", f"{server.DEFAULT_FLOW_QUEUE} records "
         f"(default), {server.MAX_FLOW_QUEUE} (most)", "what overflows is dropped and counted "
         "in `FlowBatch.lost`"),
        ("records per `FlowBatch`", str(server.MAX_FLOW_BATCH),
         "more records come in further batches"),
        ("events a `Watch` may fall behind", str(engine._WATCH_QUEUE),
         "then its stream ends (OK): watch again"),
        ("programming wait of `Apply` and `Delete`", f"{node_api.PROGRAM_WAIT_SECONDS:g} s",
         "then `UNAVAILABLE`: the change is stored and the agent keeps programming it"),
        ("API policies per node", str(model.MAX_POLICIES), "`RESOURCE_EXHAUSTED`"),
        ("rules per direction of a policy", str(model.MAX_RULES_PER_DIRECTION),
         "`INVALID_ARGUMENT`"),
        ("peers per rule", str(model.MAX_PEERS_PER_RULE), "`INVALID_ARGUMENT`"),
        ("ports per rule", str(model.MAX_PORTS_PER_RULE), "`INVALID_ARGUMENT`"),
        ("terms per label selector", str(model.MAX_SELECTOR_TERMS), "`INVALID_ARGUMENT`"),
        ("port ranges per peer prefix, after merging", str(policy_compile.MAX_RANGES),
         "per (pod, direction, peer prefix) of the compiled trie: `RESOURCE_EXHAUSTED`"),
        ("entries of the node's policy trie", str(policy_compile.MAX_ENTRIES),
         "every policy of both origins, compiled for this node's pods: `RESOURCE_EXHAUSTED`"),
    ]
    out = ["| limit | value | beyond it |", "|---|---|---|"]
    out += [f"| {what} | {value} | {beyond} |" for what, value, beyond in rows]
    return "\n".join(out)


# -- docs/api.md ----------------------------------------------------------------------------


def render(doc: str) -> str:
    """`doc` with every generated region regenerated."""
    generated = {"limits": limits, "reference": reference}
    for region in REGIONS:
        start, end = _start(region), _end(region)
        if start not in doc or end not in doc:
            raise ValueError(f"docs/api.md lacks the markers {start} ... {end}")
        head, rest = doc.split(start, 1)
        _old, tail = rest.split(end, 1)
        doc = f"{head}{start}\n\n{generated[region]()}\n\n{end}{tail}"
    return doc


def test_api_doc_is_generated_from_the_protos_and_limits() -> None:
    doc = API_DOC.read_text()
    assert doc == render(doc), \
        "docs/api.md is stale: run .venv/bin/python -m tests.unit.test_docs --write"


def test_api_doc_covers_every_service_and_method() -> None:
    from agent.api import server

    doc = API_DOC.read_text()
    for f in descriptor_set().file:
        for svc in f.service:
            assert f"`{f.package}.{svc.name}`" in doc
            for m in svc.method:
                assert f"| `{m.name}` |" in doc, f"{svc.name}.{m.name}"
    assert set(server.SERVICES) == {f"{f.package}.{s.name}" for f in descriptor_set().file
                                    for s in f.service}


def test_every_status_code_the_server_returns_is_explained() -> None:
    """status_of() and the servicers decide the codes; the Errors table must name each."""
    source = (ROOT / "agent" / "api" / "server.py").read_text()
    codes = set(re.findall(r"StatusCode\.([A-Z_]+)", source))
    assert codes >= {"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"}
    errors = API_DOC.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    for code in codes:
        assert f"`{code}`" in errors, code
    for trailer in (server_trailer(source, "FIELD_TRAILER"), server_trailer(source,
                                                                          "REASON_TRAILER")):
        assert f"`{trailer}`" in errors, trailer


def server_trailer(source: str, name: str) -> str:
    m = re.search(rf'^{name} = "([^"]+)"', source, re.M)
    assert m, name
    return m[1]


def _yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_policy_examples_are_what_ringlanectl_accepts() -> None:
    """Every ```yaml block of docs/policy.md is a policy file `ringlanectl policy apply`
    takes (the same parser and validation as the agent's)."""
    from agent.api import policyfile

    blocks = _yaml_blocks(ROOT / "docs" / "policy.md")
    assert len(blocks) >= 2
    blocks += re.findall(r"<<'END'\n(.*?)^END$", (ROOT / "README.md").read_text(),
                         flags=re.S | re.M)  # the README's Policy example
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        assert policyfile.load(block, f"docs/policy.md block {i}"), block


def test_grpcurl_apply_example_is_a_valid_request() -> None:
    """The JSON docs/api.md sends with grpcurl parses as an ApplyPoliciesRequest (proto3 JSON)
    whose policies the agent accepts."""
    from google.protobuf import json_format

    from agent.api import convert
    from agent.api.v1 import policy_pb2 as ppb

    (body,) = re.findall(r"PolicyService/Apply <<'EOF'\n(.*?)^EOF$", API_DOC.read_text(),
                         flags=re.S | re.M)
    request = json_format.Parse(body, ppb.ApplyPoliciesRequest())
    (policy,) = convert.policies_to_model(request.policies)
    assert policy.ingress[0].ports[0].port == 8080


def _define(header: str, name: str) -> int:
    m = re.search(rf"^#define {name} (\d+)", (ROOT / header).read_text(), re.M)
    assert m, f"{name} in {header}"
    return int(m[1])


def test_figures_in_the_docs_are_the_codes() -> None:
    from agent.policy import compile as policy_compile
    from agent.policy import model

    policy = (ROOT / "docs" / "policy.md").read_text()
    limits = policy.split("## Limits", 1)[1]
    ct = _define("bpf/include/ringlane/abi.h", "RL_MAX_POLICY_CT")
    for figure in (f"| {policy_compile.MAX_RANGES} |", f"| {policy_compile.MAX_ENTRIES} |",
                   f"| {ct} |", f"| {model.MAX_SELECTOR_TERMS} |", f"| {model.MAX_POLICIES} |",
                   f"| {model.MAX_RULES_PER_DIRECTION} / {model.MAX_PEERS_PER_RULE} / "
                   f"{model.MAX_PORTS_PER_RULE} |"):
        assert figure in limits, figure
    prose = " ".join(policy.split())  # wrapping is free
    assert f"up to {policy_compile.MAX_RANGES} port ranges" in prose
    assert f"LRU hash of {ct} flows" in prose
    api = " ".join(API_DOC.read_text().split())
    ring = "agent/xdp/src/ringcore.h"
    assert f"last {_define(ring, 'RL_PROBE_WINDOW')} decided requests" in api
    assert (f"within {_define(ring, 'RL_PROBE_DEADLINE_INTERVALS')} intervals (and at least "
            f"{_define(ring, 'RL_PROBE_DEADLINE_MIN_MS') // 1000} s)") in api
    assert f"every `probeIntervalMs` (default {_define(ring, 'RL_PROBE_DEFAULT_INTERVAL_MS')})" \
        in api
    ring_kib = _define("bpf/include/ringlane/abi.h", "RL_FLOW_SAMPLES_BYTES") // 1024
    assert f"{ring_kib} KiB ring buffer" in api


def _relative_links(path: Path) -> Iterator[tuple[str, Path, str]]:
    """(link, the file it names, its #fragment or "") for every link that is not a URL."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, fragment = target.partition("#")
        yield target, (path.parent / file).resolve() if file else path, fragment


def anchors(path: Path) -> set[str]:
    """The fragments a Markdown file offers on GitHub: its headings' slugs (lower case,
    punctuation but - and _ dropped, spaces as -, repeats numbered) and explicit ids."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    seen: dict[str, int] = {}
    out = set(re.findall(r'<a id="([^"]+)">', text))
    for heading in re.findall(r"^#+ (.*)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: p.name)
def test_relative_links_lead_somewhere(doc: Path) -> None:
    for target, resolved, fragment in _relative_links(doc):
        assert resolved.exists(), f"{doc.name}: link to {target}: no such file"
        if fragment and resolved.suffix == ".md":
            assert fragment in anchors(resolved), f"{doc.name}: link to {target}: no such anchor"


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print(__doc__)
        return 2
    API_DOC.write_text(render(API_DOC.read_text()))
    print(f"wrote the generated parts of {API_DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
