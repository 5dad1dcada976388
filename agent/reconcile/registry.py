"""Endpoints registered by the CNI plugin, kept on disk so a restarted agent re-adopts them.

Keyed by (containerId, ifName), the identity the CNI spec gives an attachment. Thread-safe: the
control socket's threads write, the reconciler reads.
"""

from __future__ import annotations

import json
import os
import threading
from ipaddress import IPv4Address
from pathlib import Path

from agent.datapath.node import Endpoint

Key = tuple[str, str]  # (containerId, ifName)


class Registry:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._items: dict[Key, Endpoint] = {}
        try:
            for row in json.loads(path.read_text()):
                self._items[(row["containerId"], row["ifName"])] = Endpoint(
                    name=row["name"], ip=IPv4Address(row["ip"]),
                    host_ifname=row["hostIfname"], mac=row["mac"])
        except FileNotFoundError:
            pass

    def _save(self) -> None:
        rows = [{"containerId": c, "ifName": i, "name": e.name, "ip": str(e.ip),
                 "hostIfname": e.host_ifname, "mac": e.mac}
                for (c, i), e in sorted(self._items.items())]
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, self._path)

    def add(self, key: Key, ep: Endpoint) -> None:
        """Register `ep`; another attachment holding the same IP is replaced (IPs are reused)."""
        with self._lock:
            for k in [k for k, e in self._items.items() if e.ip == ep.ip and k != key]:
                del self._items[k]
            self._items[key] = ep
            self._save()

    def remove(self, key: Key) -> Endpoint | None:
        with self._lock:
            ep = self._items.pop(key, None)
            if ep is not None:
                self._save()
            return ep

    def get(self, key: Key) -> Endpoint | None:
        with self._lock:
            return self._items.get(key)

    def keep_only(self, valid: set[Key]) -> list[Key]:
        """GC: drop every attachment not in `valid`; returns what was dropped."""
        with self._lock:
            gone = [k for k in self._items if k not in valid]
            for k in gone:
                del self._items[k]
            if gone:
                self._save()
            return gone

    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return list(self._items.values())
