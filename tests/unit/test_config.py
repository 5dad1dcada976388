"""Configuration: file < environment < flags, validated before anything on the node changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config, static_config
from agent.errors import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_are_sane() -> None:
    cfg = config.load({}, env={})
    assert (cfg.vni, cfg.vxlan_port, cfg.batch_size, cfg.tcp_mode) == (1, 4789, 64, "auto")
    assert cfg.pod_xdp_mode == "skb"  # generic mode keeps the pod's TSO


def test_precedence_file_env_flags() -> None:
    cfg = config.load({"vni": 5, "batchSize": 32}, env={"RINGLANE_VNI": "6"},
                      flags={"batch_size": "128", "vni": None})
    assert cfg.vni == 6 and cfg.batch_size == 128


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"vni": 0}, "vni"),
        ({"vni": 2**24}, "vni"),
        ({"vxlanPort": 70000}, "vxlanPort"),
        ({"batchSize": 0}, "batchSize"),
        ({"frames": 5000}, "frames"),
        ({"tcpMode": "fast"}, "tcpMode"),
        ({"podXdpMode": "hw"}, "podXdpMode"),
        ({"vxlanDevice": "a name that is far too long"}, "vxlanDevice"),
        ({"pinDir": "relative/path"}, "absolute"),
        ({"busyPoll": "maybe"}, "busyPoll"),
        ({"vni": True}, "vni"),
        ({"noSuchKey": 1}, "unknown configuration key 'noSuchKey'"),
    ],
)
def test_bad_values_are_named(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(values, env={})


def test_hardening_defaults_are_strict() -> None:
    cfg = config.load({}, env={})
    assert cfg.extra_vteps == () and cfg.pod_anti_spoofing and not cfg.detach_on_stop


@pytest.mark.parametrize(
    ("file_values", "env", "flags"),
    [
        ({"extraVteps": ["10.0.0.1", "10.0.0.2"]}, {}, {}),
        ({}, {"RINGLANE_EXTRA_VTEPS": " 10.0.0.1, 10.0.0.2,"}, {}),
        ({"extraVteps": ["192.0.2.9"]}, {}, {"extra_vteps": "10.0.0.1,10.0.0.2"}),
    ],
)
def test_extra_vteps_list_or_comma_separated(file_values: dict[str, object],
                                             env: dict[str, str],
                                             flags: dict[str, object]) -> None:
    cfg = config.load(file_values, env=env, flags=flags)
    assert cfg.extra_vteps == ("10.0.0.1", "10.0.0.2")


@pytest.mark.parametrize("bad", [["10.0.0.1", "nope"], "10.0.0.300", ["::1"]])
def test_extra_vteps_must_be_ipv4(bad: object) -> None:
    with pytest.raises(ConfigError, match="extraVteps"):
        config.load({"extraVteps": bad}, env={})


def test_env_value_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="RINGLANE_BATCH_SIZE"):
        config.load({}, env={"RINGLANE_BATCH_SIZE": "many"})


STATIC = """
node: n1
agent: {underlayInterface: ul0}
nodes:
  - {name: n1, ip: 192.168.250.1, podCIDR: 10.244.1.0/24}
  - {name: n2, ip: 192.168.250.2, podCIDR: 10.244.2.0/24}
endpoints:
  - {name: a, ip: 10.244.1.2, interface: rlv1}
"""


def test_static_cluster_parses(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(STATIC)
    c = static_config.load(f)
    assert c.this_node.name == "n1"
    assert [n.name for n in c.remote_nodes] == ["n2"]
    assert c.endpoints[0].host_ifname == "rlv1" and c.endpoints[0].mac == ""


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[1, 2]", "expected a mapping"),
        ("node: n9\nnodes: []", "not in the nodes list"),
        ("node: n1\nnodes: [{name: n1, ip: 1.2.3, podCIDR: 10.0.0.0/24}]", r"nodes\[0\]"),
        ("node: n1\nnodes: [{name: n1, ip: 1.2.3.4}]", "missing 'podCIDR'"),
        ("node: n1\nnodes: [{name: n1, ip: 1.2.3.4, podCIDR: 10.0.0.0/24}]\n"
         "endpoints: [{name: a, ip: 10.9.9.9, interface: x}]", "outside this node's podCIDR"),
        ("node: n1\nsurprise: 1", "unknown keys"),
        ("node: [", "not valid YAML"),
    ],
)
def test_static_cluster_errors(tmp_path: Path, doc: str, message: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(doc)
    with pytest.raises(ConfigError, match=message):
        static_config.load(f)


def test_missing_static_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        static_config.load(tmp_path / "absent.yaml")
