"""`python -m bench`: Ringlane against its kernel peers, on a sandbox built for the run.

Builds the native helpers and a two-node sandbox (agent.sandbox), measures every peer in the same
run, prints the figures and removes everything on exit, Ctrl-C or error. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from agent.errors import RinglaneError
from agent.sandbox import Sandbox
from bench import notes
from bench.build import build
from bench.host import foreign_sandboxes, machine_info
from bench.report import Results
from bench.scenarios import (
    AGENTS_DEFAULT,
    AGENTS_OFF,
    AGENTS_TCP_RING,
    FULL,
    NOISY_PCT,
    QUICK,
    ROOT,
    Bench,
    Plan,
    sections,
)

TOOLS = ("ip", "nsenter", "ethtool", "ss", "taskset", "timeout", "ping", "trafgen", "iperf3",
         "sockperf", "clang", "gcc")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="one repetition, shorter runs (about 70 s instead of about 5 min)")
    p.add_argument("--reps", type=int, help="repetitions (default: 3, or 1 with --quick)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="also draw the figures as a PNG (bench/plot.py; needs matplotlib)")
    return p


def _say_since(t0: float) -> Callable[[str], None]:
    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)
    return say


def measure(bench: Bench, plan: Plan) -> None:
    """Every repetition visits the three agent states once, in the same order, so that a drift
    of the machine (or a neighbour's load) hits every peer alike. Each measurement step is
    watched for CPU used outside the sandbox."""
    ring_steps: list[tuple[str, Callable[[], None]]] = [
        ("forwarding 1 CPU", lambda: bench.forwarding(1, "0")),
        ("forwarding 2 CPUs", lambda: bench.forwarding(2, "0,1")),
        ("rx path, ring core drop", lambda: bench.rx_ring(forward=False)),
        ("rx path, ring core forward", lambda: bench.rx_ring(forward=True)),
        ("TCP cross node", lambda: bench.tcp(same_node=False)),
        ("latency UDP", lambda: bench.latency(tcp=False)),
        ("latency TCP", lambda: bench.latency(tcp=True)),
        ("TCP same node", lambda: bench.tcp(same_node=True)),
    ]
    kernel_steps: list[tuple[str, Callable[[], None]]] = [
        ("forwarding 1 CPU", lambda: bench.forwarding(1, "0")),
        ("forwarding 2 CPUs", lambda: bench.forwarding(2, "0,1")),
        ("rx path, XDP_DROP native", lambda: bench.rx_xdp_drop(mode="native")),
        ("rx path, XDP_DROP generic", lambda: bench.rx_xdp_drop(mode="skb")),
        ("TCP cross node", lambda: bench.tcp(same_node=False)),
        ("latency UDP", lambda: bench.latency(tcp=False)),
        ("latency TCP", lambda: bench.latency(tcp=True)),
        ("TCP same node", lambda: bench.tcp(same_node=True)),
    ]
    plan_by_state = [
        (AGENTS_DEFAULT, ring_steps),
        (AGENTS_TCP_RING, [("TCP cross node", lambda: bench.tcp(same_node=False))]),
        (AGENTS_OFF, kernel_steps),
    ]
    for rep in range(plan.reps):
        bench.say(f"repetition {rep + 1} of {plan.reps}")
        for state, steps in plan_by_state:
            bench.agents(state)
            for name, step in steps:
                with bench.watch(f"rep {rep + 1}, agents {state}: {name}"):
                    step()
    bench.agents(AGENTS_DEFAULT)
    with bench.watch("idle CPU"):
        bench.idle_cpu()
    suspect = [s for s in bench.results.load if s["others_pct_of_core"] > NOISY_PCT]
    if suspect:
        bench.results.warnings.append(
            f"{len(suspect)} of {len(bench.results.load)} steps ran while processes outside the "
            f"sandbox used more than {NOISY_PCT:.0f}% of a core (see 'load' in the JSON): "
            + "; ".join(f"{s['step']}: {s['others_pct_of_core']:.0f}% "
                        f"{' '.join(n for n, _ in s['top_others'])}" for s in suspect[:3]))


def _leftovers(prefix: str) -> list[str]:
    """Whatever of the sandbox `prefix` still exists: pins, run directory, namespaces."""
    left = [str(p) for p in Path("/sys/fs/bpf").glob(f"{prefix}-*")]
    left += [str(p) for p in Path("/run").glob(f"ringlane-{prefix}")]
    left += [str(p) for p in Path("/run/netns").glob(f"{prefix}-*")]
    return left


def run(plan: Plan, json_path: Path | None, plot_path: Path | None = None) -> int:
    """Build, measure, remove, report. Returns the exit status (1 if the run was cut short by
    an error; what was measured until then is still printed)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if os.geteuid() != 0:
        raise RinglaneError("run as root: namespaces, XDP and AF_XDP")
    if missing:
        raise RinglaneError(f"missing {', '.join(missing)} (scripts/setup.sh installs them)")
    t0 = time.monotonic()
    say = _say_since(t0)
    results = Results(sections())
    results.machine = machine_info(ROOT)
    results.config = asdict(plan)
    sb = Sandbox(nodes=2, pods=2)
    aborted = ""
    with tempfile.TemporaryDirectory(prefix="ringlane-bench-") as tmp:
        native = build(Path(tmp))
        with sb:
            others = foreign_sandboxes(sb.prefix)
            if others:
                results.warnings.append(
                    f"other Ringlane sandboxes were running on this machine at the start "
                    f"({', '.join(others)}): they share the CPUs; figures may be low or noisy")
            bench = Bench(sb, native, plan, Path(tmp), results, say)
            try:
                measure(bench, plan)
            except RinglaneError as exc:
                # keep what was measured: print it below, after the sandbox is gone
                aborted = str(exc)
                results.warnings.append(f"run aborted: {exc}")
            others = foreign_sandboxes(sb.prefix)
            if others:
                results.warnings.append(f"other Ringlane sandboxes at the end: {', '.join(others)}")
    left = _leftovers(sb.prefix)
    if left:
        results.warnings.append(f"left behind after close: {', '.join(left)}")
    results.config["elapsed_s"] = round(time.monotonic() - t0, 1)
    notes.fill(results)
    print(results.render())
    if json_path is not None:
        results.write_json(json_path)
        print(f"\nfigures written to {json_path}")
    if plot_path is not None:
        from bench.plot import plot  # matplotlib only when asked for (checked in main())

        try:
            plot(results.to_json(), plot_path)
            print(f"plot written to {plot_path}")
        except (ValueError, OSError) as exc:
            print(f"python -m bench: no plot: {exc}", file=sys.stderr)
    if aborted:
        print(f"python -m bench: {aborted}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    """The command line; SIGINT and SIGTERM end the run and remove the sandbox."""
    args = _parser().parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.reps is not None:
        if args.reps < 1:
            print("python -m bench: --reps must be at least 1", file=sys.stderr)
            return 2
        plan = replace(plan, reps=args.reps)
    if args.plot is not None:
        try:  # before the run, not after five minutes of it
            importlib.import_module("bench.plot")
        except ImportError as exc:
            print(f"python -m bench: --plot needs matplotlib ({exc}); .venv/bin/pip install "
                  "matplotlib", file=sys.stderr)
            return 2

    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # explicitly: a shell without job control starts background jobs with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return run(plan, args.json, args.plot)
    except KeyboardInterrupt:
        print("interrupted; sandbox removed", file=sys.stderr)
        return 130
    except RinglaneError as exc:
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 1
