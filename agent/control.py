"""The agent's local control socket: one JSON object per line in, one per line out.

Unix socket (0600, root) under the run directory: `ringlanectl` and the demo read status and
counters through it today; the CNI plugin will register endpoints through it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from agent.errors import RinglaneError

log = structlog.get_logger(__name__)

Handler = Callable[[dict[str, Any]], Any]
MAX_REQUEST = 1024 * 1024  # a cni_gc lists every attachment on the node


def to_json(value: Any) -> Any:
    """Dataclasses, addresses and paths as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_json(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


class ControlServer:
    """Serves `handlers[request["op"]](request)` on a unix socket, one thread per client."""

    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()  # a stale socket of a previous agent

        outer = self

        class _Req(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    if len(line) > MAX_REQUEST:
                        reply: dict[str, Any] = {"ok": False, "error": "request too large"}
                    else:
                        reply = outer.dispatch(line)
                    self.wfile.write(json.dumps(reply).encode() + b"\n")

        old = os.umask(0o177)
        try:
            self._server = socketserver.ThreadingUnixStreamServer(str(path), _Req)
        finally:
            os.umask(old)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="control",
                                        daemon=True)

    def dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("op"), str):
                return {"ok": False, "error": "expected a JSON object with a string 'op'"}
            handler = self.handlers.get(req["op"])
            if handler is None:
                return {"ok": False, "error": f"unknown op {req['op']!r}",
                        "ops": sorted(self.handlers)}
            return {"ok": True, "result": to_json(handler(req))}
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"malformed JSON: {exc}"}
        except RinglaneError as exc:
            return {"ok": False, "error": str(exc)}

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)


def request(path: Path, op: str, timeout: float = 5.0, **args: Any) -> Any:
    """One request to an agent's control socket; raises RinglaneError with the agent's error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError as exc:
            raise RinglaneError(f"agent not reachable at {path}: {exc.strerror}") from exc
        s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise RinglaneError(f"agent: {reply.get('error')}")
    return reply["result"]
