"""`ringlanectl`: the node agent's gRPC API from a shell.

    ringlanectl [connection] [-o table|json] COMMAND
      status                       the agent's readiness and what it reports
      endpoints [IP|NS/POD]        the local pods it accelerates
      policy apply -f FILE...      add or replace policies from YAML (all or none; - is stdin)
      policy list [-n NAMESPACE]   every policy (-o yaml: documents policy apply takes back)
      policy delete NS/NAME...     remove API policies (all or none)
      stats                        counters: ring core, XDP programs, endpoints
      links                        overlay link health to each peer node
      flows [--follow]             sampled policy decisions, and how many this client lost

Connection: the unix socket --socket (default $RINGLANE_API_SOCKET or /run/ringlane/api.sock,
root only), or --address HOST:PORT with --tls-cert, --tls-key and --tls-ca (mutual TLS).

Output: tables on a terminal; -o json prints JSON with stable keys (flows: one JSON object per
line; a line with only "lost" reports records dropped because this client read too slowly).

Exit codes: 0 success; 1 the agent refused the request (its status code and message on
stderr); 2 bad usage or a bad input file; 3 the agent cannot be reached, or gave no answer in
time (a change may or may not have been made).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from agent.api import policyfile
from agent.api.client import ApiError, Client, TlsFiles
from agent.api.v1 import endpoint_pb2 as epb
from agent.api.v1 import telemetry_pb2 as tpb
from agent.errors import ConfigError

DEFAULT_SOCKET = Path("/run/ringlane/api.sock")
SOCKET_ENV = "RINGLANE_API_SOCKET"
OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3


class _Usage(Exception):
    """Bad input from the user (exit 2)."""


def _out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


def _err(text: str) -> None:
    print(f"ringlanectl: {text}", file=sys.stderr, flush=True)


# -- JSON: the proto fields' JSON names, numbers as numbers, enums by their short name ----------


def _enum_name(fd: Any, number: int) -> str | int:
    value = fd.enum_type.values_by_number.get(number)
    if value is None:
        return number
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", fd.enum_type.name).upper() + "_"
    return str(value.name).removeprefix(prefix).lower()


def _scalar(fd: Any, value: Any) -> Any:
    return _enum_name(fd, value) if fd.enum_type is not None else value


def _whole(value: Any) -> Any:
    """JSON numbers of a google.protobuf.Struct are doubles: 3.0 reads better as 3."""
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def to_json(msg: Message) -> Any:
    """Every field of `msg` (unset ones with their default; an unset optional as null)."""
    if msg.DESCRIPTOR.full_name == "google.protobuf.Struct":
        return _whole(json_format.MessageToDict(msg))
    out: dict[str, Any] = {}
    for fd in msg.DESCRIPTOR.fields:
        value = getattr(msg, fd.name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            vfd = fd.message_type.fields_by_name["value"]
            out[fd.json_name] = {k: (to_json(v) if vfd.message_type is not None
                                     else _scalar(vfd, v)) for k, v in sorted(value.items())}
        elif fd.is_repeated:
            out[fd.json_name] = [to_json(v) if fd.message_type is not None else _scalar(fd, v)
                                 for v in value]
        elif fd.message_type is not None:
            out[fd.json_name] = to_json(value) if msg.HasField(fd.name) else None
        elif fd.has_presence and not msg.HasField(fd.name):
            out[fd.json_name] = None
        else:
            out[fd.json_name] = _scalar(fd, value)
    return out


def _print_json(value: Any) -> None:
    _out(json.dumps(value, indent=2, sort_keys=False))


# -- tables -------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(header)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def _selector_text(doc: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in doc.get("matchLabels", {}).items()]
    parts += [f"{e['key']} {e['operator']} ({','.join(e.get('values', []))})"
              for e in doc.get("matchExpressions", [])]
    return ",".join(parts) or "(all pods)"


def _flat(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flat(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), value)]


def _us(value: float) -> str:
    return f"{value / 1000:.2f}ms" if value >= 1000 else f"{value:.0f}us"


# -- commands -----------------------------------------------------------------------------------


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    st = to_json(client.status())
    if args.output == "json":
        _print_json(st)
        return OK
    rows = [("node", st["node"]), ("ready", "yes" if st["ready"] else "NO"),
            ("version", st["version"])]
    rows += [(k, json.dumps(v) if isinstance(v, list) else v)
             for k, v in _flat(st["details"] or {})]
    _out(_table(("FIELD", "VALUE"), rows))
    return OK


def cmd_endpoints(client: Client, args: argparse.Namespace) -> int:
    if args.endpoint:
        ns, sep, name = args.endpoint.partition("/")
        request = (epb.GetEndpointRequest(pod=epb.PodRef(namespace=ns, name=name)) if sep
                   else epb.GetEndpointRequest(ip=args.endpoint))
        eps = [client.endpoint(request)]
    else:
        eps = client.endpoints()
    if args.output == "json":
        _print_json([to_json(e) for e in eps])
        return OK
    _out(_table(("NAMESPACE", "NAME", "IP", "HOST-IFACE", "SLOT", "INGRESS-POLICIES",
                 "EGRESS-POLICIES"),
                [(e.namespace or "-", e.name, e.ip, e.host_ifname, e.slot,
                  ",".join(e.ingress_policies) or "-", ",".join(e.egress_policies) or "-")
                 for e in eps]))
    return OK


def _read(name: str) -> str:
    try:
        return sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise _Usage(f"{name}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise _Usage(f"{name}: not a text file ({exc.reason})") from None


def cmd_policy_apply(client: Client, args: argparse.Namespace) -> int:
    loaded: list[tuple[str, Any]] = []
    seen: dict[tuple[str, str], str] = {}
    for name in args.file:
        for where, msg, model in policyfile.load(_read(name), "<stdin>" if name == "-" else name):
            key = (model.namespace, model.name)
            if key in seen:
                raise _Usage(f"{where}: {key[0]}/{key[1]} is also in {seen[key]}")
            seen[key] = where
            loaded.append((where, msg))
    if not loaded:
        raise _Usage("no policy in " + ", ".join(args.file))
    try:
        revision = client.apply([msg for _, msg in loaded])
    except ApiError as exc:
        m = re.match(r"policies\[(\d+)\]", exc.field)
        if m and int(m[1]) < len(loaded):
            exc.details += f" (policies[{m[1]}] is {loaded[int(m[1])][0]})"
        raise
    names = [f"{msg.namespace}/{msg.name}" for _, msg in loaded]
    if args.output == "json":
        _print_json({"revision": revision, "applied": names})
    else:
        _out(f"applied {len(names)} {'policy' if len(names) == 1 else 'policies'}: "
             f"{', '.join(names)} (revision {revision})")
    return OK


def cmd_policy_list(client: Client, args: argparse.Namespace) -> int:
    docs = [policyfile.proto_to_doc(p) for p in client.policies(args.namespace)]
    if args.output == "json":
        _print_json(docs)
    elif args.output == "yaml":
        _out(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=None).rstrip())
    else:
        _out(_table(("NAMESPACE", "NAME", "ORIGIN", "TYPES", "INGRESS", "EGRESS", "PODS"),
                    [(d["namespace"], d["name"], d["origin"], ",".join(d["policyTypes"]),
                      len(d["ingress"]), len(d["egress"]), _selector_text(d["podSelector"]))
                     for d in docs]))
    return OK


def _ref(text: str) -> tuple[str, str]:
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return ns, name


def cmd_policy_delete(client: Client, args: argparse.Namespace) -> int:
    revision = client.delete(args.names)
    names = [f"{ns}/{name}" for ns, name in args.names]
    if args.output == "json":
        _print_json({"revision": revision, "deleted": names})
    else:
        _out(f"deleted {', '.join(names)} (revision {revision})")
    return OK


def cmd_stats(client: Client, args: argparse.Namespace) -> int:
    st = to_json(client.stats())
    if args.output == "json":
        _print_json(st)
        return OK
    lines = [f"node {st['node']}"]
    for section in ("core", "xdp"):
        lines.append(f"{section}:")
        lines += [f"  {k:<32} {v}" for k, v in st[section].items()] or ["  (none)"]
    lines.append("endpoints:")
    for ep in st["endpoints"]:
        nonzero = " ".join(f"{k}={v}" for k, v in ep["counters"].items() if v)
        lines.append(f"  {ep['ip']:<16} {nonzero or '(all zero)'}")
    _out("\n".join(lines))
    return OK


def cmd_links(client: Client, args: argparse.Namespace) -> int:
    links = client.links()
    if args.output == "json":
        _print_json([to_json(h) for h in links])
        return OK
    _out(_table(("PEER", "IP", "SENT", "RECEIVED", "LOSS", "RTT-AVG", "RTT-MIN", "RTT-MAX",
                 "JITTER", "LAST-REPLY"),
                [(h.peer_node, h.peer_ip, h.sent, h.received, f"{h.loss_ratio:.1%}",
                  _us(h.rtt_avg_us), _us(h.rtt_min_us), _us(h.rtt_max_us), _us(h.jitter_us),
                  f"{h.last_reply_age_s:.1f}s ago" if h.HasField("last_reply_age_s")
                  else "never") for h in links]))
    return OK


_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}


def _flow_line(rec: tpb.FlowRecord) -> str:
    r = to_json(rec)
    proto = _PROTO.get(rec.protocol, str(rec.protocol))
    src = f"{rec.src}:{rec.sport}" if rec.sport else rec.src
    dst = f"{rec.dst}:{rec.dport}" if rec.dport else rec.dst
    return (f"{rec.ts_ns:>20} {r['verdict']:<6} {r['direction']:<7} {r['point']:<9} "
            f"{proto:<5} {src:>21} -> {dst:<21} {rec.length}")


def cmd_flows(client: Client, args: argparse.Namespace) -> int:
    limit = None if args.follow else args.count
    stream = client.flows(args.queue_size)
    timer = None
    if not args.follow and args.seconds > 0:
        timer = threading.Timer(args.seconds, stream.cancel)
        timer.daemon = True
        timer.start()
    shown, lost = 0, 0
    as_json = args.output == "json"
    try:
        for batch in stream:
            if batch.lost != lost:
                lost = batch.lost
                _out(json.dumps({"lost": lost}) if as_json else
                     f"# {lost} records lost so far (this client reads too slowly or "
                     "--queue-size is too small)")
            for rec in batch.records:
                _out(json.dumps(to_json(rec)) if as_json else _flow_line(rec))
                shown += 1
                if limit is not None and shown >= limit:
                    stream.cancel()
                    break
    except KeyboardInterrupt:
        stream.cancel()
    finally:
        if timer is not None:
            timer.cancel()
    if not as_json:
        _out(f"# {shown} records, {lost} lost")
    return OK


# -- arguments ----------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """Options accepted before and after the command (`ringlanectl -o json stats` and
    `ringlanectl stats -o json`); only the top level sets defaults."""
    def d(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    p.add_argument("--socket", type=Path, default=d(None),
                   help=f"the agent's API socket (default ${SOCKET_ENV} or {DEFAULT_SOCKET})")
    p.add_argument("--address", default=d(""), metavar="HOST:PORT",
                   help="the agent's TCP API instead of the socket (needs the --tls-* files)")
    p.add_argument("--tls-cert", type=Path, default=d(None), help="client certificate (PEM)")
    p.add_argument("--tls-key", type=Path, default=d(None), help="client private key (PEM)")
    p.add_argument("--tls-ca", type=Path, default=d(None),
                   help="CA that signed the agent's certificate (PEM)")
    p.add_argument("--tls-server-name", default=d(""),
                   help="name to check the agent's certificate against (default: HOST)")
    p.add_argument("--timeout", type=float, default=d(30.0), help="seconds per request")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default=d("table"),
                   help="table (default), json; yaml for policy list")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringlanectl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[Client, argparse.Namespace], int], help: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        _common(sp, top=False)
        sp.set_defaults(func=fn)
        return sp

    add("status", cmd_status, "the agent's readiness and what it reports")
    sp = add("endpoints", cmd_endpoints, "the local pods the agent accelerates")
    sp.add_argument("endpoint", nargs="?", metavar="IP|NAMESPACE/POD", help="only this one")
    pol = sub.add_parser("policy", help="apply, list or delete policies")
    psub = pol.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    sp = add("apply", cmd_policy_apply, "add or replace policies from YAML files, all or none",
             psub)
    sp.add_argument("-f", "--file", action="append", required=True, metavar="FILE",
                    help="YAML with one policy per document ('-': stdin); repeatable")
    sp = add("list", cmd_policy_list, "every policy on the node", psub)
    sp.add_argument("-n", "--namespace", default="", help="only this namespace")
    sp = add("delete", cmd_policy_delete, "remove API policies, all or none", psub)
    sp.add_argument("names", nargs="+", type=_ref, metavar="NAMESPACE/NAME")
    add("stats", cmd_stats, "the node's counters")
    add("links", cmd_links, "overlay link health to each peer node")
    sp = add("flows", cmd_flows, "sampled policy decisions")
    sp.add_argument("--follow", "-f", action="store_true", help="stream until Ctrl-C")
    sp.add_argument("--count", type=int, default=100,
                    help="without --follow: stop after this many records (default 100)")
    sp.add_argument("--seconds", type=float, default=5.0,
                    help="without --follow: stop after this long (default 5)")
    sp.add_argument("--queue-size", type=int, default=0,
                    help="records the agent queues for this client (default 1024)")
    return p


def _connect(args: argparse.Namespace) -> tuple[Client | None, int]:
    """A client for the chosen target, or (None, exit code) with the reason printed."""
    tls = [args.tls_cert, args.tls_key, args.tls_ca]
    if args.address:
        if not all(tls):
            _err("--address needs --tls-cert, --tls-key and --tls-ca (the TCP API is mutual "
                 "TLS only)")
            return None, USAGE
        files = TlsFiles(args.tls_cert, args.tls_key, args.tls_ca, args.tls_server_name)
        return Client(args.address, files, timeout=args.timeout), OK
    if any(tls):
        _err("--tls-* options need --address (the unix socket needs no TLS)")
        return None, USAGE
    sock = args.socket or Path(os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET)
    args.socket = sock
    if not sock.exists():
        _err(f"no agent socket at {sock}: the agent may not be running on this node (or use "
             f"--socket / ${SOCKET_ENV})")
        return None, UNREACHABLE
    if not os.access(sock, os.R_OK | os.W_OK):
        _err(f"permission denied on {sock}: the API socket is root's (run as root)")
        return None, UNREACHABLE
    return Client.unix(sock, timeout=args.timeout), OK


def run(argv: Sequence[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # usage error (2) or --help (0)
        return exc.code if isinstance(exc.code, int) else USAGE
    if args.output == "yaml" and args.func is not cmd_policy_list:
        _err("-o yaml is only for policy list")
        return USAGE
    try:
        client, code = _connect(args)
    except ConfigError as exc:
        _err(str(exc))
        return USAGE
    if client is None:
        return code
    try:
        with client:
            result: int = args.func(client, args)
            return result
    except (_Usage, policyfile.PolicyFileError, ConfigError) as exc:
        _err(str(exc))
        return USAGE
    except ApiError as exc:
        if exc.unreachable:
            where = args.address or f"unix:{args.socket}"
            _err(f"cannot reach the agent at {where}: {exc.details} (is the agent running?)")
            return UNREACHABLE
        if exc.code == "DEADLINE_EXCEEDED" and not exc.reason:
            _err(f"no answer from the agent in time: {exc.details}; a change may or may not "
                 "have been made (check with `ringlanectl policy list`)")
            return UNREACHABLE
        _err(f"the agent refused: {exc.code}: {exc.details}")
        return REFUSED


def main() -> None:
    sys.exit(run(sys.argv[1:]))

