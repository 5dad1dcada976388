"""Building the API client, and the rule that only agent/k8s imports `kubernetes`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from kubernetes.config import incluster_config

from agent.errors import ConfigError, RinglaneError
from agent.k8s import KubeConfigError, kube_client
from tests.kubeapi.server import FakeKubeAPI

pytestmark = pytest.mark.unit
AGENT = Path(__file__).resolve().parents[2] / "agent"


def test_kubeconfig_file(kubeapi: FakeKubeAPI, kubeconfig: Path) -> None:
    before = kubeconfig.read_text()
    cfg = kube_client(kubeconfig).configuration
    assert cfg.host == kubeapi.url
    assert cfg.retries == 1 and cfg.keep_alive
    assert kubeconfig.read_text() == before  # never written back


def test_in_cluster_service_account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("sa-token")
    ca.write_text("not checked until a TLS handshake")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    cfg = kube_client(None).configuration
    assert cfg.host == "https://10.96.0.1:443"
    assert cfg.ssl_ca_cert == str(ca)


def test_unusable_configuration_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="kubeconfig") as err:
        kube_client(tmp_path / "missing")
    assert isinstance(err.value, ConfigError) and isinstance(err.value, RinglaneError)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # in a pod, no token
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "none"))
    with pytest.raises(KubeConfigError, match="service account"):
        kube_client(None)


def test_only_agent_k8s_imports_kubernetes() -> None:
    offenders = []
    for path in AGENT.rglob("*.py"):
        if (AGENT / "k8s") in path.parents:
            continue
        for n in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and not n.level:
                names = [n.module or ""]
            else:
                continue
            if any(name == "kubernetes" or name.startswith("kubernetes.") for name in names):
                offenders.append(f"{path.relative_to(AGENT.parent)}:{n.lineno}")
    assert offenders == [], "import kubernetes only in agent/k8s (use ClusterState)"
