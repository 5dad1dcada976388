# Ringlane's node image: ringlane-agent, ringlanectl, and the CNI plugin installer
# (python -m agent.cni_install), as the Helm chart in deploy/helm/ringlane runs them.
#
#   docker build -t ringlane:dev .          (or: podman build -t ringlane:dev .)
#
# Two stages on Debian 12: `build` compiles the ring core (cffi) and the XDP programs (clang)
# into a wheel and installs it with every dependency into a virtualenv at /opt/ringlane;
# the runtime stage gets that virtualenv and only the shared libraries it loads.

ARG DEBIAN=bookworm

FROM debian:${DEBIAN} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      gcc clang llvm libbpf-dev libxdp-dev libelf-dev zlib1g-dev pkg-config \
      python3 python3-venv python3-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# dependencies first: a source change does not download them again
COPY pyproject.toml setup.py README.md ./
RUN python3 -m venv /opt/ringlane \
 && /opt/ringlane/bin/pip install -q --no-cache-dir --upgrade pip setuptools wheel cffi
COPY bpf/ bpf/
COPY agent/ agent/
RUN /opt/ringlane/bin/pip wheel -q --no-cache-dir --no-deps -w /wheels . \
 && /opt/ringlane/bin/pip install -q --no-cache-dir /wheels/ringlane-*.whl \
 && /opt/ringlane/bin/pip uninstall -q -y pip setuptools wheel \
 && cd / && /opt/ringlane/bin/python -c "import agent.xdp._ringcore, agent.xdp._bpfobj" \
 && ls /opt/ringlane/lib/python3*/site-packages/agent/xdp/bpf/from_pod.o \
      /opt/ringlane/lib/python3*/site-packages/agent/xdp/bpf/from_wire.o

FROM debian:${DEBIAN}-slim
ARG DEBIAN_FRONTEND=noninteractive
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ringlane" \
      org.opencontainers.image.description="Ringlane node agent: a Kubernetes CNI accelerator (XDP, AF_XDP, VXLAN)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.ringlane.chart="deploy/helm/ringlane"
# python3: the agent and, bundled by agent/cni_install.py, the CNI plugin's interpreter on the
# host; libbpf1, libxdp1: the loader; iproute2: operators' `ip`/`tc` in the pod; mount and
# coreutils (stat) come with the base: the chart's bpffs init container uses them.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3 libbpf1 libxdp1 iproute2 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
COPY --from=build /opt/ringlane /opt/ringlane
ENV PATH=/opt/ringlane/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN ringlane-agent --version \
 && python -c "import agent.cni_install, agent.xdp._ringcore, agent.xdp._bpfobj"
ENTRYPOINT ["ringlane-agent"]
