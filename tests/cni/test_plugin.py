"""The plugin against the CNI spec, in-process (plugin.run) with the agent double: every bad
input gets the spec's code and a message naming what is wrong; every command sends exactly the
documented request and reacts to each kind of answer as protocol.py's table says.

No root: CNI_NETNS is /proc/self/ns/net, a real network namespace anyone can name.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.cni import plugin, queue, spec
from tests.cni.agent_double import AgentDouble

NETNS = "/proc/self/ns/net"
IP = "10.244.1.5"
BASE_ENV = {
    "CNI_CONTAINERID": "c0ffee01",
    "CNI_NETNS": NETNS,
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1",
}


def prev_result(version: str = "1.0.0", netns: str = NETNS,
                address: str = f"{IP}/24") -> dict[str, Any]:
    """What ptp returns: the host veth first, the pod's interface (in the sandbox) second."""
    ip: dict[str, Any] = {"address": address, "gateway": "10.244.1.1", "interface": 1}
    if spec.version_key(version) < (1, 0, 0):
        ip["version"] = "6" if ":" in address else "4"
    return {"cniVersion": version,
            "interfaces": [{"name": "veth0a1b2c3d", "mac": "6a:00:00:00:00:01"},
                           {"name": "eth0", "mac": "6a:00:00:00:00:02", "sandbox": netns}],
            "ips": [ip], "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}


Conf = Callable[..., dict[str, Any]]


@pytest.fixture
def conf(agent: AgentDouble, tmp_path: Path) -> Conf:
    """A request configuration for ringlane pointing at the double; `prev=None` leaves out
    prevResult, `prev=True` puts in prev_result(version)."""

    def make(version: str = "1.0.0", prev: Any = True, **fields: Any) -> dict[str, Any]:
        c: dict[str, Any] = {"cniVersion": version, "name": "podnet", "type": "ringlane",
                             "agentSocket": str(agent.path), "stateDir": str(tmp_path / "st")}
        if prev is True:
            c["prevResult"] = prev_result(version)
        elif prev is not None:
            c["prevResult"] = prev
        c.update(fields)
        return c

    return make


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    def error(self, code: int, *fragments: str) -> dict[str, Any]:
        """Assert a spec error object with `code` whose msg contains every fragment."""
        assert self.rc == 1, (self.stdout, self.stderr)
        err: dict[str, Any] = self.output
        assert set(err) == {"cniVersion", "code", "msg", "details"}, err
        assert err["code"] == code, err
        for f in fragments:
            assert f in err["msg"], (f, err)
        return err


def invoke(command: str, config: dict[str, Any] | bytes | None, **env: str | None) -> Outcome:
    """One execution as a runtime would make it; env=None removes a variable."""
    environ = {"CNI_COMMAND": command, **BASE_ENV}
    for k, v in env.items():
        if v is None:
            environ.pop(k, None)
        else:
            environ[k] = v
    data = json.dumps(config).encode() if isinstance(config, dict) else (config or b"")
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    rc = plugin.run(environ, io.BytesIO(data), out, err)
    return Outcome(rc, out.getvalue(), err.getvalue(), time.monotonic() - start)


# -- environment ----------------------------------------------------------------------------


@pytest.mark.parametrize("var", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"])
@pytest.mark.parametrize("value", [None, ""])
def test_add_missing_env_var_is_code_4_naming_it(conf: Conf, var: str, value: str | None,
                                                 agent: AgentDouble) -> None:
    out = invoke("ADD", conf(), **{var: value})
    out.error(spec.INVALID_ENVIRONMENT, var, "missing or empty")
    assert agent.requests == []


@pytest.mark.parametrize("var", ["CNI_CONTAINERID", "CNI_IFNAME"])
def test_del_missing_env_var_is_code_4(conf: Conf, var: str) -> None:
    invoke("DEL", conf(), **{var: None}).error(spec.INVALID_ENVIRONMENT, var)


def test_missing_or_unknown_command_is_code_4(conf: Conf) -> None:
    out = invoke("", conf())
    out.error(spec.INVALID_ENVIRONMENT, "CNI_COMMAND")
    invoke("ATTACH", conf()).error(spec.INVALID_ENVIRONMENT, "CNI_COMMAND='ATTACH'")


@pytest.mark.parametrize(("var", "value", "why"), [
    ("CNI_CONTAINERID", "-leading-dash", "not a valid container ID"),
    ("CNI_CONTAINERID", "has space", "not a valid container ID"),
    ("CNI_IFNAME", "a-very-long-ifname", "longer than 15"),
    ("CNI_IFNAME", "eth/0", "'/'"),
    ("CNI_IFNAME", "..", "'.' or '..'"),
    ("CNI_ARGS", "K8S_POD_NAME", "not KEY=VALUE"),
])
def test_invalid_env_values_are_code_4(conf: Conf, var: str, value: str, why: str) -> None:
    invoke("ADD", conf(), **{var: value}).error(spec.INVALID_ENVIRONMENT, var, why)


def test_netns_that_does_not_exist_is_code_4(conf: Conf, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-netns")
    invoke("ADD", conf(), CNI_NETNS=missing).error(
        spec.INVALID_ENVIRONMENT, f"CNI_NETNS={missing} does not exist")


def test_netns_that_is_not_a_namespace_is_code_4(conf: Conf, tmp_path: Path) -> None:
    f = tmp_path / "plain-file"
    f.write_text("")
    invoke("ADD", conf(), CNI_NETNS=str(f)).error(
        spec.INVALID_ENVIRONMENT, f"CNI_NETNS={f} is not a network namespace")


# -- stdin ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "fragment"), [
    (b"{\"cniVersion\": \"1.0.0\",", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "JSON list, not an object"),
])
def test_undecodable_config_is_code_6(data: bytes, fragment: str) -> None:
    invoke("ADD", data).error(spec.DECODE_FAILURE, fragment)


def test_stdin_read_failure_is_code_5() -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError(5, "Input/output error")

    out = io.StringIO()
    rc = plugin.run({"CNI_COMMAND": "ADD", **BASE_ENV}, Broken(), out, io.StringIO())
    assert rc == 1
    err = json.loads(out.getvalue())
    assert err["code"] == spec.IO_FAILURE and "Input/output error" in err["msg"]


@pytest.mark.parametrize("version", ["0.2.0", "0.1.0", "1.2.0", "2.0.0", 1, None])
def test_unknown_cni_version_is_code_1(conf: Conf, version: Any) -> None:
    c = conf()
    c["cniVersion"] = version
    err = invoke("ADD", c).error(spec.INCOMPATIBLE_VERSION, "does not support")
    assert "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0" in err["details"]
    assert err["cniVersion"] == spec.LATEST


@pytest.mark.parametrize(("command", "version", "since"), [
    ("CHECK", "0.3.1", "0.4.0"), ("GC", "1.0.0", "1.1.0"), ("STATUS", "1.0.0", "1.1.0")])
def test_command_newer_than_config_version_is_code_1(conf: Conf, command: str, version: str,
                                                     since: str) -> None:
    err = invoke(command, conf(version)).error(
        spec.INCOMPATIBLE_VERSION, f"cniVersion {version} does not allow {command}", since)
    assert err["cniVersion"] == version  # errors speak the config's version


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("timeoutMs", "3s", 'timeoutMs must be an integer from 1 to 60000 (milliseconds), got "3s"'),
    ("timeoutMs", 0, "got 0"),
    ("timeoutMs", True, "got true"),
    ("failClosed", "yes", 'failClosed must be true or false, got "yes"'),
    ("agentSocket", "agent.sock", 'agentSocket must be an absolute path, got "agent.sock"'),
    ("agentSocket", "/" + "x" * 120, "longer than 107 bytes"),
    ("stateDir", 5, "stateDir must be an absolute path, got 5"),
    ("name", "", "'name' '' is missing or not a valid network name"),
])
def test_invalid_fields_of_ours_are_code_7(conf: Conf, field: str, value: Any,
                                           fragment: str) -> None:
    err = invoke("ADD", conf("0.4.0", **{field: value})).error(spec.INVALID_CONFIG, fragment)
    assert err["cniVersion"] == "0.4.0"  # errors speak the config's version


# -- prevResult -----------------------------------------------------------------------------


def _prev_without(key: str) -> dict[str, Any]:
    p = prev_result()
    del p[key]
    return p


@pytest.mark.parametrize(("prev", "fragment"), [
    (None, "ADD: network config has no prevResult"),
    ("a string", "prevResult is not a JSON object"),
    (_prev_without("interfaces"), "prevResult has no interfaces"),
    ({**prev_result(), "interfaces": []}, "prevResult has no interfaces"),
    (prev_result(netns="/run/netns/another-pod"),
     f"no interface in the sandbox CNI_NETNS={NETNS} (interfaces: veth0a1b2c3d@host, "
     "eth0@/run/netns/another-pod)"),
    (prev_result(address="fd00::5/64"),
     f"no IPv4 address on an interface in the sandbox CNI_NETNS={NETNS} "
     "(sandbox interfaces: eth0)"),
    (_prev_without("ips"), "no IPv4 address on an interface in the sandbox"),
    ({**prev_result(), "ips": [{"address": f"{IP}/24", "interface": 0}]},
     "no IPv4 address on an interface in the sandbox"),  # the host veth's, not the pod's
    ({**prev_result(), "ips": [{"address": f"{IP}/24", "interface": 7}]},
     "prevResult ips[0].interface 7 is not an index into interfaces (0..1)"),
    ({**prev_result(), "ips": [{"address": "10.244.1/24", "interface": 1}]},
     'prevResult ips[0].address "10.244.1/24" is not an IP address in CIDR notation'),
    ({**prev_result(), "ips": "10.244.1.5/24"}, "prevResult ips is not a list"),
])
def test_bad_prev_result_is_code_7(conf: Conf, agent: AgentDouble, prev: Any,
                                   fragment: str) -> None:
    invoke("ADD", conf(prev=prev)).error(spec.INVALID_CONFIG, fragment)
    assert agent.requests == []


def test_prev_result_sandbox_matches_the_same_namespace_by_another_path(
        conf: Conf, agent: AgentDouble) -> None:
    """/proc/<pid>/ns/net and /proc/self/ns/net name the same namespace (as /var/run/netns/x
    and /run/netns/x do): the plugin compares namespaces, not strings."""
    out = invoke("ADD", conf(prev=prev_result(netns=f"/proc/{os.getpid()}/ns/net")))
    assert out.rc == 0, out.stdout
    assert agent.requests[0]["ip"] == IP


def test_ipv6_first_then_ipv4_picks_the_ipv4(conf: Conf, agent: AgentDouble) -> None:
    p = prev_result()
    p["ips"] = [{"address": "fd00::5/64", "interface": 1}, {"address": f"{IP}/24",
                                                            "interface": 1}]
    assert invoke("ADD", conf(prev=p)).rc == 0
    assert agent.requests[0]["ip"] == IP


# -- VERSION --------------------------------------------------------------------------------


@pytest.mark.parametrize(("stdin", "echoed"), [
    (b'{"cniVersion": "1.0.0"}', "1.0.0"), (b'{"cniVersion": "0.4.0"}', "0.4.0"),
    (b"", "1.1.0"), (b"not json", "1.1.0")])
def test_version_output(stdin: bytes, echoed: str, agent: AgentDouble) -> None:
    out = invoke("VERSION", stdin, CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    assert out.rc == 0
    assert out.output == {"cniVersion": echoed,
                          "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    assert agent.requests == []  # never contacts the agent


# -- ADD ------------------------------------------------------------------------------------


def test_add_sends_the_documented_request_and_passes_prev_result_through(
        conf: Conf, agent: AgentDouble) -> None:
    c = conf()
    c["prevResult"]["someFutureKey"] = {"kept": True}
    out = invoke("ADD", c)
    assert out.rc == 0, out.stdout + out.stderr
    assert out.output == c["prevResult"]
    assert agent.requests == [{"op": "cni_add", "containerId": "c0ffee01", "ifName": "eth0",
                               "netns": NETNS, "ip": IP, "podNamespace": "default",
                               "podName": "web-1"}]
    assert out.stderr == ""


def test_add_without_pod_args_sends_null_pod_fields(conf: Conf, agent: AgentDouble) -> None:
    assert invoke("ADD", conf(), CNI_ARGS=None).rc == 0
    assert agent.requests[0]["podNamespace"] is None
    assert agent.requests[0]["podName"] is None


@pytest.mark.parametrize(("version", "ips_have_version"), [
    ("0.3.0", True), ("0.3.1", True), ("0.4.0", True), ("1.0.0", False), ("1.1.0", False)])
@pytest.mark.parametrize("prev_version", ["0.4.0", "1.0.0"])
def test_result_is_in_the_config_version_format(conf: Conf, version: str, prev_version: str,
                                                ips_have_version: bool) -> None:
    """0.3.x/0.4.0 results carry ips[].version, 1.x results do not; a prevResult in another
    version's format is converted, everything else passes through."""
    prev = prev_result(prev_version)
    out = invoke("ADD", conf(version, prev=prev))
    assert out.rc == 0, out.stdout
    result = out.output
    assert result["cniVersion"] == version
    assert ("version" in result["ips"][0]) is ips_have_version
    if ips_have_version:
        assert result["ips"][0]["version"] == "4"
    strip = {k: v for k, v in result.items() if k not in ("cniVersion", "ips")}
    assert strip == {k: v for k, v in prev.items() if k not in ("cniVersion", "ips")}
    assert {k: v for k, v in result["ips"][0].items() if k != "version"} == \
        {k: v for k, v in prev["ips"][0].items() if k != "version"}


def test_add_agent_down_fail_open_succeeds_with_prev_result(conf: Conf, tmp_path: Path) -> None:
    c = conf(agentSocket=str(tmp_path / "absent.sock"))
    out = invoke("ADD", c)
    assert out.rc == 0
    assert out.output == c["prevResult"]
    assert "agent not reachable" in out.stderr and "kernel path" in out.stderr


def test_add_agent_down_fail_closed_is_code_11(conf: Conf, tmp_path: Path) -> None:
    sock = tmp_path / "absent.sock"
    err = invoke("ADD", conf(agentSocket=str(sock), failClosed=True)).error(
        spec.TRY_AGAIN_LATER, f"agent not reachable at {sock}", "failClosed is true")
    assert "start ringlane-agent" in err["details"]


def test_add_agent_hang_is_bounded_by_timeout(conf: Conf, agent: AgentDouble) -> None:
    agent.mode = "hang"
    out = invoke("ADD", conf(timeoutMs=200))
    assert out.rc == 0 and out.output["cniVersion"] == "1.0.0"
    assert 0.2 <= out.seconds < 1.5
    assert "did not answer cni_add within 200 ms" in out.stderr
    invoke("ADD", conf(timeoutMs=200, failClosed=True)).error(
        spec.TRY_AGAIN_LATER, "did not answer cni_add within 200 ms")


def test_add_waits_for_a_slow_agent(conf: Conf, agent: AgentDouble) -> None:
    """The reply means "programmed": the plugin must not answer kubelet before it."""
    agent.mode, agent.delay = "slow", 0.3
    out = invoke("ADD", conf(failClosed=True))
    assert out.rc == 0 and out.seconds >= 0.3


def test_add_agent_closes_without_answer(conf: Conf, agent: AgentDouble) -> None:
    agent.mode = "close"
    invoke("ADD", conf(failClosed=True)).error(spec.TRY_AGAIN_LATER,
                                               "closed the connection without answering")
    assert invoke("ADD", conf()).rc == 0


def test_add_agent_error(conf: Conf, agent: AgentDouble) -> None:
    agent.mode, agent.error = "error", "ip 10.244.1.5 is outside this node's podCIDR"
    invoke("ADD", conf(failClosed=True)).error(
        spec.AGENT_REFUSED, f"refused to accelerate pod {IP}",
        "outside this node's podCIDR")
    out = invoke("ADD", conf())
    assert out.rc == 0 and "outside this node's podCIDR" in out.stderr


def test_add_agent_garbage_is_code_101_when_fail_closed(conf: Conf, agent: AgentDouble) -> None:
    agent.mode = "garbage"
    invoke("ADD", conf(failClosed=True)).error(spec.AGENT_BAD_REPLY, "is not JSON")
    assert invoke("ADD", conf()).rc == 0


# -- DEL ------------------------------------------------------------------------------------


def test_del_sends_cni_del_and_is_idempotent(conf: Conf, agent: AgentDouble) -> None:
    first = invoke("DEL", conf())
    second = invoke("DEL", conf(prev=None), CNI_NETNS="")  # containerd's second DEL
    assert (first.rc, first.stdout, second.rc, second.stdout) == (0, "", 0, "")
    assert agent.requests == [{"op": "cni_del", "containerId": "c0ffee01", "ifName": "eth0"}] * 2


def test_del_agent_down_is_queued_once_and_drained_once(conf: Conf, tmp_path: Path) -> None:
    c = conf(agentSocket=str(tmp_path / "absent.sock"))
    assert invoke("DEL", c).rc == 0
    out = invoke("DEL", conf(prev=None, agentSocket=c["agentSocket"]), CNI_NETNS="")
    assert out.rc == 0 and "queued" in out.stderr
    entries = queue.drain(c["stateDir"])
    assert [(e["op"], e["containerId"], e["ifName"]) for e in entries] == \
        [("cni_del", "c0ffee01", "eth0")]
    assert queue.drain(c["stateDir"]) == []


def test_del_agent_hang_is_queued(conf: Conf, agent: AgentDouble) -> None:
    agent.mode = "hang"
    c = conf(timeoutMs=100)
    assert invoke("DEL", c).rc == 0
    assert [e["containerId"] for e in queue.drain(c["stateDir"])] == ["c0ffee01"]


def test_del_agent_error_is_logged_and_succeeds(conf: Conf, agent: AgentDouble) -> None:
    agent.mode = "error"
    out = invoke("DEL", conf(failClosed=True))
    assert out.rc == 0 and "agent refused cni_del" in out.stderr
    assert queue.pending(conf()["stateDir"]) == []


def test_del_unqueueable_is_code_5_only_when_fail_closed(conf: Conf, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    c = conf(agentSocket=str(tmp_path / "absent.sock"), stateDir=str(blocker / "state"))
    out = invoke("DEL", c)
    assert out.rc == 0 and "could not be queued" in out.stderr
    c["failClosed"] = True
    invoke("DEL", c).error(spec.IO_FAILURE, f"could not be queued in {blocker}/state")


def test_del_ignores_a_bad_prev_result(conf: Conf, agent: AgentDouble) -> None:
    assert invoke("DEL", conf(prev={"interfaces": "junk"})).rc == 0
    assert agent.ops() == ["cni_del"]


# -- CHECK ----------------------------------------------------------------------------------


def test_check(conf: Conf, agent: AgentDouble, tmp_path: Path) -> None:
    out = invoke("CHECK", conf())
    assert (out.rc, out.stdout) == (0, "")
    assert agent.requests[0] == {"op": "cni_check", "containerId": "c0ffee01", "ifName": "eth0",
                                 "netns": NETNS, "ip": IP, "podNamespace": "default",
                                 "podName": "web-1"}
    invoke("CHECK", conf(prev=None)).error(spec.INVALID_CONFIG, "CHECK: network config has no "
                                                                "prevResult")
    agent.mode, agent.error = "error", "endpoint 10.244.1.5 registered but not programmed"
    invoke("CHECK", conf()).error(spec.AGENT_REFUSED, "not programmed")
    # The agent is an external dependency CHECK reports, whatever failClosed says.
    invoke("CHECK", conf(agentSocket=str(tmp_path / "absent.sock"))).error(
        spec.TRY_AGAIN_LATER, "cannot check pod 10.244.1.5", "agent not reachable")


# -- GC and STATUS (1.1.0) ------------------------------------------------------------------


def test_gc_sends_valid_attachments_in_our_field_names(conf: Conf, agent: AgentDouble) -> None:
    valid = [{"containerID": "a1", "ifname": "eth0"}, {"containerID": "b2", "ifname": "net1"}]
    out = invoke("GC", conf("1.1.0", prev=None, **{"cni.dev/valid-attachments": valid}),
                 CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    assert (out.rc, out.stdout) == (0, "")
    assert agent.requests == [{"op": "cni_gc", "valid": [{"containerId": "a1", "ifName": "eth0"},
                                                         {"containerId": "b2",
                                                          "ifName": "net1"}]}]


def test_gc_inputs(conf: Conf, agent: AgentDouble, tmp_path: Path) -> None:
    gc = "cni.dev/valid-attachments"
    assert invoke("GC", conf("1.1.0", **{gc: None})).rc == 0  # Go's empty slice
    assert agent.requests[-1] == {"op": "cni_gc", "valid": []}
    assert invoke("GC", conf("1.1.0", **{"cni.dev/attachments": [
        {"containerID": "a1", "ifname": "eth0"}]})).rc == 0  # libcni's alias
    assert agent.requests[-1]["valid"] == [{"containerId": "a1", "ifName": "eth0"}]
    invoke("GC", conf("1.1.0")).error(spec.INVALID_CONFIG, "no cni.dev/valid-attachments")
    invoke("GC", conf("1.1.0", **{gc: [{"containerID": "a1"}]})).error(
        spec.INVALID_CONFIG, f"{gc}[0] is not an object with string containerID and ifname")
    invoke("GC", conf("1.1.0", **{gc: []}), CNI_PATH=None).error(
        spec.INVALID_ENVIRONMENT, "CNI_PATH")
    down = str(tmp_path / "absent.sock")
    assert invoke("GC", conf("1.1.0", agentSocket=down, **{gc: []})).rc == 0
    invoke("GC", conf("1.1.0", agentSocket=down, failClosed=True, **{gc: []})).error(
        spec.TRY_AGAIN_LATER, "GC not done")
    agent.mode = "error"
    invoke("GC", conf("1.1.0", **{gc: []})).error(spec.AGENT_REFUSED, "refused GC")


def test_status(conf: Conf, agent: AgentDouble, tmp_path: Path) -> None:
    bare = {"CNI_CONTAINERID": None, "CNI_NETNS": None, "CNI_IFNAME": None, "CNI_PATH": None}
    out = invoke("STATUS", conf("1.1.0", prev=None), **bare)
    assert (out.rc, out.stdout) == (0, "")
    assert agent.ops() == ["status"]
    agent.mode = "error"  # it answered: it is there
    assert invoke("STATUS", conf("1.1.0", prev=None, failClosed=True), **bare).rc == 0
    down = str(tmp_path / "absent.sock")
    out = invoke("STATUS", conf("1.1.0", prev=None, agentSocket=down), **bare)
    assert out.rc == 0 and "ready anyway" in out.stderr
    invoke("STATUS", conf("1.1.0", prev=None, agentSocket=down, failClosed=True), **bare).error(
        spec.NOT_AVAILABLE, "agent not reachable", "cannot service ADD")
