"""The plugin as an executable: standard library only (so it runs under `python -IS`), the
console script's hand-over to it, and the isolated launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.cni import launcher
from tests.cni.agent_double import AgentDouble
from tests.cni.conftest import CONSOLE_SCRIPT, ROOT

PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/proc/self/ns/net"}],
        "ips": [{"address": "10.244.1.5/24", "interface": 0}]}


def _env(command: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
            "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
            "CNI_PATH": "/usr/lib/cni"}


def test_plugin_imports_only_stdlib_and_agent_cni() -> None:
    code = ("import sys\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "before = set(sys.modules)\n"
            "import agent.cni.plugin\n"
            "import json\n"
            "print(json.dumps(sorted(set(sys.modules) - before)))\n")
    p = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                       text=True, check=True)
    loaded = json.loads(p.stdout)
    ours = {m for m in loaded if m == "agent" or m.startswith("agent.")}
    assert ours <= {"agent", "agent.cni", "agent.cni.plugin", "agent.cni.protocol",
                    "agent.cni.spec", "agent.cni.fastjson"}, ours
    foreign = [m for m in loaded if m not in ours
               and m.split(".")[0] not in sys.stdlib_module_names]
    assert foreign == []
    # start-up cost: nothing heavy that the plugin does not need
    assert not {"typing", "dataclasses", "ipaddress", "inspect", "asyncio"} & set(loaded)


def test_every_agent_cni_module_is_stdlib_only() -> None:
    """queue.py and launcher.py too (queue is imported by the plugin on DEL, and by the
    agent)."""
    modules = sorted(p.stem for p in (ROOT / "agent" / "cni").glob("*.py")
                     if p.stem != "__init__")
    code = ("import sys, json\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            f"for m in {modules!r}: __import__('agent.cni.' + m)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    p = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                       text=True, check=True)
    foreign = [m for m in json.loads(p.stdout)
               if m.split(".")[0] not in sys.stdlib_module_names
               and m not in ("__main__", "agent", "agent.cni")
               and not m.startswith("agent.cni.")]
    assert foreign == []


def test_console_script_hands_over_to_the_plugin(sock_dir: Path) -> None:
    """`ringlane` with CNI_COMMAND set is the plugin: VERSION, and an ADD reaching the agent
    (nothing of the operator CLI runs: no usage text, exit code from the plugin)."""
    out = subprocess.run([str(CONSOLE_SCRIPT)], input=b'{"cniVersion":"1.1.0"}',
                         env=_env("VERSION"), capture_output=True, check=True)
    assert json.loads(out.stdout)["supportedVersions"][-1] == "1.1.0"
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "ringlane", "prevResult": PREV,
            "agentSocket": str(sock_dir / "a.sock")}
    with AgentDouble(sock_dir / "a.sock") as agent:
        out = subprocess.run([str(CONSOLE_SCRIPT)], input=json.dumps(conf).encode(),
                             env=_env("ADD"), capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout) == PREV
    assert agent.ops() == ["cni_add"]
    bad = subprocess.run([str(CONSOLE_SCRIPT)], input=b"{", env=_env("ADD"),
                         capture_output=True)
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == 6


def test_console_script_without_cni_command_is_the_cli() -> None:
    out = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", "")})
    assert out.returncode == 0 and "usage: ringlane demo" in out.stdout


def test_installed_launcher_runs_isolated(tmp_path: Path, sock_dir: Path) -> None:
    """`python -m agent.cni.launcher DEST` copies the plugin next to DEST: it works from there
    with this source tree out of reach (-I: no PYTHONPATH, no script directory)."""
    dest = tmp_path / "bin" / "ringlane"
    dest.parent.mkdir()
    subprocess.run([sys.executable, "-m", "agent.cni.launcher", str(dest)], cwd=ROOT,
                   check=True, capture_output=True)
    first = dest.read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -IS"
    assert sorted(p.name for p in (tmp_path / "bin" / "ringlane.d" / "agent" / "cni").iterdir()) \
        == sorted(p.name for p in (ROOT / "agent" / "cni").glob("*.py"))
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "ringlane", "prevResult": PREV,
            "agentSocket": str(sock_dir / "a.sock")}
    env = _env("ADD") | {"PYTHONPATH": str(ROOT)}  # ignored under -I
    with AgentDouble(sock_dir / "a.sock") as agent:
        out = subprocess.run([str(dest)], input=json.dumps(conf).encode(), env=env,
                             capture_output=True, cwd="/")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout) == PREV and agent.ops() == ["cni_add"]
    assert launcher.launcher_text("/usr/bin/python3", "/x").startswith("#!/usr/bin/python3 -IS")
