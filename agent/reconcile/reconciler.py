"""Level-triggered reconciliation: desired state in, the node's data path converged to it.

Desired state is recomputed from scratch on every pass (remote nodes, endpoints, the compiled
policy) and compared
with what the data path has programmed; a missed event therefore costs at most one pass. A
failure to program one object does not stop the others; it is retried on the next pass,
after a bounded, growing delay.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address

import structlog

from agent.datapath.node import Endpoint, NodeDatapath, RemoteNode
from agent.errors import RinglaneError
from agent.policy.compile import PolicyEntry

log = structlog.get_logger(__name__)

RESYNC_SECONDS = 30.0  # a pass even without any trigger: the node may drift (veths vanish)
RETRY_MIN, RETRY_MAX = 0.2, 10.0


@dataclass(frozen=True)
class Desired:
    """`policy` None: leave the policy alone. `policy_error`: why `policy` is not what the
    policies say (a fail-closed stand-in), reported as a failure once it is in force."""

    remotes: dict[str, RemoteNode]
    endpoints: dict[IPv4Address, Endpoint]
    policy: tuple[PolicyEntry, ...] | None = None
    policy_error: str | None = None
    policy_ids: tuple[str, ...] = ()  # the policies `policy` was compiled from


@dataclass
class PassResult:
    changed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class Reconciler:
    """Drives one NodeDatapath from one desired-state function, on its own thread."""

    def __init__(self, dp: NodeDatapath, desired: Callable[[], Desired]) -> None:
        self.dp = dp
        self._desired = desired
        self._wake = threading.Event()
        self._passed = threading.Condition()
        self._generation = 0
        self.passes = 0
        self.last: PassResult = PassResult()
        self.observe: Callable[[float], None] = lambda _seconds: None  # pass durations
        self.policy_ids: tuple[str, ...] = ()  # the policies the data path enforces

    def trigger(self) -> int:
        """Ask for a pass; returns a ticket that wait_pass() waits beyond."""
        with self._passed:
            ticket = self._generation
        self._wake.set()
        return ticket

    def wait_pass(self, ticket: int, timeout: float) -> bool:
        """Wait until a pass that started after trigger() returned `ticket` has finished.

        The generation is odd while a pass runs and even between passes: from an even ticket
        the next pass ends at +2, from an odd one (a pass was already running) at +3.
        """
        target = ticket + 2 + (ticket & 1)
        deadline = time.monotonic() + timeout
        with self._passed:
            while self._generation < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._passed.wait(left)
        return True

    def reconcile_once(self) -> PassResult:
        t0 = time.monotonic()
        res = PassResult()
        want = self._desired()
        have_remotes = self.dp.remotes()
        for name in have_remotes.keys() - want.remotes.keys():
            self._apply(res, f"remote {name}", partial(self.dp.remove_remote, name))
        for name, node in want.remotes.items():
            if have_remotes.get(name) != node:
                self._apply(res, f"remote {name}", partial(self.dp.set_remote, node))
        if not res.failed:  # every node programmed: VTEPs of nodes no longer listed go
            try:
                res.changed += len(self.dp.prune_stale_vteps())
            except (RinglaneError, OSError) as exc:
                res.failed["vteps"] = str(exc)
                log.warning("reconcile.failed", object="vteps", error=str(exc))
        # Policy before endpoints: a new pod's entries are in force when its program attaches.
        if want.policy is not None:
            if want.policy != self.dp.policy_entries:
                self._apply(res, "policy", partial(self.dp.set_policy, want.policy))
            if "policy" not in res.failed and want.policy_error is None:
                self.policy_ids = want.policy_ids
        if want.policy_error is not None:
            res.failed["policy"] = want.policy_error
            log.warning("reconcile.failed", object="policy", error=want.policy_error)
        have_eps = self.dp.programmed_endpoints()
        for ip in have_eps.keys() - want.endpoints.keys():
            self._apply(res, f"endpoint {ip}", partial(self.dp.remove_endpoint, ip))
        for ip, ep in want.endpoints.items():
            cur = have_eps.get(ip)
            if cur is None or (cur.host_ifname, cur.name) != (ep.host_ifname, ep.name) or (
                    ep.mac and ep.mac != cur.mac):
                self._apply(res, f"endpoint {ip}", partial(self.dp.add_endpoint, ep))
        res.seconds = time.monotonic() - t0
        return res

    @staticmethod
    def _apply(res: PassResult, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            res.changed += 1
        except (RinglaneError, OSError) as exc:
            res.failed[what] = str(exc)
            log.warning("reconcile.failed", object=what, error=str(exc))

    def run(self, stop: threading.Event) -> None:
        delay = RETRY_MIN
        while not stop.is_set():
            with self._passed:
                # cleared before the pass is marked running, under the lock trigger() takes:
                # a trigger from here on both sees the pass as running and wakes the next one
                self._wake.clear()
                self._generation += 1
            try:
                self.last = self.reconcile_once()
            except Exception as exc:  # a bug or a vanished node: keep the agent alive
                log.exception("reconcile.crashed", error=str(exc))
                self.last = PassResult(failed={"pass": str(exc)})
            self.passes += 1
            self.observe(self.last.seconds)
            with self._passed:
                self._generation += 1
                self._passed.notify_all()
            if self.last.failed:
                self._wake.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
            else:
                delay = RETRY_MIN
                self._wake.wait(RESYNC_SECONDS)
