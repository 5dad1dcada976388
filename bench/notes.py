"""What is printed under each section's table: where the packets went and who used the CPUs,
averaged over the repetitions from the details the measurements recorded."""

from __future__ import annotations

import statistics
from typing import Any

from bench.report import Results, Section
from bench.scenarios import CORE, DROP_GENERIC, DROP_NATIVE, RING_AUTO, RING_RING, TICKS


def _mean(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Key by key mean of some dicts (a missing key counts as 0), in first-seen key order."""
    keys: list[str] = []
    for d in dicts:
        keys += [k for k in d if k not in keys]
    return {k: statistics.fmean(d.get(k, 0.0) for d in dicts) for k in keys}


def _k(pps: float) -> str:
    """Packets per second as kpps, with a decimal below 10 kpps so small losses show."""
    return f"{pps / 1e3:.1f}" if pps < 10e3 else f"{pps / 1e3:.0f}"


def _kpps(d: dict[str, float], *, sep: str = ", ") -> str:
    """The entries of at least one packet per second, or "none"."""
    return sep.join(f"{k} {_k(v)}" for k, v in d.items() if v >= 1.0) or "none"


def _cpu(details: list[dict[str, Any]]) -> str:
    """The mean CPU split and time on CPU per process of some runs, as one line."""
    split = {}
    for cpu in details[0]["cpu_split_pct"]:
        split[cpu] = _mean([d["cpu_split_pct"][cpu] for d in details])
    parts = [f"{cpu} busy {100 - s['idle']:.0f}% (usr {s['user']:.0f}, sys {s['system']:.0f}, "
             f"softirq {s['softirq']:.0f})" for cpu, s in split.items()]
    if "cpu_pct_of_core" in details[0]:
        on = _mean([d["cpu_pct_of_core"] for d in details])
        parts.append("on CPU: " + ", ".join(f"{k} {v:.0f}%" for k, v in on.items()))
    return "; ".join(parts)


def _path_notes(section: Section, peer: str, row: str, label: str) -> list[str]:
    """A generator run's accounting, averaged over the repetitions: where the packets went,
    where they were lost, who used the CPUs."""
    details = section.details.get(peer, {}).get(row, [])
    if not details:
        return []
    lines = [f"{peer}, {label} (kpps, mean of the windows):"]
    if "generated_pps" in details[0]:
        gen = statistics.fmean(d["generated_pps"] for d in details)
        lines.append(f"  generated {_k(gen)} (xdpgen, whole run; frames the veth could not take "
                     "are dropped unseen)")
    if "path_pps" in details[0]:
        lines.append("  path: " + _kpps(_mean([d["path_pps"] for d in details]), sep=" > "))
        lines.append("  lost: " + _kpps(_mean([d["losses_pps"] for d in details])))
        drops = {n: _mean([d["ring_drops_pps"].get(n, {}) for d in details])
                 for n in details[0]["ring_drops_pps"]}
        if drops:
            lines.append("  ring core drops: " + "; ".join(
                f"{n} {_kpps(v)}" for n, v in drops.items()))
    lines.append("  CPU: " + _cpu(details))
    return lines


def _tcp_notes(section: Section) -> list[str]:
    """Retransmits per peer and, for the ring core, how the flow was carried."""
    lines = []
    for peer, rows in section.details.items():
        for details in rows.values():
            retrans = [d["retransmits"] for d in details]
            text = f"{peer}: retransmits {retrans}"
            if peer == RING_AUTO:
                text += (f"; n1 from_pod: {details[0].get('n1 xdp.pod_redirect', 0)} packets to "
                         f"the ring core, {details[0].get('n1 xdp.pod_flow_to_kernel', 0)} flow(s)"
                         f" moved to the kernel, {details[0].get('n1 xdp.pod_pass_tcp_kernel', 0)}"
                         " passed (first repetition)")
            if peer == RING_RING:
                tso = details[0].get("n1 core.worker.values.tso_packets", 0)
                seg = details[0].get("n1 core.worker.values.tso_segments", 0)
                text += f"; n1 ring core segmented {tso} super-frames into {seg} segments"
            drops = {n: {k: v for k, v in d.items() if v}
                     for n, d in details[0].get("ring_drops", {}).items()}
            if any(drops.values()):
                text += f"; ring core drops {drops}"
            lines.append(text)
    return lines


def fill(results: Results) -> None:
    """Append the notes to every section of `results`."""
    fwd = results.sections["forward"]
    for row_key, row in fwd.rows.items():
        for peer in fwd.peers:
            fwd.notes += _path_notes(fwd, peer, row_key, row.label)
    rx = results.sections["rx"]
    for row_key, row in rx.rows.items():
        rx.notes += _path_notes(rx, CORE, row_key, row.label)
    for peer in (DROP_NATIVE, DROP_GENERIC):
        rx.notes += _path_notes(rx, peer, "drop", "bench_sink on n1's host veth")
    tcp = results.sections["tcp"]
    tcp.notes += _tcp_notes(tcp)
    local = results.sections["local"]
    local.notes += _tcp_notes(local)
    lat = results.sections["latency"]
    for peer, rows in lat.details.items():
        for row_key, details in rows.items():
            avg = statistics.fmean(d["avg_us"] for d in details)
            lat.notes.append(f"{peer}, {row_key.split('-')[0]}: mean {avg:.1f} us over "
                             f"{sum(d['observations'] for d in details)} round trips")
    idle = results.sections["idle"]
    for row_key, details in idle.details.get(TICKS, {}).items():
        sleeps = statistics.fmean(d["worker_sleeps_per_s"] for d in details)
        loops = statistics.fmean(d["worker_loops_per_s"] for d in details)
        idle.notes.append(f"{row_key} ring core worker: {sleeps:.1f} sleeps/s, {loops:.0f} "
                          "loops/s")
