"""The Dockerfile, built for real with podman, and what the chart runs from the image.

There is no container registry here, so the Dockerfile's base images (debian:bookworm and
debian:bookworm-slim) are made locally: a debootstrap'ed minbase root filesystem, imported
with `podman import` under both names (when they are not in podman's storage already). The
build runs without layer cache (`--layers=false`: nothing left behind but the image, removed
afterwards). Measured here: debootstrap 25 s, import 5 s, build about 60 s.

The build reaches the Debian archive and PyPI through the host's network, so pip inside the
build is given the host's CA bundle (as the host's own pip is) through a read-only mount; the
Dockerfile itself stays as a user runs it.

Needs root, podman, runc, and debootstrap unless the base images exist; skipped, with the
reason, otherwise. RINGLANE_KEEP_IMAGES=1 keeps the images for inspection.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/ringlane:image-test"
BASES = ("docker.io/library/debian:bookworm", "docker.io/library/debian:bookworm-slim")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _limits() -> None:
    """runc copies podman's limits into the container; this sandbox refuses raising them to
    the host's (very high) nofile/nproc, so podman starts with ordinary ones."""
    for limit in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC):
        resource.setrlimit(limit, (4096, 4096))


def podman(*args: str, timeout: float = 120,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                       preexec_fn=_limits, check=False)
    if check and p.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} failed ({p.returncode}):\n"
                    f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def _exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


@pytest.fixture(scope="module")
def base_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    require_root()
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package {tool})")
    made = [b for b in BASES if not _exists(b)]
    if made:
        if shutil.which("debootstrap") is None:
            pytest.skip("no debian:bookworm image in podman's storage and no debootstrap to "
                        "make one (apt-get install debootstrap)")
        rootfs = tmp_path_factory.mktemp("rootfs") / "bookworm"
        p = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs)],
                           capture_output=True, text=True, timeout=600, check=False)
        if p.returncode != 0:
            pytest.skip(f"debootstrap could not fetch bookworm: {p.stderr.strip()[-300:]}")
        tar = rootfs.parent / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True,
                       timeout=300)
        shutil.rmtree(rootfs, ignore_errors=True)
        podman("import", str(tar), BASES[0], timeout=300)
        for other in BASES[1:]:
            podman("tag", BASES[0], other)
        tar.unlink()
    try:
        yield
    finally:
        if made and os.environ.get("RINGLANE_KEEP_IMAGES") != "1":
            podman("rmi", *made, check=False)


@pytest.fixture(scope="module")
def image(base_images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    mounts: list[str] = []
    if HOST_CA.is_file():
        conf = tmp_path_factory.mktemp("pip") / "pip.conf"
        conf.write_text("[global]\ncert = /tmp/host-ca.crt\n")
        mounts = ["-v", f"{HOST_CA}:/tmp/host-ca.crt:ro", "-v", f"{conf}:/etc/pip.conf:ro"]
    podman("build", "--runtime", "runc", "--layers=false", "--network=host", *mounts,
           "-t", IMAGE, str(ROOT), timeout=540)
    try:
        yield IMAGE
    finally:
        if os.environ.get("RINGLANE_KEEP_IMAGES") != "1":
            podman("rmi", "-f", IMAGE, check=False)


def _version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


@pytest.mark.timeout(1200)
def test_image_runs_the_agent(image: str) -> None:
    p = podman("run", "--rm", "--runtime", "runc", "--network=none", image, "--version")
    assert p.stdout.strip() == f"ringlane-agent {_version()}"
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    config = info["Config"]
    assert config["Entrypoint"] == ["ringlane-agent"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "ringlane"
    assert labels["org.opencontainers.image.version"] == _version()
    # what the chart runs in the image besides the agent
    p = podman("run", "--rm", "--runtime", "runc", "--network=none", "--entrypoint", "sh",
               image, "-c", "ringlanectl --help >/dev/null && stat -f -c %T / && "
               "command -v mount ldd test ip && python -m agent.cni_install --help")
    assert "announce-uninstall" in p.stdout


@pytest.mark.timeout(1200)
def test_plugin_installed_from_the_image_runs_on_this_host(image: str,
                                                           tmp_path: Path) -> None:
    """The chart's CNI container bundles the image's interpreter with the plugin: the result
    must run on a host whose Python and libraries are not the image's (this one's are not)."""
    host = tmp_path / "node"
    (host / "bin").mkdir(parents=True)
    (host / "net.d").mkdir()
    kindnet = {"cniVersion": "0.3.1", "name": "kindnet",
               "plugins": [{"type": "ptp", "ipam": {"type": "host-local"}}]}
    (host / "net.d" / "10-kindnet.conflist").write_text(json.dumps(kindnet))
    # the same path inside and outside, as the chart mounts the host's directories
    podman("run", "--rm", "--runtime", "runc", "--network=none", "-v", f"{host}:{host}",
           "--entrypoint", "python", image, "-m", "agent.cni_install", "install",
           f"--cni-bin-dir={host / 'bin'}", f"--cni-conf-dir={host / 'net.d'}")
    doc = json.loads((host / "net.d" / "10-kindnet.conflist").read_text())
    assert [p["type"] for p in doc["plugins"]] == ["ptp", "ringlane"]
    p = subprocess.run(["env", "-i", "CNI_COMMAND=VERSION", str(host / "bin" / "ringlane")],
                       input=b'{"cniVersion": "1.0.0"}', capture_output=True, timeout=30,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert "1.1.0" in json.loads(p.stdout)["supportedVersions"]
    size = sum(f.stat().st_size for f in (host / "bin").rglob("*") if f.is_file())
    assert size < 40 * 2**20  # copied to every node
