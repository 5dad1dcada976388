"""ringlanectl (agent/ctl.py) in-process against a real server: output shapes and exit codes
(0 ok, 1 refused by the agent, 2 usage or bad file, 3 agent unreachable)."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import ctl
from agent.api.backend import FlowRecord
from agent.api.server import ApiServer, TcpListener
from agent.errors import RinglaneError
from agent.policy.model import Direction
from tests.api.certs import CA
from tests.api.memory_backend import MemoryBackend

pytestmark = pytest.mark.unit

POLICIES = textwrap.dedent("""\
    name: web
    namespace: shop
    podSelector: {matchLabels: {app: web}}
    ingress:
      - from: [{podSelector: {matchLabels: {app: shop}}}]
        ports: [{port: 80}, {protocol: ICMP}]
    ---
    name: dns
    namespace: shop
    policyTypes: [Egress]
    egress:
      - to: [{ipBlock: {cidr: 10.96.0.10/32}}]
        ports: [{protocol: UDP, port: 53}]
    """)


class Ctl:
    """Runs ringlanectl against one socket and keeps what it printed."""

    def __init__(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.sock = sock
        self.capsys = capsys
        self.out = self.err = ""

    def __call__(self, *argv: str, socket_arg: bool = True) -> int:
        code = ctl.run([*(["--socket", str(self.sock)] if socket_arg else []), *argv])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code

    def json(self, *argv: str) -> Any:
        assert self(*argv, "-o", "json") == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def run(server: ApiServer, capsys: pytest.CaptureFixture[str]) -> Ctl:
    return Ctl(server.unix_path, capsys)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICIES)
    return path


def test_status(run: Ctl) -> None:
    assert run("status") == 0
    assert "node-a" in run.out and "yes" in run.out
    st = run.json("status")
    assert isinstance(st, dict)
    assert list(st) == ["node", "ready", "version", "details"]
    assert st["ready"] is True
    assert st["details"]["reconcile"] == {"passes": 3, "failed": {}}


def test_endpoints(run: Ctl) -> None:
    assert run("endpoints") == 0
    lines = run.out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "IP", "HOST-IFACE", "SLOT",
                                "INGRESS-POLICIES", "EGRESS-POLICIES"]
    assert lines[1].split()[:3] == ["shop", "web-1", "10.244.1.10"]
    eps = run.json("endpoints")
    assert isinstance(eps, list)
    assert list(eps[0]) == ["name", "namespace", "ip", "hostIfname", "slot", "labels",
                            "ingressPolicies", "egressPolicies", "counters"]
    assert eps[0]["counters"]["drop_policy"] == 1 and eps[0]["slot"] == 1
    assert [e["ip"] for e in run.json("endpoints", "shop/web-1")] == ["10.244.1.10"]
    assert [e["name"] for e in run.json("endpoints", "10.244.1.11")] == ["0123456789ab"]
    assert run("endpoints", "10.9.9.9") == 1
    assert "NOT_FOUND" in run.err


def test_policy_apply_list_delete(run: Ctl, policy_file: Path) -> None:
    assert run("policy", "apply", "-f", str(policy_file)) == 0
    assert "applied 2 policies: shop/web, shop/dns" in run.out
    assert run("policy", "list") == 0
    assert run.out.splitlines()[0].split() == ["NAMESPACE", "NAME", "ORIGIN", "TYPES",
                                               "INGRESS", "EGRESS", "PODS"]
    assert "app=web" in run.out
    docs = run.json("policy", "list")
    assert isinstance(docs, list)
    assert [(d["namespace"], d["name"], d["origin"]) for d in docs] == [
        ("shop", "dns", "api"), ("shop", "web", "api")]
    assert docs[1]["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"app": "shop"}}}],
                                   "ports": [{"protocol": "TCP", "port": 80},
                                             {"protocol": "ICMP"}]}]
    assert docs[0]["policyTypes"] == ["Egress"]
    assert run.json("policy", "list", "-n", "other") == []
    result = run.json("policy", "delete", "shop/dns")
    assert isinstance(result, dict)
    assert result["deleted"] == ["shop/dns"] and result["revision"] > 0
    assert [d["name"] for d in run.json("policy", "list")] == ["web"]


def test_policy_list_yaml_applies_again(run: Ctl, policy_file: Path, tmp_path: Path) -> None:
    assert run("policy", "apply", "-f", str(policy_file)) == 0
    assert run("policy", "list", "-o", "yaml") == 0
    listed = tmp_path / "listed.yaml"
    listed.write_text(run.out)
    before = run.json("policy", "list")
    assert run("policy", "apply", "-f", str(listed), "-o", "json") == 0
    assert json.loads(run.out)["applied"] == ["shop/dns", "shop/web"]
    assert run.json("policy", "list") == before


def test_policy_file_errors_exit_2_with_the_path(run: Ctl, tmp_path: Path,
                                                 policy_file: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICIES + "---\nname: x\nnamespace: shop\ningress:\n- from:\n"
                   "  - podSelectr: {}\n")
    assert run("policy", "apply", "-f", str(bad)) == 2
    assert run.err.strip() == (f"ringlanectl: {bad}: document 3: ingress[0].from[0]: unknown "
                               "key 'podSelectr' (did you mean 'podSelector'?)")
    bad.write_text("name: x\nnamespace: shop\ningress: [{ports: [{port: 90, endPort: 80}]}]\n")
    assert run("policy", "apply", "-f", str(bad)) == 2
    assert f"{bad}: document 1: ingress[0].ports[0].endPort: 80 is below port 90" in run.err
    assert run("policy", "apply", "-f", str(tmp_path / "missing.yaml")) == 2
    assert "No such file" in run.err
    assert run("policy", "apply", "-f", str(policy_file), "-f", str(policy_file)) == 2
    assert "shop/web is also in" in run.err
    assert run.json("policy", "list") == []  # nothing was applied


def test_agent_refusals_exit_1(run: Ctl, backend: MemoryBackend) -> None:
    assert run("policy", "delete", "shop/nope") == 1
    assert run.err.startswith("ringlanectl: the agent refused: NOT_FOUND: no API policy shop/nope")
    backend.fail = RinglaneError("data path not ready yet")
    assert run("stats") == 1  # UNAVAILABLE from the agent itself: it was reached
    assert run.err.strip() == "ringlanectl: the agent refused: UNAVAILABLE: data path not ready yet"


def test_no_answer_in_time_exits_3_outcome_unknown(run: Ctl, backend: MemoryBackend) -> None:
    backend.stall = 1.0
    assert run("--timeout", "0.2", "status") == 3
    assert "no answer from the agent in time" in run.err
    assert "may or may not have been made" in run.err


def test_usage_errors_exit_2(run: Ctl) -> None:
    assert run() == 2
    assert run("policy", "delete", "no-slash") == 2
    assert "NAMESPACE/NAME" in run.err
    assert run("stats", "-o", "yaml") == 2
    assert run("frobnicate") == 2
    assert run("--help") == 0
    assert "Exit codes" in run.out


def test_unreachable_agent_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, sock_dir: Path) -> None:
    missing = Ctl(tmp_path / "nope.sock", capsys)
    assert missing("status") == 3
    assert f"no agent socket at {tmp_path / 'nope.sock'}" in missing.err
    assert "may not be running" in missing.err
    monkeypatch.setenv(ctl.SOCKET_ENV, str(tmp_path / "env.sock"))
    assert missing("status", socket_arg=False) == 3
    assert str(tmp_path / "env.sock") in missing.err
    # a socket file nobody listens on (an agent that died)
    dead = sock_dir / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    try:
        run = Ctl(dead, capsys)
        assert run("stats") == 3
        assert run.err.startswith(f"ringlanectl: cannot reach the agent at unix:{dead}: ")
        assert "is the agent running?" in run.err
    finally:
        s.close()


def test_socket_from_environment(server: ApiServer, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ctl.SOCKET_ENV, str(server.unix_path))
    run = Ctl(server.unix_path, capsys)
    assert run("status", socket_arg=False) == 0


def test_stats_and_links(run: Ctl) -> None:
    st = run.json("stats")
    assert isinstance(st, dict)
    assert list(st) == ["node", "core", "xdp", "endpoints"]
    assert st["core"]["ring_fill"] == 7
    assert st["endpoints"][0] == {"ip": "10.244.1.10", "counters": {
        "drop_policy": 1, "rx_packets": 10, "tx_packets": 12}}
    assert run("stats") == 0 and "ring_fill" in run.out
    links = run.json("links")
    assert isinstance(links, list)
    assert list(links[0]) == ["peerNode", "peerIp", "sent", "received", "lossRatio",
                              "rttLastUs", "rttMinUs", "rttAvgUs", "rttMaxUs", "jitterUs",
                              "lastReplyAgeS"]
    assert links[0]["lastReplyAgeS"] == 0.4 and links[1]["lastReplyAgeS"] is None
    assert run("links") == 0
    assert "never" in run.out and "10.0%" in run.out


def _record(i: int) -> FlowRecord:
    return FlowRecord(node="node-a", ts_ns=i, src=IPv4Address("10.244.1.10"),
                      dst=IPv4Address("10.96.0.10"), sport=5353, dport=53, protocol=17,
                      verdict="allow", direction=Direction.EGRESS, point="from_pod", length=80)


def test_flows_json_lines(run: Ctl, backend: MemoryBackend) -> None:
    def produce() -> None:
        while not backend.subscriptions:
            time.sleep(0.01)
        for i in range(3):
            backend.publish(_record(i))

    threading.Thread(target=produce, daemon=True).start()
    assert run("flows", "--count", "3", "-o", "json") == 0
    lines = [json.loads(line) for line in run.out.splitlines()]
    assert [r["tsNs"] for r in lines] == [0, 1, 2]
    assert list(lines[0]) == ["node", "tsNs", "src", "dst", "sport", "dport", "protocol",
                              "verdict", "direction", "point", "length"]
    assert (lines[0]["verdict"], lines[0]["direction"], lines[0]["point"]) == (
        "allow", "egress", "from_pod")


def test_flows_reports_lost_records(run: Ctl, backend: MemoryBackend) -> None:
    backend.flow_gate.clear()  # the agent side cannot drain: records overflow the queue

    def produce() -> None:
        while not backend.subscriptions:
            time.sleep(0.01)
        for i in range(50):
            backend.publish(_record(i))
        backend.flow_gate.set()

    threading.Thread(target=produce, daemon=True).start()
    assert run("flows", "--queue-size", "4", "--seconds", "1.5") == 0
    assert "# 46 records lost so far" in run.out
    assert run.out.splitlines()[-1] == "# 4 records, 46 lost"


def test_flows_ends_after_seconds_on_a_quiet_node(run: Ctl) -> None:
    start = time.monotonic()
    assert run("flows", "--seconds", "0.3", "-o", "json") == 0
    assert run.out == ""
    assert time.monotonic() - start < 5


def test_over_tcp_with_mutual_tls(backend: MemoryBackend, sock_dir: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    ca = CA(tmp_path, "ca")
    srv_pair, cli = ca.issue("agent", server=True), ca.issue("admin", server=False)
    tcp = TcpListener("127.0.0.1:0", srv_pair.cert, srv_pair.key, ca.path)
    with ApiServer(backend, unix_path=sock_dir / "api.sock", tcp=tcp) as srv:
        run = Ctl(srv.unix_path, capsys)
        address = f"127.0.0.1:{srv.tcp_port}"
        tls = ["--tls-cert", str(cli.cert), "--tls-key", str(cli.key), "--tls-ca", str(ca.path)]
        assert run("--address", address, *tls, "status", socket_arg=False) == 0, run.err
        assert run("--address", address, "status", socket_arg=False) == 2
        assert "--tls-cert, --tls-key and --tls-ca" in run.err
        wrong = ["--tls-cert", str(cli.cert), "--tls-key", str(cli.key), "--tls-ca",
                 str(cli.cert)]  # not the CA of the agent's certificate
        assert run("--address", address, *wrong, "status", socket_arg=False) == 3
        assert run("status", *tls) == 2  # --tls-* without --address
        missing = ["--tls-cert", str(tmp_path / "x"), "--tls-key", str(cli.key), "--tls-ca",
                   str(ca.path)]
        assert run("--address", address, *missing, "status", socket_arg=False) == 2
        assert "No such file" in run.err


def test_policy_list_yaml_is_documents(run: Ctl, policy_file: Path) -> None:
    assert run("policy", "apply", "-f", str(policy_file)) == 0
    assert run("policy", "list", "-o", "yaml") == 0
    docs = list(yaml.safe_load_all(run.out))
    assert [d["name"] for d in docs] == ["dns", "web"]
