"""The node's policies: those applied through the API (kept on disk, so a restarted agent
programs the same verdicts) and those translated from NetworkPolicy objects, one list for the
compiler, and the revision and event stream the API serves.

Every change is checked whole before it is committed: validated, then compiled together with
everything else against the current cluster, so a request the data path could not hold is
refused with nothing changed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from ipaddress import IPv4Address
from pathlib import Path

import structlog

from agent.api.backend import PolicyEvent
from agent.errors import RinglaneError
from agent.policy.compile import PolicyLimitError as PolicyLimitError
from agent.policy.compile import compile_policies
from agent.policy.model import MAX_POLICIES, Inventory, Origin, Policy, PolicyError, validate

log = structlog.get_logger(__name__)

Codec = tuple[Callable[[Sequence[Policy]], bytes], Callable[[bytes], list[Policy]]]
_WATCH_QUEUE = 4096


class PolicyNotFound(RinglaneError):
    """Delete of a policy the API does not hold."""


class PolicyConflict(RinglaneError):
    """The request collides with a policy it may not change (one owned by Kubernetes)."""


class PolicyEngine:
    """Thread-safe holder of the API's policies plus a view of Kubernetes'."""

    def __init__(self, state_file: Path, codec: Codec, *,
                 snapshot: Callable[[], tuple[Inventory, Iterable[IPv4Address]]],
                 kube_policies: Callable[[], Sequence[Policy]] = tuple) -> None:
        """`snapshot`: the cluster and this node's endpoints now, for trial compiles."""
        self._file = state_file
        self._dump, self._load = codec
        self._snapshot = snapshot
        self._kube = kube_policies
        self._lock = threading.RLock()
        self._api: dict[tuple[str, str, str], Policy] = {}
        self._known: dict[tuple[str, str, str], Policy] = {}  # what watchers were told
        self._subs: list[queue.Queue[PolicyEvent | None]] = []
        self.revision = 0
        if state_file.exists():
            try:
                for p in self._load(state_file.read_bytes()):
                    self._api[p.key] = validate(p)
            except (OSError, ValueError, PolicyError) as exc:
                raise RinglaneError(f"policy state {state_file} is unreadable ({exc}); move it "
                                    "away to start without the API's policies") from exc
            log.info("policy.loaded", policies=len(self._api), file=str(state_file))
        self._publish()

    # -- reading ------------------------------------------------------------------------------

    def policies(self) -> list[Policy]:
        """Every policy, API and Kubernetes, sorted by id."""
        with self._lock:
            merged = {**{p.key: p for p in self._kube()}, **self._api}
        return [merged[k] for k in sorted(merged)]

    # -- changing -----------------------------------------------------------------------------

    def apply(self, policies: Sequence[Policy]) -> int:
        """Add or replace API policies, all or none; the new revision."""
        with self._lock:
            trial = dict(self._api)
            seen: set[tuple[str, str, str]] = set()
            for i, p in enumerate(policies):
                where = f"policies[{i}]"
                if p.origin is not Origin.API:
                    raise PolicyError(f"{where}.origin", "only API policies can be applied")
                validate(p, where)
                if p.key in seen:
                    raise PolicyError(f"{where}.name",
                                      f"{p.namespace}/{p.name} appears twice in the request")
                seen.add(p.key)
                trial[p.key] = p
            if len(trial) > MAX_POLICIES:
                raise PolicyLimitError(f"{len(trial)} API policies; at most {MAX_POLICIES}")
            self._commit(trial)
            return self.revision

    def delete(self, names: Sequence[tuple[str, str]]) -> int:
        """Remove API policies by (namespace, name), all or none; the new revision."""
        with self._lock:
            trial = dict(self._api)
            for ns, name in names:
                key = (Origin.API.value, ns, name)
                if key in trial:
                    del trial[key]
                elif any(p.namespace == ns and p.name == name for p in self._kube()):
                    raise PolicyConflict(f"{ns}/{name} is a NetworkPolicy: delete it with "
                                         "kubectl")
                else:
                    raise PolicyNotFound(f"no API policy {ns}/{name}")
            # no limit check: a delete must always be possible (what does not fit is
            # enforced closed, see NodeAgent.desired)
            self._commit(trial, check=False)
            return self.revision

    def _commit(self, trial: dict[tuple[str, str, str], Policy], *, check: bool = True) -> None:
        if check:
            merged = {**{p.key: p for p in self._kube()}, **trial}
            compile_policies([merged[k] for k in sorted(merged)], *self._snapshot())
        self._save(trial)
        self._api = trial
        self._publish()

    def _save(self, trial: dict[tuple[str, str, str], Policy]) -> None:
        """Atomically and durably: a crash or power loss leaves the old file or the new one.
        The temporary file is unique, so two agents (a rolling update) never share one."""
        self._file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self._file.name + ".", dir=self._file.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._dump([trial[k] for k in sorted(trial)]))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._file)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dirfd = os.open(self._file.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)  # the rename itself
        finally:
            os.close(dirfd)

    def refresh(self) -> None:
        """Tell watchers about Kubernetes' changes (call after the cluster changed)."""
        with self._lock:
            self._publish()

    # -- watching -----------------------------------------------------------------------------

    def _publish(self) -> None:
        now = {p.key: p for p in self.policies()}
        events = [PolicyEvent("deleted", p, 0) for k, p in self._known.items() if k not in now]
        events += [PolicyEvent("applied", p, 0) for k, p in now.items()
                   if self._known.get(k) != p]
        if not events:
            return
        self.revision += 1
        self._known = now
        for sub in list(self._subs):
            if sub.qsize() + len(events) > _WATCH_QUEUE:
                # a stuck watcher is cut off (its reserved slot takes the end mark), never
                # waited for; only this method puts, under the lock, so qsize() is exact
                self._subs.remove(sub)
                sub.put_nowait(None)
                continue
            for ev in events:
                sub.put_nowait(PolicyEvent(ev.kind, ev.policy, self.revision))

    def watch(self, stop: threading.Event) -> Iterator[PolicyEvent]:
        """Every policy as "applied", then changes, until `stop` (or the watcher fell more than
        _WATCH_QUEUE events behind: the iterator then ends and the client should re-watch)."""
        sub: queue.Queue[PolicyEvent | None] = queue.Queue(_WATCH_QUEUE + 1)
        with self._lock:
            initial = [PolicyEvent("applied", p, self.revision) for p in self._known.values()]
            self._subs.append(sub)
        try:
            yield from initial
            while not stop.is_set():
                try:
                    ev = sub.get(timeout=0.5)
                except queue.Empty:
                    continue
                if ev is None:
                    return
                yield ev
        finally:
            with self._lock:
                if sub in self._subs:
                    self._subs.remove(sub)
