#!/usr/bin/env bash
# One command for the kind e2e: builds the image, creates the cluster (tests/e2e/kind-config.yaml),
# helm-installs the chart, checks traffic, link probes, a NetworkPolicy (ringlanectl in the
# agent pods), an agent restart and the uninstall, deletes the cluster. Needs docker, kind,
# helm and kubectl on PATH and a kernel with AF_XDP (6.6+).
#   tests/e2e/run-kind.sh                       everything, cluster deleted at the end
#   RINGLANE_E2E_KEEP=1 tests/e2e/run-kind.sh   keep the cluster (and reuse it next time)
set -euo pipefail
cd "$(dirname "$0")/../.."
export RINGLANE_E2E_KIND=1
exec .venv/bin/python -m pytest tests/e2e/test_kind.py -v -p no:cacheprovider "$@"
