"""The Helm chart, rendered by the real Helm engine (helm-python-sdk embeds Helm v4), every
object validated against the Kubernetes OpenAPI schemas (kubernetes-validate), and the wiring
between the chart and the code it runs checked against that code's own parsers.

Also keeps two generated files in sync: deploy/daemonset.yaml (the default render, without
hooks, for `kubectl apply`) and the README's Configuration table (from values.schema.json).
Regenerate both after changing the chart:

    .venv/bin/python -m tests.unit.test_chart --write
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cni_install, config
from agent import main as agent_main

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ringlane"
STATIC = ROOT / "deploy" / "daemonset.yaml"
README = ROOT / "README.md"
RELEASE, NAMESPACE = "ringlane", "kube-system"
TABLE_START, TABLE_END = "<!-- values-table:start -->", "<!-- values-table:end -->"
CAPABILITIES = {"NET_ADMIN", "NET_RAW", "BPF", "PERFMON", "SYS_ADMIN", "IPC_LOCK", "SYS_RESOURCE"}
# Chart defaults that differ from agent/config.py's, and why.
CHART_OVERRIDES = {
    "hugepages": False,  # in a pod, huge pages need a hugepages-2Mi limit (else SIGBUS)
    "logFormat": "json",  # auto means json without a terminal anyway; say it
}
# Helm's install order, for the kinds this chart has (kubectl apply follows the file).
KIND_ORDER = ["ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role",
              "RoleBinding", "Service", "DaemonSet", "Job", "ServiceMonitor"]

Obj = dict[str, Any]


def _helm() -> Any:
    try:
        import helm_python
    except ImportError:  # pragma: no cover - dev dependency
        pytest.skip("helm-python-sdk is not installed (pip install -e '.[dev]')")
    return helm_python


def render(values: Obj | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> dict[str, str]:
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        out: dict[str, str] = chart.render(values or {}, name=name, namespace=namespace,
                                           is_install=True)
    return out


def split_docs(text: str) -> list[str]:
    return [d.strip("\n") for d in re.split(r"^---\s*$", text, flags=re.M) if d.strip()]


def objects(manifests: dict[str, str], *, hooks: bool = True) -> list[Obj]:
    out = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in split_docs(text):
            obj = yaml.safe_load(doc)
            if not obj:
                continue
            is_hook = "helm.sh/hook" in (obj["metadata"].get("annotations") or {})
            if hooks or not is_hook:
                out.append(obj)
    return out


def find(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    hits = [o for o in objs if o["kind"] == kind and (name is None or
                                                      o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"{kind} {name}: {len(hits)} objects"
    return hits[0]


def pod_spec(objs: list[Obj]) -> Obj:
    spec: Obj = find(objs, "DaemonSet")["spec"]["template"]["spec"]
    return spec


def container(spec: Obj, name: str) -> Obj:
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name}")


# -- several values sets, every object valid for Kubernetes -------------------------------

EVERYTHING_ON: Obj = {
    "fullnameOverride": "rl",
    "image": {"repository": "registry.example/ringlane", "tag": "dev", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "pull"}],
    "agent": {"config": {"hugepages": True, "tcpMode": "ring", "busyPoll": True, "cpu": 3,
                         "extraVteps": ["192.0.2.10", "192.0.2.11"], "detachOnStop": True,
                         "underlayInterface": "eth1", "frames": 65536, "ringSize": 4096},
              "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                            "limits": {"memory": "1Gi", "hugepages-2Mi": "256Mi"}},
              "hostPID": True, "extraArgs": ["--batch-size", "128"],
              "extraEnv": [{"name": "RINGLANE_VNI", "value": "7"}]},
    "cni": {"chainTarget": "kindnet", "failClosed": True, "timeoutMs": 500,
            "hostPython": "/usr/bin/python3", "interval": 0.5},
    "metrics": {"serviceMonitor": {"enabled": True, "interval": "15s",
                                   "labels": {"release": "prometheus"}}},
    "updateStrategy": {"maxUnavailable": "25%"},
    "podAnnotations": {"team": "net"}, "podLabels": {"tier": "node"},
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "ringlane.io/disabled", "operator": "DoesNotExist"}]}]}}},
}
MINIMAL: Obj = {
    "uninstall": {"cleanupNodes": False}, "bpffs": {"mount": False},
    "rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"},
    "metrics": {"podAnnotations": False}, "tolerations": [], "nodeSelector": {},
}
CUSTOM_PATHS: Obj = {
    "cni": {"binDir": "/home/kubernetes/bin", "confDir": "/etc/cni/custom.d"},
    "agent": {"config": {"runDir": "/var/run/rl", "pinDir": "/sys/fs/bpf/rl2",
                         "cniStateDir": "/var/lib/rl/cni", "stateDir": "/var/lib/rl2",
                         "healthPort": 19965},
              "netnsDir": "/var/run/netns"},
}
API_TLS: Obj = {
    "agent": {"config": {"apiListen": "0.0.0.0:9966", "flowSampleEvery": 1,
                         "probeIntervalMs": 100}},
    "api": {"tls": {"secretName": "ringlane-api-tls"}},
}
NO_NETWORK_POLICY: Obj = {"agent": {"config": {"networkPolicy": False, "flowSampleEvery": 0,
                                               "probeIntervalMs": 0}}}
VALUE_SETS = {"default": {}, "everything-on": EVERYTHING_ON, "minimal": MINIMAL,
              "custom-paths": CUSTOM_PATHS, "api-tls": API_TLS,
              "no-network-policy": NO_NETWORK_POLICY}


def _kube_versions() -> list[str]:
    kv = pytest.importorskip("kubernetes_validate")
    return ["1.29.0", str(kv.latest_version())]  # the chart's kubeVersion floor, and newest


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_object_is_valid_kubernetes(values: Obj) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    objs = objects(render(values))
    assert {o["kind"] for o in objs} >= {"DaemonSet", "ConfigMap"}
    for version in _kube_versions():
        for obj in objs:
            if obj["apiVersion"].startswith("monitoring.coreos.com/"):
                check_service_monitor(obj)
                continue
            try:  # strict: an unknown field (a typo in a template) is an error too
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on {version}: "
                            f"{exc.message} at {list(exc.path)}")


def check_service_monitor(obj: Obj) -> None:
    """No OpenAPI schema ships for the CRD: the fields prometheus-operator requires."""
    assert obj["kind"] == "ServiceMonitor" and obj["apiVersion"] == "monitoring.coreos.com/v1"
    spec = obj["spec"]
    assert spec["selector"]["matchLabels"] and spec["endpoints"]
    for ep in spec["endpoints"]:
        assert ep["port"] and ep["path"].startswith("/")
        assert re.fullmatch(r"[0-9]+(ms|s|m|h)", ep["interval"])


def test_helm_lint_is_clean() -> None:
    helm = _helm()
    for values in VALUE_SETS.values():
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, report


def test_kubernetes_older_than_native_sidecars_is_refused() -> None:
    """The CNI container is a restartable init container: on a cluster without native
    sidecars it would never exit and hold the agent back, so `helm install` must refuse (Helm
    checks kubeVersion against the cluster at install; lint and render do not)."""
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        assert chart.metadata["kubeVersion"] == ">=1.29.0-0"
        assert chart.metadata["appVersion"] == _project_version()


def _project_version() -> str:
    import tomllib

    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


# -- values the schema (or the chart's own checks) must refuse ----------------------------

BAD_VALUES = [
    ({"agent": {"config": {"vni": 0}}}, "vni"),
    ({"agent": {"config": {"vni": 2**24}}}, "vni"),
    ({"agent": {"config": {"tcpMode": "fast"}}}, "tcpMode"),
    ({"agent": {"config": {"ringSize": 1000}}}, "ringSize"),
    ({"agent": {"config": {"frames": 2048}}}, "frames"),
    ({"agent": {"config": {"healthPort": 0}}}, "healthPort"),
    ({"agent": {"config": {"vxlanDevice": "a-name-longer-than-15"}}}, "vxlanDevice"),
    ({"agent": {"config": {"pinDir": "/var/lib/bpf"}}}, "pinDir"),
    ({"agent": {"config": {"runDir": "run/ringlane"}}}, "runDir"),
    ({"agent": {"config": {"nodeName": "n1"}}}, "nodeName"),  # per pod, never in values
    ({"agent": {"config": {"busyPoll": "yes"}}}, "busyPoll"),
    ({"agent": {"config": {"extraVteps": ["10.0.0.300"]}}}, "extraVteps"),
    ({"agent": {"config": {"stateDir": "var/lib/ringlane"}}}, "stateDir"),
    ({"agent": {"config": {"networkPolicy": "no"}}}, "networkPolicy"),
    ({"agent": {"config": {"flowSampleEvery": -1}}}, "flowSampleEvery"),
    ({"agent": {"config": {"flowSampleEvery": 1048577}}}, "flowSampleEvery"),
    ({"agent": {"config": {"probeIntervalMs": 5}}}, "probeIntervalMs"),
    ({"agent": {"config": {"probeIntervalMs": 60001}}}, "probeIntervalMs"),
    ({"agent": {"config": {"apiListen": "9966"}}}, "apiListen"),
    ({"agent": {"config": {"apiListen": "0.0.0.0:0"}}}, "apiListen"),
    ({"agent": {"config": {"apiListen": "0.0.0.0:65536"}}}, "apiListen"),
    ({"agent": {"config": {"apiTlsCert": "tls.crt"}}}, "apiTlsCert"),
    # TCP without TLS: the agent would refuse to start; the schema refuses first
    ({"agent": {"config": {"apiListen": ":9966"}}}, "apiTlsCert"),
    ({"agent": {"config": {"apiListen": ":9966", "apiTlsCert": "/c", "apiTlsKey": "/k"}}},
     "apiTlsCa"),
    ({"api": {"tls": {"secretName": "Not_A_Name"}}}, "secretName"),
    ({"api": {"tls": {"secret": "x"}}}, "secret"),
    ({"agent": {"confg": {}}}, "confg"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"image": {"repository": ""}}, "repository"),
    ({"cni": {"binDir": "opt/cni/bin"}}, "binDir"),
    ({"cni": {"timeoutMs": 60001}}, "timeoutMs"),
    ({"cni": {"interval": 0}}, "interval"),
    ({"cni": {"hostPython": "python3"}}, "hostPython"),
    ({"updateStrategy": {"maxUnavailable": 0}}, "maxUnavailable"),
    ({"updateStrategy": {"maxUnavailable": "0%"}}, "maxUnavailable"),
    ({"updateStrategy": {"maxUnavailable": "150%"}}, "maxUnavailable"),
    ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "interval"),
    ({"uninstall": {"timeoutSeconds": 1}}, "timeoutSeconds"),
    ({"tolerations": {"operator": "Exists"}}, "tolerations"),
    ({"nameOverride": "Not_A_DNS_Label"}, "nameOverride"),
    ({"replicaCount": 3}, "replicaCount"),
    # relations between keys: the chart's own checks (template fail)
    ({"agent": {"config": {"frames": 4096, "ringSize": 4096}}}, "at least 2 x"),
    ({"agent": {"config": {"hugepages": True}}}, "hugepages-2Mi"),
]


@pytest.mark.parametrize(("values", "mentions"), BAD_VALUES,
                         ids=[f"{i}-{m}" for i, (_v, m) in enumerate(BAD_VALUES)])
def test_bad_values_are_rejected(values: Obj, mentions: str) -> None:
    helm = _helm()
    with pytest.raises((helm.HelmValuesError, helm.HelmRenderError)) as info:
        render(values)
    assert mentions in str(info.value)


# -- the DaemonSet ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_objs() -> list[Obj]:
    return objects(render())


def test_daemonset_runs_everywhere_and_rolls_safely(default_objs: list[Obj]) -> None:
    ds = find(default_objs, "DaemonSet")
    spec = ds["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    pod = spec["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is False
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]  # every taint
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    ann = spec["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9965"
    assert ann["prometheus.io/path"] == "/metrics"
    assert re.fullmatch(r"[0-9a-f]{64}", ann["checksum/config"])  # config change -> rollout


def test_config_change_rolls_the_pods() -> None:
    before = find(objects(render()), "DaemonSet")
    after = find(objects(render({"agent": {"config": {"tcpMode": "kernel"}}})), "DaemonSet")
    key = "checksum/config"
    assert before["spec"]["template"]["metadata"]["annotations"][key] != \
        after["spec"]["template"]["metadata"]["annotations"][key]


def test_hostpid_only_when_asked() -> None:
    assert pod_spec(objects(render({"agent": {"hostPID": True}})))["hostPID"] is True


def test_capabilities_not_privileged(default_objs: list[Obj]) -> None:
    pod = pod_spec(default_objs)
    for name in ("agent", "cni"):
        sc = container(pod, name)["securityContext"]
        assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
        assert set(sc["capabilities"]["add"]) == CAPABILITIES
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["readOnlyRootFilesystem"] is True
    privileged = [c["name"] for c in [*pod["initContainers"], *pod["containers"]]
                  if c.get("securityContext", {}).get("privileged")]
    assert privileged == ["mount-bpffs"]  # only to mount the bpffs
    bpffs = container(pod, "mount-bpffs")
    assert "mount -t bpf bpf /sys/fs/bpf" in bpffs["command"][-1]
    assert bpffs["volumeMounts"][0]["mountPropagation"] == "Bidirectional"
    assert "mount-bpffs" not in {c["name"] for c in pod_spec(objects(render(MINIMAL)))
                                 .get("initContainers", [])}


@pytest.mark.parametrize("values", [{}, CUSTOM_PATHS], ids=["default", "custom-paths"])
def test_host_paths_are_mounted_where_the_host_has_them(values: Obj) -> None:
    """The plugin runs on the host with the paths in its netconf, the agent in its pod: every
    shared directory must be the same path on both sides."""
    merged = _helm().Chart.load(str(CHART)).merge_values(values)
    c, cni = merged["agent"]["config"], merged["cni"]
    pod = pod_spec(objects(render(values)))
    volumes = {v["name"]: v for v in pod["volumes"]}
    host = {name: v["hostPath"]["path"] for name, v in volumes.items() if "hostPath" in v}
    assert host == {"bpffs": "/sys/fs/bpf", "run": c["runDir"], "cni-state": c["cniStateDir"],
                    "state": c["stateDir"], "netns": merged["agent"]["netnsDir"],
                    "cni-bin": cni["binDir"], "cni-conf": cni["confDir"]}
    assert host["state"] in {m["mountPath"] for m in container(pod, "agent")["volumeMounts"]}
    for name in ("agent", "cni"):
        for m in container(pod, name)["volumeMounts"]:
            if m["name"] in host:
                assert m["mountPath"] == host[m["name"]], (name, m)
    agent_mounts = {m["name"]: m for m in container(pod, "agent")["volumeMounts"]}
    assert agent_mounts["netns"]["mountPropagation"] == "HostToContainer"
    assert agent_mounts["bpffs"]["mountPropagation"] == "HostToContainer"
    assert {"cni-bin", "cni-conf"} <= {m["name"] for m in container(pod, "cni")["volumeMounts"]}
    assert c["pinDir"].startswith("/sys/fs/bpf")


@pytest.mark.parametrize("values", [{}, CUSTOM_PATHS], ids=["default", "custom-paths"])
def test_probes_and_metrics_port_are_the_agents_health_port(values: Obj) -> None:
    objs = objects(render(values))
    port = yaml.safe_load(find(objs, "ConfigMap")["data"]["config.yaml"])["healthPort"]
    agent = container(pod_spec(objs), "agent")
    assert agent["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    # without apiListen the API is the unix socket only: no port
    assert agent["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # the agent waits for the API and its podCIDR before serving: start-up gets minutes
    st = agent["startupProbe"]
    assert st["periodSeconds"] * st["failureThreshold"] >= 120
    assert agent["resources"]["requests"] and agent["resources"]["limits"]["memory"]


def test_agent_command_line_and_config_are_what_the_agent_accepts(
        default_objs: list[Obj]) -> None:
    agent = container(pod_spec(default_objs), "agent")
    args = agent_main._parser().parse_args(agent["args"])
    assert agent["command"] == ["ringlane-agent"] and args.config == Path(
        "/etc/ringlane/config.yaml")
    env = {e["name"]: e for e in agent["env"]}
    assert env["RINGLANE_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    file_values = yaml.safe_load(find(default_objs, "ConfigMap")["data"]["config.yaml"])
    cfg = config.load(file_values, env={"RINGLANE_NODE_NAME": "node-a"})  # validates
    assert cfg.node_name == "node-a" and cfg.health_port == 9965 and cfg.hugepages is False
    # `kubectl exec ... -c agent -- ringlanectl` finds the API wherever runDir is
    assert env["RINGLANE_API_SOCKET"]["value"] == str(cfg.api_socket)
    assert cfg.network_policy is True and cfg.api_listen == ""


def test_ringlanectl_finds_the_api_socket_in_custom_paths() -> None:
    objs = objects(render(CUSTOM_PATHS))
    env = {e["name"]: e for e in container(pod_spec(objs), "agent")["env"]}
    cfg = config.load(yaml.safe_load(find(objs, "ConfigMap")["data"]["config.yaml"]), env={})
    assert env["RINGLANE_API_SOCKET"]["value"] == str(cfg.api_socket) == "/var/run/rl/api.sock"


def test_api_tls_secret_is_mounted_and_configured() -> None:
    """api.tls.secretName: the Secret's three files where the agent's config says they are,
    read-only, and the TCP listener's port declared on the pod (hostNetwork: the node's)."""
    objs = objects(render(API_TLS))
    pod = pod_spec(objs)
    agent = container(pod, "agent")
    cfg = config.load(yaml.safe_load(find(objs, "ConfigMap")["data"]["config.yaml"]), env={})
    assert cfg.api_listen == "0.0.0.0:9966"
    volume = {v["name"]: v for v in pod["volumes"]}["api-tls"]
    assert volume["secret"]["secretName"] == "ringlane-api-tls"
    files = {i["key"]: i["path"] for i in volume["secret"]["items"]}
    assert files == {"tls.crt": "tls.crt", "tls.key": "tls.key", "ca.crt": "ca.crt"}
    mount = {m["name"]: m for m in agent["volumeMounts"]}["api-tls"]
    assert mount["readOnly"] is True
    assert (cfg.api_tls_cert, cfg.api_tls_key, cfg.api_tls_ca) == tuple(
        f"{mount['mountPath']}/{files[k]}" for k in ("tls.crt", "tls.key", "ca.crt"))
    assert {"name": "api", "containerPort": 9966, "protocol": "TCP"} in agent["ports"]
    # only the agent gets the key
    assert "api-tls" not in {m["name"] for m in container(pod, "cni")["volumeMounts"]}
    # paths given explicitly win over the Secret's defaults
    explicit = {**API_TLS, "agent": {"config": {**API_TLS["agent"]["config"],
                                                "apiTlsCa": "/var/lib/ringlane/ca.pem"}}}
    cm = yaml.safe_load(find(objects(render(explicit)), "ConfigMap")["data"]["config.yaml"])
    assert cm["apiTlsCa"] == "/var/lib/ringlane/ca.pem"
    assert cm["apiTlsCert"] == "/etc/ringlane/tls/tls.crt"


def test_no_secret_no_tls_mount_and_no_api_port(default_objs: list[Obj]) -> None:
    pod = pod_spec(default_objs)
    assert "api-tls" not in {v["name"] for v in pod["volumes"]}
    assert [p["name"] for p in container(pod, "agent")["ports"]] == ["metrics"]
    # TCP with paths the operator provides (e.g. under stateDir) needs no Secret
    values = {"agent": {"config": {"apiListen": "10.0.0.1:9966",
                                   "apiTlsCert": "/var/lib/ringlane/tls/tls.crt",
                                   "apiTlsKey": "/var/lib/ringlane/tls/tls.key",
                                   "apiTlsCa": "/var/lib/ringlane/tls/ca.crt"}}}
    objs = objects(render(values))
    assert "api-tls" not in {v["name"] for v in pod_spec(objs)["volumes"]}
    config.load(yaml.safe_load(find(objs, "ConfigMap")["data"]["config.yaml"]), env={})


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_config_file_passes_the_agents_own_validation(values: Obj) -> None:
    objs = objects(render(values))
    file_values = yaml.safe_load(find(objs, "ConfigMap")["data"]["config.yaml"])
    config.load(file_values, env={})  # raises ConfigError on anything the agent refuses


def test_chart_knows_every_agent_setting_with_the_agents_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys = set(schema["properties"]["agent"]["properties"]["config"]["properties"])
    expected = {config._camel(f.name) for f in fields(config.AgentConfig)} - {"nodeName"}
    assert keys == expected
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["agent"]["config"]
    agent_defaults = {config._camel(f.name): f.default for f in fields(config.AgentConfig)}
    for key, value in defaults.items():
        want = CHART_OVERRIDES.get(key, agent_defaults[key])
        if isinstance(want, Path):
            want = str(want)
        elif isinstance(want, tuple):
            want = list(want)
        assert value == want, key


def test_cni_container_runs_the_install_watch_the_chart_means(default_objs: list[Obj]) -> None:
    pod = pod_spec(default_objs)
    cni = container(pod, "cni")
    assert cni["restartPolicy"] == "Always"  # native sidecar: outlives the agent at shutdown
    assert "startupProbe" not in cni  # it would hold back the agent it waits for
    assert cni["readinessProbe"]["exec"]["command"] == ["test", "-f", "/tmp/cni-ready"]
    assert cni["command"] == ["python", "-m", "agent.cni_install", "watch"]
    args = cni_install._parser().parse_args(["watch", *cni["args"]])
    assert cni_install._entry(args) == cni_install.plugin_entry(
        agent_socket="/run/ringlane/agent.sock", state_dir="/var/lib/ringlane/cni",
        fail_closed=False, timeout_ms=3000)
    assert str(args.ready_file) == "/tmp/cni-ready"
    assert args.namespace == "$(POD_NAMESPACE)"
    assert {e["name"] for e in cni["env"]} == {"POD_NAMESPACE"}
    cleanup = shlex.split(args.cleanup_command)
    assert cleanup[0] == "ringlane-agent"
    assert agent_main._parser().parse_args(cleanup[1:]).cleanup is True
    mounts = {m["mountPath"] for m in cni["volumeMounts"]}
    assert "/etc/ringlane" in mounts  # the cleanup reads the same config


def test_cni_values_reach_the_plugin_entry() -> None:
    cni = container(pod_spec(objects(render(EVERYTHING_ON))), "cni")
    args = cni_install._parser().parse_args(["watch", *cni["args"]])
    assert cni_install._entry(args)["failClosed"] is True
    assert cni_install._entry(args)["timeoutMs"] == 500
    assert args.chain_target == "kindnet" and args.python == "/usr/bin/python3"
    assert args.interval == 0.5


# -- RBAC and the uninstall hook ---------------------------------------------------------


def test_rbac_is_read_only_and_minimal(default_objs: list[Obj]) -> None:
    role = find(default_objs, "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])))
             for r in role["rules"]}
    assert rules == {(("",), ("namespaces", "nodes", "pods"), ("get", "list", "watch")),
                     (("networking.k8s.io",), ("networkpolicies",), ("get", "list", "watch"))}
    binding = find(default_objs, "ClusterRoleBinding")
    sa = find(default_objs, "ServiceAccount", pod_spec(default_objs)["serviceAccountName"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    permanent = objects(render(), hooks=False)
    assert [o["kind"] for o in permanent if o["kind"] in ("Role", "RoleBinding")] == []
    assert not [o for o in objects(render(MINIMAL)) if "Role" in o["kind"]]


def test_uninstall_hook_wiring(default_objs: list[Obj]) -> None:
    hooks = [o for o in default_objs
             if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]
    assert {o["kind"] for o in hooks} == {"ServiceAccount", "Role", "RoleBinding", "Job"}
    for o in hooks:
        ann = o["metadata"]["annotations"]
        assert ann["helm.sh/hook"] == "pre-delete"
        assert "hook-succeeded" in ann["helm.sh/hook-delete-policy"]
    job = find(hooks, "Job")
    role = find(hooks, "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}]
    # RBAC exists before the Job runs
    assert all(int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) <
               int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
               for o in hooks if o is not job)
    pod = job["spec"]["template"]
    announce = pod["spec"]["containers"][0]
    args = cni_install._parser().parse_args(["announce-uninstall", *announce["args"]])
    ds = find(default_objs, "DaemonSet")
    ds_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert _selects(args.selector, ds_labels) and not _selects(args.selector,
                                                               pod["metadata"]["labels"])
    assert args.container == "cni" and args.namespace == NAMESPACE
    cni = container(ds["spec"]["template"]["spec"], "cni")
    watch = cni_install._parser().parse_args(["watch", *cni["args"]])
    assert _selects(watch.uninstall_selector, pod["metadata"]["labels"])  # the marker
    assert not _selects(watch.uninstall_selector, ds_labels)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert job["spec"]["activeDeadlineSeconds"] > args.timeout


def test_no_hook_no_marker_watch() -> None:
    objs = objects(render(MINIMAL))
    assert not [o for o in objs if o["kind"] == "Job"]
    args = container(pod_spec(objs), "cni")["args"]
    assert not [a for a in args if a.startswith(("--uninstall-selector", "--cleanup-command"))]


def _selects(selector: str, labels: dict[str, str]) -> bool:
    pairs = dict(p.split("=", 1) for p in selector.split(","))
    return pairs.items() <= labels.items()


def test_service_monitor_selects_the_metrics_service() -> None:
    objs = objects(render(EVERYTHING_ON))
    svc = find(objs, "Service")
    sm = find(objs, "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert svc["spec"]["clusterIP"] == "None"
    ds_labels = find(objs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= ds_labels.items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    assert not [o for o in objects(render()) if o["kind"] in ("Service", "ServiceMonitor")]


def test_names_fit_kubernetes_limits() -> None:
    long_release = "a-release-name-that-is-rather-long-for-a-cluster"
    for obj in objects(render(name=long_release)):
        assert len(obj["metadata"]["name"]) <= 63
    objs = objects(render(name="rl"))
    assert find(objs, "DaemonSet")["metadata"]["name"] == "rl-ringlane"


def test_notes_tell_how_to_check() -> None:
    notes = render()["ringlane/templates/NOTES.txt"]
    for needed in ("rollout status daemonset/ringlane", "ringlanectl status",
                   "ringlanectl endpoints", "ringlanectl stats", "/metrics",
                   "logs ds/ringlane -c cni", "ringlanectl links", "ringlanectl policy list",
                   "ringlanectl flows"):
        assert needed in notes, needed
    assert "NOT enforced" not in notes
    assert "NOT enforced" in render(NO_NETWORK_POLICY)["ringlane/templates/NOTES.txt"]


# -- generated files ---------------------------------------------------------------------

STATIC_HEADER = """\
# Ringlane for `kubectl apply -f deploy/daemonset.yaml`: the Helm chart deploy/helm/ringlane
# rendered with its default values (release ringlane, namespace kube-system), without the
# chart's uninstall hook. Generated; do not edit: after changing the chart run
#   .venv/bin/python -m tests.unit.test_chart --write
# (tests/unit/test_chart.py fails while this file differs from the render).
"""


def static_render() -> str:
    docs: list[tuple[int, str, str]] = []
    for path, text in sorted(render().items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in split_docs(text):
            obj = yaml.safe_load(doc)
            if not obj or "helm.sh/hook" in (obj["metadata"].get("annotations") or {}):
                continue
            docs.append((KIND_ORDER.index(obj["kind"]), obj["metadata"]["name"], doc))
    body = "\n---\n".join(doc for _k, _n, doc in sorted(docs))
    return STATIC_HEADER + "---\n" + body + "\n"


def test_static_manifest_is_the_default_render() -> None:
    assert STATIC.read_text() == static_render(), \
        "deploy/daemonset.yaml is stale: run .venv/bin/python -m tests.unit.test_chart --write"


def _leaves(schema: Obj, values: Any, prefix: str = "") -> Iterator[tuple[str, Obj, Any]]:
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        value = values.get(key) if isinstance(values, dict) else None
        if sub.get("type") == "object" and "properties" in sub and key != "resources":
            yield from _leaves(sub, value, path + ".")
        elif key != "global":
            yield path, sub, value


def _constraint(sub: Obj) -> str:
    enum = sub.get("enum")
    if enum and all(isinstance(v, int) for v in enum):
        return f"a power of two, {min(enum)}..{max(enum)}"
    if enum:
        return "one of " + ", ".join(f"`{v}`" for v in enum)
    lo, hi = sub.get("minimum"), sub.get("maximum")
    if lo is not None and hi is not None:
        return f"{lo}..{hi}"
    if lo is not None:
        return f">= {lo}"
    return ""


def values_table() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = ["| key | default | description |", "|---|---|---|"]
    for path, sub, value in _leaves(schema, values):
        default = "`" + json.dumps(value, separators=(", ", ": ")) + "`"
        text = sub["description"]
        extra = _constraint(sub)
        if extra:
            text += f" ({extra})"
        rows.append(f"| `{path}` | {default} | {text.replace('|', '/')} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    start, end = readme.index(TABLE_START) + len(TABLE_START), readme.index(TABLE_END)
    return readme[:start] + "\n" + values_table() + "\n" + readme[end:]


def test_every_value_is_described_and_checked() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Obj, vals: Any, path: str) -> None:
        assert node.get("description"), f"{path or 'root'} has no description"
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path}: typos would pass"
            for key in vals or {}:
                assert key in node["properties"], f"{path}.{key} is not in the schema"
            for key, sub in node["properties"].items():
                walk(sub, (vals or {}).get(key), f"{path}.{key}".lstrip("."))

    for key, sub in schema["properties"].items():
        walk(sub, values.get(key), key)


def test_readme_configuration_table_is_generated_from_the_schema() -> None:
    readme = README.read_text()
    assert TABLE_START in readme and TABLE_END in readme
    assert readme == readme_with_table(readme), \
        "README's Configuration table is stale: run .venv/bin/python -m tests.unit.test_chart " \
        "--write"


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print(__doc__)
        return 2
    STATIC.write_text(static_render())
    README.write_text(readme_with_table(README.read_text()))
    print(f"wrote {STATIC.relative_to(ROOT)} and the table in {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
