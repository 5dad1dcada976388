"""`ringlane`: the operator's local commands (`ringlane demo`).

Kubelet will run this same executable as the chained CNI plugin (CNI_COMMAND set), which is why
nothing heavy is imported before the sub-command is known.
"""

from __future__ import annotations

import os
import sys

USAGE = """usage: ringlane demo [--nodes N] [--pods M] [--seconds S]

  demo    build a multi-node cluster in network namespaces, accelerate it, measure, clean up
"""


def main() -> None:
    if "CNI_COMMAND" in os.environ:  # executed by a container runtime as the CNI plugin
        from agent.cni.plugin import main as cni_main

        cni_main()
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    if args[0] == "demo":
        from agent import demo

        sys.exit(demo.main(args[1:]))
    print(f"ringlane: unknown command {args[0]!r}\n{USAGE}", file=sys.stderr)
    sys.exit(2)
