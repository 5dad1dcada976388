"""A stand-in for ringlane-agent's control socket, speaking exactly the plugin's protocol
(agent/cni/protocol.py): one JSON request per line, one reply per line.

The tests need answers the real agent gives only in bad moments (errors, no answer, a slow
answer, garbage) and a record of exactly what the plugin sent, without XDP or root; the bench
needs an agent that answers immediately. `mode` (or `modes[op]`) chooses the answer:

  ok       {"ok": true, "result": <result>}
  error    {"ok": false, "error": <error>}
  slow     ok, after `delay` seconds
  hang     no answer until the double is closed
  close    close the connection without answering
  garbage  a line that is not JSON
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

MODES = ("ok", "error", "slow", "hang", "close", "garbage")


class AgentDouble:
    """Serves on `path` from a background thread; `requests` lists what it received, in order
    of arrival (every request is recorded, whatever the mode)."""

    def __init__(self, path: Path, mode: str = "ok", *, delay: float = 0.0,
                 error: str = "the double refuses", result: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        self.path = path
        self.mode = mode
        self.modes: dict[str, str] = {}
        self.delay = delay
        self.error = error
        self.result: Any = {} if result is None else result
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []

    def __enter__(self) -> AgentDouble:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self._spawn(self._accept_loop)

    def close(self) -> None:
        """Stop answering and remove the socket: from now on the agent is 'down'."""
        self._stop.set()
        for t in self._threads[:1]:  # the accept loop: after it, no new connection threads
            t.join(timeout=5)
        for t in self._threads[1:]:
            t.join(timeout=5)
        self._listener.close()
        with self._lock:
            for c in self._conns:
                c.close()
        self.path.unlink(missing_ok=True)

    def ops(self) -> list[str]:
        with self._lock:
            return [str(r.get("op")) for r in self.requests]

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name="agent-double")
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not self._answer(conn, line):
                    return

    def _answer(self, conn: socket.socket, line: bytes) -> bool:
        """Reply to one request line; False when the connection is finished."""
        request = json.loads(line)
        with self._lock:
            self.requests.append(request)
        mode = self.modes.get(str(request.get("op")), self.mode)
        if mode == "hang":
            self._stop.wait()
            return False
        if mode == "close":
            conn.close()
            return False
        if mode == "slow":
            time.sleep(self.delay)
        if mode == "garbage":
            reply = b"this is not json\n"
        elif mode == "error":
            reply = json.dumps({"ok": False, "error": self.error}).encode() + b"\n"
        else:
            reply = json.dumps({"ok": True, "result": self.result}).encode() + b"\n"
        try:
            conn.sendall(reply)
        except OSError:
            return False
        return True
