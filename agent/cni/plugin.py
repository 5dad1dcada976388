"""`ringlane` as a CNI plugin, chained last after the cluster's primary plugin.

The runtime executes the `ringlane` console script with CNI_COMMAND set (agent/cli.py hands
over before importing anything else). The plugin creates nothing itself: on ADD it tells the
node agent which pod address sits behind which interface, waits (bounded) until the agent has
programmed the endpoint, and passes the previous plugin's result through unchanged. Because
every packet the agent does not serve takes the kernel path, a missing agent costs speed, not
connectivity: by default (`failClosed: false`) the pod starts anyway and the agent adopts it
later. The wire protocol and the reaction to every answer are in protocol.py.

Network config fields of ours, all optional:
  agentSocket  the agent's control socket          (default /run/ringlane/agent.sock)
  stateDir     where DELs wait while the agent is down (default /var/lib/ringlane/cni)
  failClosed   refuse pods the agent did not confirm (default false)
  timeoutMs    bound on each exchange with the agent (default 3000, 1..60000)

Imports only the standard library and agent.cni (checked by tests/cni/test_isolation.py), so
it also runs under `python -IS` (launcher.py), and only cheap parts of it (fastjson.py): the
plugin's start-up is most of its cost, and kubelet pays it for every pod.
"""

from __future__ import annotations

import os
import sys

from agent.cni import fastjson, protocol, spec
from agent.cni.spec import CniError

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms at start-up

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any, NoReturn

    JSONObject = dict[str, Any]
    Log = Callable[[str], None]

DEFAULT_STATE_DIR = "/var/lib/ringlane/cni"
DEFAULT_TIMEOUT_MS = 3000
MAX_TIMEOUT_MS = 60_000
SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1


class NetConf:
    """The request configuration the runtime put on stdin, with our fields checked."""

    __slots__ = ("agent_socket", "cni_version", "fail_closed", "name", "prev_result", "raw",
                 "state_dir", "timeout_ms")

    def __init__(self, raw: JSONObject) -> None:
        self.raw = raw
        self.cni_version: str = raw["cniVersion"]
        self.name = spec.check_network_name(raw.get("name"))
        self.agent_socket = _path_field(raw, "agentSocket", protocol.DEFAULT_SOCKET)
        if len(self.agent_socket.encode()) > SUN_PATH_MAX:
            raise CniError(spec.INVALID_CONFIG,
                           f"network config agentSocket {self.agent_socket!r} is longer than "
                           f"{SUN_PATH_MAX} bytes",
                           "a unix socket path must fit in sockaddr_un.sun_path")
        self.state_dir = _path_field(raw, "stateDir", DEFAULT_STATE_DIR)
        fail_closed = raw.get("failClosed", False)
        if not isinstance(fail_closed, bool):
            raise CniError(spec.INVALID_CONFIG,
                           f"network config failClosed must be true or false, got "
                           f"{spec.dumps(fail_closed)}")
        self.fail_closed = fail_closed
        timeout = raw.get("timeoutMs", DEFAULT_TIMEOUT_MS)
        if (not isinstance(timeout, int) or isinstance(timeout, bool)
                or not 1 <= timeout <= MAX_TIMEOUT_MS):
            raise CniError(spec.INVALID_CONFIG,
                           f"network config timeoutMs must be an integer from 1 to "
                           f"{MAX_TIMEOUT_MS} (milliseconds), got {spec.dumps(timeout)}")
        self.timeout_ms = timeout
        prev = raw.get("prevResult")
        if prev is not None and not isinstance(prev, dict):
            raise CniError(spec.INVALID_CONFIG,
                           f"network config prevResult is not a JSON object: "
                           f"{spec.dumps(prev)[:200]}")
        self.prev_result: JSONObject | None = prev

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000.0


def _path_field(raw: JSONObject, key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.startswith("/"):
        raise CniError(spec.INVALID_CONFIG,
                       f"network config {key} must be an absolute path, got "
                       f"{spec.dumps(value)}")
    return value


def parse_config(data: bytes) -> NetConf:
    """stdin -> NetConf; decode problems are code 6, an unsupported cniVersion code 1, a bad
    value code 7 (the spec's codes for each)."""
    if not data.strip():
        raise CniError(spec.DECODE_FAILURE, "network config on stdin is empty",
                       "the runtime must pass the plugin's configuration as JSON on stdin")
    try:
        raw = fastjson.loads(data)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise CniError(spec.DECODE_FAILURE,
                       f"network config on stdin is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise CniError(spec.DECODE_FAILURE,
                       f"network config on stdin is a JSON {type(raw).__name__}, not an object")
    version = raw.get("cniVersion")
    if version not in spec.SUPPORTED_VERSIONS:
        got = "has no cniVersion" if version is None else f"cniVersion {spec.dumps(version)}"
        raise CniError(spec.INCOMPATIBLE_VERSION,
                       f"network config {got}, which ringlane does not support",
                       f"supported: {', '.join(spec.SUPPORTED_VERSIONS)}")
    try:
        return NetConf(raw)
    except CniError as exc:
        exc.cni_version = version
        raise


class Invocation:
    """The CNI_* environment of one execution, validated on demand per command."""

    def __init__(self, command: str, environ: Mapping[str, str]) -> None:
        self.command = command
        self.environ = environ
        self.container_id = environ.get("CNI_CONTAINERID", "")
        self.netns = environ.get("CNI_NETNS", "")
        self.ifname = environ.get("CNI_IFNAME", "")
        self.path = environ.get("CNI_PATH", "")

    def require(self, *names: str) -> None:
        missing = [n for n in names if not self.environ.get(n)]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise CniError(spec.INVALID_ENVIRONMENT,
                           f"required environment variable{plural} {', '.join(missing)} "
                           f"missing or empty",
                           f"CNI_COMMAND={self.command} needs {', '.join(names)}")
        if "CNI_CONTAINERID" in names:
            spec.check_container_id(self.container_id)
        if "CNI_IFNAME" in names:
            spec.check_ifname(self.ifname)
        if "CNI_NETNS" in names:
            problem = spec.netns_problem(self.netns)
            if problem:
                raise CniError(spec.INVALID_ENVIRONMENT, f"CNI_NETNS={self.netns} {problem}",
                               "the runtime must create the pod's network namespace before "
                               "running the plugins")

    def pod_args(self) -> tuple[str | None, str | None]:
        args = spec.parse_cni_args(self.environ.get("CNI_ARGS", ""))
        return args.get("K8S_POD_NAMESPACE") or None, args.get("K8S_POD_NAME") or None

    def who(self) -> str:
        return f"{self.container_id[:12] or '-'} {self.ifname or '-'}"


def pod_ipv4(prev: JSONObject, netns: str, ifname: str) -> str:
    """The pod's IPv4 address (no prefix) from the previous plugin's result: an ips[] entry
    whose `interface` index points at an interface in the sandbox CNI_NETNS, preferring the one
    named CNI_IFNAME. Anything else is an invalid network config (code 7), each case saying
    which field is wrong."""
    interfaces = prev.get("interfaces")
    if not isinstance(interfaces, list) or not interfaces:
        raise CniError(spec.INVALID_CONFIG, "prevResult has no interfaces",
                       "ringlane must be chained after the plugin that creates the pod's "
                       "interface (ptp, bridge, ...), whose result lists it")
    ips = prev.get("ips", [])
    if not isinstance(ips, list):
        raise CniError(spec.INVALID_CONFIG, "prevResult ips is not a list")
    for n, entry in enumerate(ips):
        if not isinstance(entry, dict):
            raise CniError(spec.INVALID_CONFIG, f"prevResult ips[{n}] is not an object")
        index = entry.get("interface")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)
                                  or not 0 <= index < len(interfaces)):
            raise CniError(spec.INVALID_CONFIG,
                           f"prevResult ips[{n}].interface {spec.dumps(index)} is not an index "
                           f"into interfaces (0..{len(interfaces) - 1})")
    in_sandbox = [i for i, itf in enumerate(interfaces)
                  if isinstance(itf, dict) and isinstance(itf.get("sandbox"), str)
                  and itf["sandbox"] and spec.same_netns_path(itf["sandbox"], netns)]
    if not in_sandbox:
        listed = ", ".join(
            f"{itf.get('name')}@{itf.get('sandbox') or 'host'}" if isinstance(itf, dict)
            else spec.dumps(itf) for itf in interfaces)
        raise CniError(spec.INVALID_CONFIG,
                       f"prevResult has no interface in the sandbox CNI_NETNS={netns} "
                       f"(interfaces: {listed})",
                       "the previous plugin must report the pod's interface with 'sandbox' "
                       "set to CNI_NETNS")
    in_sandbox.sort(key=lambda i: interfaces[i].get("name") != ifname)
    for index in in_sandbox:
        for n, entry in enumerate(ips):
            if entry.get("interface") != index:
                continue
            address = entry.get("address")
            family = spec.ip_family(address) if isinstance(address, str) else 0
            if family == 0:
                raise CniError(spec.INVALID_CONFIG,
                               f"prevResult ips[{n}].address {spec.dumps(address)} is not an "
                               f"IP address in CIDR notation")
            if family == 4:
                return str(address).split("/", 1)[0]
    names = ", ".join(str(interfaces[i].get("name")) for i in in_sandbox)
    raise CniError(spec.INVALID_CONFIG,
                   f"prevResult has no IPv4 address on an interface in the sandbox "
                   f"CNI_NETNS={netns} (sandbox interfaces: {names})",
                   "Ringlane accelerates IPv4: an ips[] entry with an IPv4 address and an "
                   "'interface' index pointing at the pod's interface is required")


def _require_prev(conf: NetConf, command: str) -> JSONObject:
    if conf.prev_result is None:
        raise CniError(spec.INVALID_CONFIG, f"{command}: network config has no prevResult",
                       "ringlane is a chained plugin: list it after the plugin that creates "
                       "the pod's interface, in the same conflist")
    return conf.prev_result


def _endpoint_request(op: str, inv: Invocation, ip: str) -> JSONObject:
    namespace, name = inv.pod_args()
    return {"op": op, "containerId": inv.container_id, "ifName": inv.ifname,
            "netns": inv.netns, "ip": ip, "podNamespace": namespace, "podName": name}


def cmd_add(inv: Invocation, conf: NetConf, log: Log) -> JSONObject:
    inv.require("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH")
    prev = _require_prev(conf, "ADD")
    ip = pod_ipv4(prev, inv.netns, inv.ifname)
    result = spec.convert_result(prev, conf.cni_version)
    request = _endpoint_request("cni_add", inv, ip)
    what = f"{ip} ({inv.ifname} in {inv.netns})"
    try:
        protocol.call(conf.agent_socket, request, conf.timeout_s)
    except protocol.AgentUnavailable as exc:
        if conf.fail_closed:
            raise CniError(spec.TRY_AGAIN_LATER,
                           f"pod {what} not accelerated: {exc}, and failClosed is true",
                           "start ringlane-agent on this node (the runtime retries), or set "
                           "failClosed: false to let pods start on the kernel path") from exc
        log(f"{exc}; pod {what} starts on the kernel path, the agent adopts it when it runs")
    except protocol.AgentRefused as exc:
        if conf.fail_closed:
            raise CniError(spec.AGENT_REFUSED,
                           f"ringlane agent refused to accelerate pod {what}: {exc}",
                           "failClosed is true; see the agent's log") from exc
        log(f"agent refused pod {what}: {exc}; it runs on the kernel path")
    except protocol.AgentProtocolError as exc:
        if conf.fail_closed:
            raise CniError(spec.AGENT_BAD_REPLY, str(exc),
                           "agentSocket must be ringlane-agent's control socket") from exc
        log(f"{exc}; pod {what} runs on the kernel path")
    return result


def cmd_check(inv: Invocation, conf: NetConf, log: Log) -> None:
    spec.require_version(conf.cni_version, "0.4.0", "CHECK")
    inv.require("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH")
    prev = _require_prev(conf, "CHECK")
    ip = pod_ipv4(prev, inv.netns, inv.ifname)
    request = _endpoint_request("cni_check", inv, ip)
    try:
        protocol.call(conf.agent_socket, request, conf.timeout_s)
    except protocol.AgentUnavailable as exc:
        raise CniError(spec.TRY_AGAIN_LATER, f"cannot check pod {ip}: {exc}",
                       "the agent is an external dependency of this attachment; CHECK "
                       "reports it missing whatever failClosed says") from exc
    except protocol.AgentRefused as exc:
        raise CniError(spec.AGENT_REFUSED,
                       f"ringlane agent reports pod {ip} ({inv.ifname} in {inv.netns}) not in "
                       f"order: {exc}") from exc
    except protocol.AgentProtocolError as exc:
        raise CniError(spec.AGENT_BAD_REPLY, str(exc)) from exc


def cmd_del(inv: Invocation, conf: NetConf, log: Log) -> None:
    # CNI_NETNS and prevResult are optional on DEL: containerd's second DEL has neither.
    inv.require("CNI_CONTAINERID", "CNI_IFNAME")
    request = {"op": "cni_del", "containerId": inv.container_id, "ifName": inv.ifname}
    try:
        protocol.call(conf.agent_socket, request, conf.timeout_s)
        return
    except protocol.AgentRefused as exc:
        log(f"agent refused cni_del: {exc} (ignored: DEL is best effort)")
        return
    except (protocol.AgentUnavailable, protocol.AgentProtocolError) as exc:
        reason = str(exc)
    from agent.cni import queue  # only on this path: the common DEL never touches the disk

    try:
        dropped = queue.enqueue(conf.state_dir, inv.container_id, inv.ifname)
    except OSError as exc:
        msg = (f"{reason}, and the deletion could not be queued in {conf.state_dir}: "
               f"{exc.strerror or exc}")
        if conf.fail_closed:
            raise CniError(spec.IO_FAILURE, msg,
                           "stateDir must be writable by the runtime; the runtime retries "
                           "DEL") from exc
        log(f"{msg} (ignored, failClosed is false: the agent's reconciliation removes the "
            f"endpoint once its veth is gone)")
        return
    log(f"{reason}; deletion queued in {conf.state_dir}/{queue.QUEUE_FILE} for the agent")
    if dropped:
        log(f"deletion queue full ({queue.MAX_ENTRIES}): dropped the {dropped} oldest")


def valid_attachments(conf: NetConf) -> list[dict[str, str]]:
    """`cni.dev/valid-attachments` as the agent's `valid` list. libcni also sends the same
    list as `cni.dev/attachments` (the spec's earlier name), which is accepted when the
    first is absent. null is an empty list (Go marshals an empty slice that way); a missing
    key is an error rather than 'nothing is valid', which would forget every endpoint."""
    key = "cni.dev/valid-attachments"
    if key not in conf.raw and "cni.dev/attachments" in conf.raw:
        key = "cni.dev/attachments"
    if key not in conf.raw:
        raise CniError(spec.INVALID_CONFIG, "GC: network config has no "
                       "cni.dev/valid-attachments",
                       "the runtime must list the attachments that are still valid")
    items = conf.raw[key]
    if items is None:
        items = []
    if not isinstance(items, list):
        raise CniError(spec.INVALID_CONFIG, f"GC: {key} is not a list")
    valid: list[dict[str, str]] = []
    for n, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("containerID"), str)
                and isinstance(item.get("ifname"), str)):
            raise CniError(spec.INVALID_CONFIG,
                           f"GC: {key}[{n}] is not an object with string containerID and "
                           f"ifname: {spec.dumps(item)[:200]}")
        valid.append({"containerId": item["containerID"], "ifName": item["ifname"]})
    return valid


def cmd_gc(inv: Invocation, conf: NetConf, log: Log) -> None:
    spec.require_version(conf.cni_version, "1.1.0", "GC")
    inv.require("CNI_PATH")
    request = {"op": "cni_gc", "valid": valid_attachments(conf)}
    try:
        protocol.call(conf.agent_socket, request, conf.timeout_s)
    except protocol.AgentUnavailable as exc:
        if conf.fail_closed:
            raise CniError(spec.TRY_AGAIN_LATER, f"GC not done: {exc}",
                           "the agent reconciles its endpoints when it starts") from exc
        log(f"GC skipped: {exc} (the agent reconciles its endpoints when it starts)")
    except protocol.AgentRefused as exc:
        raise CniError(spec.AGENT_REFUSED, f"ringlane agent refused GC: {exc}") from exc
    except protocol.AgentProtocolError as exc:
        raise CniError(spec.AGENT_BAD_REPLY, str(exc)) from exc


def cmd_status(inv: Invocation, conf: NetConf, log: Log) -> None:
    spec.require_version(conf.cni_version, "1.1.0", "STATUS")
    try:
        protocol.call(conf.agent_socket, {"op": "status"}, conf.timeout_s)
    except protocol.AgentRefused:
        return  # it answered: it is there
    except (protocol.AgentUnavailable, protocol.AgentProtocolError) as exc:
        if conf.fail_closed:
            raise CniError(spec.NOT_AVAILABLE,
                           f"{exc}: ringlane cannot service ADD (failClosed is true)",
                           "start ringlane-agent on this node") from exc
        # Without the agent, ADD still succeeds (kernel path): we *can* service ADD.
        log(f"{exc}; ready anyway: pods start on the kernel path (failClosed is false)")


HANDLERS: dict[str, Callable[[Invocation, NetConf, Log], JSONObject | None]] = {
    "ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc, "STATUS": cmd_status,
}


def version_info(data: bytes) -> JSONObject:
    """VERSION never fails and never contacts the agent: echo the requested cniVersion (spec:
    "the value of cniVersion specified on input"), our latest when there is none."""
    requested: object = None
    try:
        parsed = fastjson.loads(data) if data.strip() else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        requested = parsed.get("cniVersion")
    return {"cniVersion": requested if isinstance(requested, str) and requested else spec.LATEST,
            "supportedVersions": list(spec.SUPPORTED_VERSIONS)}


def run(environ: Mapping[str, str], stdin: IO[bytes] | None, stdout: IO[str],
        stderr: IO[str]) -> int:
    """One plugin execution; returns the exit code. Results and errors go to stdout as JSON,
    logs to stderr (runtimes keep stdout for the protocol)."""
    command = environ.get("CNI_COMMAND", "")
    inv = Invocation(command, environ)

    def log(message: str) -> None:
        print(f"ringlane: {command} {inv.who()}: {message}", file=stderr)

    error_version = spec.LATEST
    try:
        if command not in spec.COMMANDS:
            raise CniError(spec.INVALID_ENVIRONMENT,
                           f"CNI_COMMAND={command!r} is not a CNI command"
                           if command else "required environment variable CNI_COMMAND "
                           "missing or empty",
                           f"one of {', '.join(spec.COMMANDS)}")
        try:
            data = stdin.read() if stdin is not None else b""
        except OSError as exc:
            raise CniError(spec.IO_FAILURE,
                           f"reading the network config from stdin failed: "
                           f"{exc.strerror or exc}") from exc
        if command == "VERSION":
            stdout.write(spec.dumps(version_info(data)) + "\n")
            return 0
        conf = parse_config(data)
        error_version = conf.cni_version
        out = HANDLERS[command](inv, conf, log)
    except CniError as exc:
        stdout.write(spec.dumps(exc.to_json(exc.cni_version or error_version)) + "\n")
        return 1
    except Exception as exc:  # a bug: still answer in the protocol, never a traceback only
        import traceback

        traceback.print_exc(file=stderr)
        err = CniError(999, f"ringlane plugin internal error: {type(exc).__name__}: {exc}")
        stdout.write(spec.dumps(err.to_json(error_version)) + "\n")
        return 1
    if out is not None:
        stdout.write(spec.dumps(out) + "\n")
    return 0


def main() -> NoReturn:
    """Entry point for runtimes (via agent/cli.py or an isolated launcher, see launcher.py)."""
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    code = run(os.environ, stdin, sys.stdout, sys.stderr)
    sys.stdout.flush()
    sys.exit(code)
