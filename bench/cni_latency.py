"""CNI ADD latency: `ringlane` (agent double answering at once) against Debian's `ptp`.

    .venv/bin/python -m bench.cni_latency [-n 200] [--json FILE]      (root)

Every plugin is executed the way a runtime executes it (tests/cni/chain.py: fork/exec with
the CNI_* environment, the request configuration on stdin, stdout read back), from a
namespace playing the node's root namespace, into a pod namespace; both are removed at the
end. Variants, interleaved round-robin so that load from anything else on the machine falls on
all of them alike:

  ptp                      ADD of the primary plugin (host-local IPAM), DEL after each, untimed
  ringlane console script  .venv/bin/ringlane: the interpreter with the virtualenv's site
  ringlane -IS launcher    `python -IS` running agent.cni.plugin (agent/cni/launcher.py)
  python -IS (empty)       the interpreter's own start-up, the floor for a Python plugin

ringlane's ADD gets a real ptp result as prevResult and the double answers "programmed" at
once, so its figures are the plugin's own cost: start-up, validation, one socket round trip.
Targets: p50 < 25 ms, p99 < 60 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.cni import launcher
from tests.cni.agent_double import AgentDouble
from tests.cni.chain import Attachment, Netns, Runtime
from tests.nsutil import entered

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = ROOT / ".venv" / "bin" / "ringlane"
DEBIAN_CNI_DIR = "/usr/lib/cni"
TARGET_P50_MS, TARGET_P99_MS = 25.0, 60.0
WARMUP = 5


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50": statistics.median(ms), "p90": percentile(ms, 90),
            "p99": percentile(ms, 99), "max": max(ms)}


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = [f"{'CNI ADD':<26}{'n':>5}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"]
    for name, s in rows.items():
        lines.append(f"{name:<26}{s['n']:>5.0f}{s['p50']:>9.1f}{s['p90']:>9.1f}"
                     f"{s['p99']:>9.1f}{s['max']:>9.1f}")
    return "\n".join(lines)


def run(n: int) -> dict[str, dict[str, float]]:
    work = Path(tempfile.mkdtemp(prefix="rlcni-bench-", dir="/tmp"))
    made: list[Netns] = []
    try:
        for prefix in ("rlcni-bh-", "rlcni-bp-", "rlcni-bq-"):  # node, ringlane's pod, ptp's
            made.append(Netns.create(prefix))
        host, pod, ptp_pod = made
        script_dir, iso_dir = work / "bin-script", work / "bin-isolated"
        script_dir.mkdir()
        iso_dir.mkdir()
        (script_dir / "ringlane").symlink_to(CONSOLE_SCRIPT)
        launcher.write_launcher(str(iso_dir / "ringlane"), sys.executable, launcher.PACKAGE_ROOT)
        ptp = {"type": "ptp", "ipMasq": False,
               "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.199.250.0/24"}]],
                        "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(work / "ipam")}}
        with AgentDouble(work / "agent.sock") as agent:
            ringlane = {"type": "ringlane", "agentSocket": str(agent.path),
                        "stateDir": str(work / "state"), "failClosed": True}

            def conflist(plugin: dict[str, Any]) -> dict[str, Any]:
                return {"cniVersion": "1.0.0", "name": "rl-bench", "plugins": [plugin]}

            rt_ptp = Runtime(conflist(ptp), [DEBIAN_CNI_DIR], host_netns=host.path)
            rt_script = Runtime(conflist(ringlane), [str(script_dir), DEBIAN_CNI_DIR],
                                host_netns=host.path)
            rt_iso = Runtime(conflist(ringlane), [str(iso_dir), DEBIAN_CNI_DIR],
                             host_netns=host.path)
            att = Attachment("bench-pod", pod.path, "eth0",
                             {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "bench",
                              "K8S_POD_NAME": "pod"})
            prev = rt_ptp.add(att)  # the pod ringlane's ADDs are about, kept until the end

            def one_ptp() -> float:
                a = Attachment("bench-ptp", ptp_pod.path, "eth0")
                r = rt_ptp.exec_plugin(ptp, "ADD", a)
                if not r.ok:
                    raise RuntimeError(f"ptp ADD failed: {r.stdout} {r.stderr}")
                d = rt_ptp.exec_plugin(ptp, "DEL", a, r.output)
                if not d.ok:
                    raise RuntimeError(f"ptp DEL failed: {d.stdout} {d.stderr}")
                return r.seconds

            def one_ringlane(rt: Runtime) -> Callable[[], float]:
                def go() -> float:
                    r = rt.exec_plugin(ringlane, "ADD", att, prev)
                    if not r.ok or r.output != prev:
                        raise RuntimeError(f"ringlane ADD failed: {r.stdout} {r.stderr}")
                    return r.seconds
                return go

            def one_empty() -> float:
                with entered(host.path):
                    start = time.perf_counter()
                    subprocess.run([sys.executable, "-IS", "-c", "pass"], check=True)
                    return time.perf_counter() - start

            variants: dict[str, Callable[[], float]] = {
                "ptp": one_ptp,
                "ringlane console script": one_ringlane(rt_script),
                "ringlane -IS launcher": one_ringlane(rt_iso),
                "python -IS (empty)": one_empty,
            }
            for fn in variants.values():
                for _ in range(WARMUP):
                    fn()
            for rt in (rt_ptp, rt_script, rt_iso):
                rt.runs.clear()  # keep memory flat; timings are collected below
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(n):
                for name, fn in variants.items():
                    samples[name].append(fn())
            adds = agent.ops().count("cni_add")
            if adds != 2 * (n + WARMUP):
                raise RuntimeError(f"the agent double saw {adds} cni_add, expected "
                                   f"{2 * (n + WARMUP)}")
            rt_ptp.delete(att, prev)
        return {name: summary(values) for name, values in samples.items()}
    finally:
        for ns in made:
            ns.delete()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cni_latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=200, help="timed ADDs per variant (default 200)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.cni_latency: needs root (network namespaces, the ptp plugin)",
              file=sys.stderr)
        return 2
    if not CONSOLE_SCRIPT.exists():
        print(f"bench.cni_latency: {CONSOLE_SCRIPT} missing: run scripts/setup.sh",
              file=sys.stderr)
        return 2
    rows = run(args.n)
    print(table(rows))
    load = os.getloadavg()[0]
    print(f"(load average {load:.2f} on {os.cpu_count()} CPUs while measuring)")
    for name in ("ringlane console script", "ringlane -IS launcher"):
        s = rows[name]
        ok = s["p50"] < TARGET_P50_MS and s["p99"] < TARGET_P99_MS
        print(f"{name}: target p50 < {TARGET_P50_MS:.0f} ms and p99 < {TARGET_P99_MS:.0f} ms: "
              f"{'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "loadavg": load}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
