"""A real runtime executing the plugin: podman with a CNI conflist that chains ringlane after
ptp. Needs podman with its CNI backend (podman 4; podman 5 dropped CNI for netavark). There is
no registry here: the image is imported from a busybox-static root filesystem the test builds,
and removed afterwards."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cni.agent_double import AgentDouble
from tests.cni.conftest import DEBIAN_CNI_DIR
from tests.conftest import require_root

IMAGE = "localhost/ringlane-test-busybox:latest"
BUSYBOX = Path("/bin/busybox")


def _lower_limits() -> None:
    """runc copies podman's limits into the container; this sandbox refuses raising them to
    the host's (very high) nofile/nproc, so start podman with ordinary ones."""
    for limit in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC):
        resource.setrlimit(limit, (4096, 4096))


def _import_image(podman: str, tmp_path: Path) -> None:
    """A one-binary image: busybox-static and the applets the test runs."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "ip"):
        (root / "bin" / applet).symlink_to("busybox")
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
    subprocess.run([podman, "import", str(tar), IMAGE], check=True, capture_output=True,
                   timeout=120)


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
    if not BUSYBOX.is_file() or b"ELF" not in BUSYBOX.read_bytes()[:4]:
        pytest.skip(f"{BUSYBOX} missing (Debian package busybox-static)")
    _import_image(podman, tmp_path)
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
        p = subprocess.run([podman, "--runtime", "runc", "run", "--rm", "--network",
                            "rl-podman", IMAGE,
                            "ip", "-4", "addr"], capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                "CONTAINERS_CONF": str(containers_conf)},
                           preexec_fn=_lower_limits)
    finally:
        forward.write_text(saved)
        subprocess.run([podman, "rmi", "-f", IMAGE], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert agent.ops()[0] == "cni_add" and "cni_del" in agent.ops()
    assert agent.requests[0]["ip"] in p.stdout
