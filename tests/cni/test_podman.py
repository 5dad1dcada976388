"""A real runtime executing the plugin: podman with a CNI conflist that chains ringlane after
ptp. Needs podman with its CNI backend (podman 4; podman 5 dropped CNI for netavark) and an
image already present locally (the test never pulls)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cni.agent_double import AgentDouble
from tests.cni.conftest import DEBIAN_CNI_DIR
from tests.conftest import require_root

IMAGES = ("docker.io/library/busybox:latest", "docker.io/library/alpine:latest")


def test_podman_runs_a_container_through_the_chain(tmp_path: Path, plugin_dir: Path,
                                                   agent: AgentDouble) -> None:
    require_root()
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed (the chain is exercised by test_chain.py)")
    version = subprocess.run([podman, "version", "--format", "{{.Client.Version}}"],
                             capture_output=True, text=True).stdout.strip()
    if not version or int(version.split(".")[0]) >= 5:
        pytest.skip(f"podman {version or '?'} has no CNI network backend")
    image = next((i for i in IMAGES if subprocess.run([podman, "image", "exists", i])
                  .returncode == 0), None)
    if image is None:
        pytest.skip(f"none of {IMAGES} is present locally and the test does not pull")
    conf_dir = tmp_path / "cni"
    conf_dir.mkdir()
    conflist = {"cniVersion": "1.0.0", "name": "rl-podman", "plugins": [
        {"type": "ptp", "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.198.7.0/24"}]],
                  "dataDir": str(tmp_path / "ipam")}},
        {"type": "ringlane", "agentSocket": str(agent.path), "stateDir": str(tmp_path / "st"),
         "failClosed": True}]}
    (conf_dir / "rl-podman.conflist").write_text(json.dumps(conflist))
    containers_conf = tmp_path / "containers.conf"  # plugin dirs have no command-line flag
    containers_conf.write_text(
        "[network]\nnetwork_backend = \"cni\"\n"
        f"network_config_dir = \"{conf_dir}\"\n"
        f"cni_plugin_dirs = [\"{plugin_dir}\", \"{DEBIAN_CNI_DIR}\"]\n")
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    saved = forward.read_text()  # ptp turns forwarding on for the whole machine
    try:
        p = subprocess.run([podman, "run", "--rm", "--network", "rl-podman", image,
                            "ip", "-4", "addr"], capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                "CONTAINERS_CONF": str(containers_conf)})
    finally:
        forward.write_text(saved)
    assert p.returncode == 0, p.stderr
    assert agent.ops()[0] == "cni_add" and "cni_del" in agent.ops()
    assert agent.requests[0]["ip"] in p.stdout
