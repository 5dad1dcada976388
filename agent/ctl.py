"""`ringlanectl`: read a node agent's state over its control socket.

    ringlanectl [--socket PATH] [-o table|json] status|stats

Exit codes: 0 success, 1 the agent answered with an error or is unreachable, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agent.control import request
from agent.errors import RinglaneError

DEFAULT_SOCKET = Path("/run/ringlane/agent.sock")


def _table(op: str, result: dict[str, Any]) -> str:
    if op == "status":
        eps = result["endpoints"]
        lines = [f"node {result['node']}: {'ready' if result['ready'] else 'NOT READY'}, "
                 f"{len(eps)} endpoints"]
        lines += [f"  {ip:<16} slot {slot}" for ip, slot in sorted(eps.items())]
        return "\n".join(lines)
    core = result["core"] or {}
    lines = []
    if core:
        w = core["worker"]
        lines.append("ring core: " + " ".join(f"{k}={v}" for k, v in w["values"].items()))
        lines.append("  drops: " + (" ".join(f"{k}={v}" for k, v in w["drops"].items())
                                    or "none"))
        lines.append(f"  frames: total={core['frames_total']} free={core['frames_free']} "
                     f"sockets={core['frames_sockets']} umem="
                     f"{'hugepages' if core['hugepages'] else '4k-pages'} "
                     f"underlay={'zero-copy' if core['underlay']['zero_copy'] else 'copy'}")
    lines.append("xdp: " + " ".join(f"{k}={v}" for k, v in result["xdp"].items() if v))
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ringlanectl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", type=Path, default=DEFAULT_SOCKET,
                   help=f"the agent's control socket (default {DEFAULT_SOCKET})")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("command", choices=("status", "stats"))
    args = p.parse_args(argv)
    try:
        result = request(args.socket, args.command)
    except RinglaneError as exc:
        print(f"ringlanectl: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.output == "json" else _table(args.command, result))
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
