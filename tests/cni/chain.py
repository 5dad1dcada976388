"""A small CNI runtime for tests and benchmarks: it executes a network configuration list the
way libcni (containerd, CRI-O, podman) does, so that a plugin is exercised exactly as a node
runs it, real plugins included.

* Each plugin is found by its `type` in CNI_PATH and executed with the CNI_* environment
  (CNI_NETNS="" and CNI_ARGS="" when empty, as libcni sets them) and its request
  configuration on stdin: the plugin's object plus the list's `cniVersion` and `name`, plus
  `prevResult` (ADD: the previous plugin's result; DEL and CHECK: the cached final result of
  the ADD) and, for GC, `cni.dev/valid-attachments`.
* ADD runs the list in order and stops at the first error; DEL runs it in reverse.
* `host_netns` runs the plugins in a network namespace that plays the node's root namespace,
  so that what the plugins change on "the host" (veths, routes, bridges, forwarding sysctls)
  disappears with that namespace instead of piling up on the machine running the tests.

Every execution is kept in `runs` (configuration, environment, output, duration).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.nsutil import entered


class Netns:
    """A named network namespace (`ip netns add`); delete() is idempotent."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def create(cls, prefix: str = "rlcni-") -> Netns:
        ns = cls(f"{prefix}{secrets.token_hex(3)}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
        return ns

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`ip -n <ns> ...`; never raises (callers look at returncode)."""
        return subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True)

    def delete(self) -> None:
        if os.path.exists(self.path):
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@dataclass
class Attachment:
    """The per-attachment parameters (spec section 3)."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: dict[str, str] = field(default_factory=dict)

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args.items())


@dataclass
class PluginRun:
    plugin: str
    command: str
    config: dict[str, Any]
    env: dict[str, str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> Any:
        """stdout as JSON (result or error object), None when empty."""
        return json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class ChainError(Exception):
    """A plugin failed: `run` is its execution, `error` its CNI error object."""

    def __init__(self, run: PluginRun) -> None:
        self.run = run
        try:
            self.error: dict[str, Any] = run.output or {}
        except ValueError:
            self.error = {}
        super().__init__(f"{run.plugin} {run.command} exited {run.returncode}: "
                         f"{run.stdout.strip()} {run.stderr.strip()}")


class Runtime:
    """Executes one network configuration list (a conflist as a dict)."""

    def __init__(self, conflist: dict[str, Any], cni_path: Sequence[str], *,
                 host_netns: str | None = None, timeout: float = 30.0) -> None:
        self.conflist = conflist
        self.cni_path = list(cni_path)
        self.host_netns = host_netns
        self.timeout = timeout
        self.runs: list[PluginRun] = []

    @property
    def plugins(self) -> list[dict[str, Any]]:
        plugins: list[dict[str, Any]] = self.conflist["plugins"]
        return plugins

    def find(self, plugin_type: str) -> str:
        for d in self.cni_path:
            candidate = os.path.join(d, plugin_type)
            if os.access(candidate, os.X_OK):
                return candidate
        raise FileNotFoundError(f"CNI plugin {plugin_type!r} not found in {self.cni_path}")

    def request_config(self, plugin: dict[str, Any], prev_result: Any = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
        conf = {k: v for k, v in plugin.items() if k != "capabilities"}
        conf["cniVersion"] = self.conflist["cniVersion"]
        conf["name"] = self.conflist["name"]
        if prev_result is not None:
            conf["prevResult"] = prev_result
        conf.update(extra or {})
        return conf

    def env(self, command: str, att: Attachment | None) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "CNI_COMMAND": command, "CNI_PATH": ":".join(self.cni_path)}
        if att is not None:
            env |= {"CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns,
                    "CNI_IFNAME": att.ifname, "CNI_ARGS": att.cni_args()}
        return env

    def exec_plugin(self, plugin: dict[str, Any], command: str, att: Attachment | None,
                    prev_result: Any = None, extra: dict[str, Any] | None = None) -> PluginRun:
        """One execution of one plugin, as a runtime does it (no exception on failure)."""
        path = self.find(plugin["type"])
        conf = self.request_config(plugin, prev_result, extra)
        env = self.env(command, att)
        with entered(self.host_netns):
            start = time.perf_counter()
            p = subprocess.run([path], input=json.dumps(conf).encode(), env=env,
                               capture_output=True, timeout=self.timeout)
            seconds = time.perf_counter() - start
        run = PluginRun(plugin["type"], command, conf, env, p.returncode,
                        p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"),
                        seconds)
        self.runs.append(run)
        return run

    def add(self, att: Attachment) -> Any:
        """ADD through the list; returns the final result (the runtime caches it)."""
        prev: Any = None
        for plugin in self.plugins:
            run = self.exec_plugin(plugin, "ADD", att, prev)
            if not run.ok:
                raise ChainError(run)
            prev = run.output
        return prev

    def delete(self, att: Attachment, prev_result: Any = None) -> None:
        """DEL through the list in reverse order; every plugin gets the ADD's final result."""
        for plugin in reversed(self.plugins):
            run = self.exec_plugin(plugin, "DEL", att, prev_result)
            if not run.ok:
                raise ChainError(run)

    def check(self, att: Attachment, prev_result: Any) -> None:
        for plugin in self.plugins:
            run = self.exec_plugin(plugin, "CHECK", att, prev_result)
            if not run.ok:
                raise ChainError(run)

    def gc(self, valid: Sequence[Attachment]) -> list[PluginRun]:
        """GC every plugin (continuing past errors, as the spec asks); returns the runs."""
        attachments = [{"containerID": a.container_id, "ifname": a.ifname} for a in valid]
        extra = {"cni.dev/valid-attachments": attachments, "cni.dev/attachments": attachments}
        return [self.exec_plugin(p, "GC", None, extra=extra) for p in self.plugins]

    def status(self) -> list[PluginRun]:
        return [self.exec_plugin(p, "STATUS", None) for p in self.plugins]
