"""The protocol between the `ringlane` CNI plugin and the node agent, and its client side.

Transport
---------
The agent's control socket: a unix stream socket, `/run/ringlane/agent.sock` by default
(network config field `agentSocket`). The plugin connects, writes one JSON object followed by
"\\n", reads one line (the reply) and closes. Connect, send and the wait for the reply are
bounded together by the network config's `timeoutMs` (default 3000). Replies are

    {"ok": true, "result": <any JSON value>}
    {"ok": false, "error": "<what is wrong, for a human>"}

Requests (field names exactly as written; every field is always present)
------------------------------------------------------------------------
cni_add   {"op": "cni_add", "containerId": str, "ifName": str, "netns": str, "ip": str,
           "podNamespace": str | null, "podName": str | null}
    `ip` is the pod's IPv4 address without prefix length ("10.244.1.5"), taken from the
    prevResult entry on the interface in the sandbox. `netns` is CNI_NETNS as given. The pod
    fields come from CNI_ARGS K8S_POD_NAMESPACE / K8S_POD_NAME, null when absent. The agent
    resolves the host side of the veth from netns + ifName itself and replies only once the
    endpoint is programmed, so the plugin's wait for the reply *is* the wait for "programmed".
    The plugin does not read `result`: the agent may put there whatever helps a human.
cni_check {"op": "cni_check", <the same fields as cni_add>}
    ok: the attachment is registered and programmed. An error reply is reported to the
    runtime as a failed CHECK.
cni_del   {"op": "cni_del", "containerId": str, "ifName": str}
    Idempotent: an unknown attachment is ok (DEL is retried, and sent twice by containerd).
cni_gc    {"op": "cni_gc", "valid": [{"containerId": str, "ifName": str}, ...]}
    Forget every attachment not in `valid` (from the config's `cni.dev/valid-attachments`,
    whose keys `containerID`/`ifname` are renamed to ours). About 100 bytes per attachment:
    the one request that can outgrow a small line limit (agent/control.py's 64 KiB holds
    ~600 attachments).
status    {"op": "status"}  (the agent's existing operation)
    Sent for CNI STATUS: any reply within timeoutMs, ok or not, means the agent is there.

What the plugin does with the answer
------------------------------------
            | ok          | {"ok": false}               | unreachable / timeout / no reply
  ADD       | prevResult  | failClosed: code 100,        | failClosed: code 11,
            |             | else stderr + prevResult     | else stderr + prevResult
  DEL       | success     | stderr + success             | queued on disk (queue.py) + success
  CHECK     | success     | code 100                     | code 11
  GC        | success     | code 100                     | failClosed: code 11, else success
  STATUS    | success     | success (it answered)        | failClosed: code 50, else success
A reply that is not the protocol (not JSON, no boolean "ok") is code 101 where an error reply
would be code 100; on DEL it is queued, and for STATUS it counts as unreachable.

Deletions queued while the agent was unreachable are in `stateDir` (queue.py); the agent
calls `agent.cni.queue.drain(state_dir)` once its control socket is listening and applies
each returned `{"op": "cni_del", "containerId", "ifName", "queuedAt"}` like a cni_del request.
"""

from __future__ import annotations

import _socket  # not `socket`: its enums and selectors cost start-up (see fastjson.py)
import time

from agent.cni import fastjson

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms at start-up

if TYPE_CHECKING:
    from typing import Any

DEFAULT_SOCKET = "/run/ringlane/agent.sock"
MAX_REPLY = 1 << 20


class AgentUnavailable(Exception):
    """The agent could not be asked or did not answer in time: the request may or may not
    have been applied (a timeout after sending), which callers treat as 'not confirmed'."""


class AgentProtocolError(Exception):
    """The agent answered with something that is not a protocol reply."""


class AgentRefused(Exception):
    """The agent answered {"ok": false, "error": ...}; str() is the agent's message."""


def call(socket_path: str, request: dict[str, Any], timeout_s: float) -> Any:
    """Send one request, return the reply's `result`; bounded by `timeout_s` in total."""
    op = request.get("op")
    deadline = time.monotonic() + timeout_s
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        try:
            sock.connect(socket_path)
        except TimeoutError as exc:
            raise AgentUnavailable(f"connecting to {socket_path} timed out after "
                                   f"{timeout_s * 1000:.0f} ms") from exc
        except OSError as exc:
            raise AgentUnavailable(f"agent not reachable at {socket_path}: "
                                   f"{exc.strerror or exc}") from exc
        buf = b""
        try:
            sock.sendall(fastjson.dumps(request).encode() + b"\n")
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    raise AgentUnavailable(f"agent at {socket_path} closed the connection "
                                           f"without answering {op}")
                buf += chunk
                if len(buf) > MAX_REPLY:
                    raise AgentProtocolError(f"agent at {socket_path} sent a reply to {op} "
                                             f"longer than {MAX_REPLY} bytes")
        except TimeoutError as exc:
            raise AgentUnavailable(f"agent at {socket_path} did not answer {op} within "
                                   f"{timeout_s * 1000:.0f} ms") from exc
        except OSError as exc:
            raise AgentUnavailable(f"talking to the agent at {socket_path} failed: "
                                   f"{exc.strerror or exc}") from exc
    finally:
        sock.close()
    line = buf.split(b"\n", 1)[0]
    try:
        reply = fastjson.loads(line)
    except ValueError as exc:
        raise AgentProtocolError(f"agent at {socket_path} answered {op} with something that "
                                 f"is not JSON: {line[:200]!r}") from exc
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise AgentProtocolError(f"agent at {socket_path} answered {op} without a boolean "
                                 f"'ok': {line[:200]!r}")
    if not reply["ok"]:
        raise AgentRefused(str(reply.get("error") or "no error message"))
    return reply.get("result")
