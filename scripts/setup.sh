#!/usr/bin/env bash
# Set up a fresh Debian 12 (bookworm) machine, as root, to build, run and test Ringlane.
# Idempotent: packages already present are not reinstalled, the virtualenv is reused.
#   scripts/setup.sh            apt packages + .venv + editable install (with dev tools)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # build: ring core (cffi), XDP programs (clang -target bpf)
  gcc clang llvm libbpf-dev libxdp-dev libelf-dev zlib1g-dev pkg-config
  python3 python3-venv python3-dev
  # sanitizer and libFuzzer runtimes for the native tests
  libclang-rt-14-dev
  # the node: netlink tools the tests and demo use, CNI plugins to chain with
  iproute2 iputils-ping util-linux ethtool bpftool containernetworking-plugins
  # nft stands in for kube-proxy's NAT in the policy tests; modprobe loads nf_conntrack
  nftables kmod
  # traffic for the demo, tests and benchmarks
  iperf3 sockperf netsniff-ng
  # a real container runtime for the CNI chain (podman 4 still has the CNI backend)
  podman runc busybox-static
  # base images for the image build test (no registry here: debootstrap makes them)
  debootstrap
)

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages; Ringlane's tests need root)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
echo "setup.sh: ready (.venv/bin/ringlane, .venv/bin/ringlane-agent, .venv/bin/pytest)"
