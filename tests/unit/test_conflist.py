"""agent/cni_install.py: chaining into the primary's network configuration, and the plugin
executable it puts on the host. No root, no runtime: directories under tmp_path stand for
/etc/cni/net.d and /opt/cni/bin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import cni_install as ci
from agent.control import ControlServer

pytestmark = pytest.mark.unit

ENTRY = ci.plugin_entry(agent_socket="/run/ringlane/agent.sock",
                        state_dir="/var/lib/ringlane/cni")
# kindnet's file, with fields of its own at every level (ours must survive untouched)
KINDNET: dict[str, Any] = {
    "cniVersion": "0.3.1",
    "name": "kindnet",
    "x-vendor": {"keep": [1, 2, 3]},
    "plugins": [
        {"type": "ptp", "ipMasq": False,
         "ipam": {"type": "host-local", "dataDir": "/run/cni-ipam-state",
                  "routes": [{"dst": "0.0.0.0/0"}], "ranges": [[{"subnet": "10.244.1.0/24"}]]},
         "mtu": 1500},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
BRIDGE_CONF = ('{\n  "cniVersion": "0.4.0", "name": "mynet", "type": "bridge",\n'
               '  "bridge": "cni0", "isGateway": true, "vendorField": {"a": null},\n'
               '  "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}\n}\n')


def write(path: Path, doc: Any, mode: int = 0o644) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=4))
    os.chmod(path, mode)
    return path


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    d = tmp_path / "net.d"
    d.mkdir()
    return d


def only_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# -- which file is the primary ------------------------------------------------------------


def test_primary_is_the_first_file_the_runtime_would_load(conf_dir: Path) -> None:
    write(conf_dir / "20-b.conflist", KINDNET)
    write(conf_dir / "10-a.conf", BRIDGE_CONF)
    write(conf_dir / "05-notes.txt", "not a config")
    write(conf_dir / ".05-x.conflist.1234.ringlane-tmp", "{")  # someone's temp file
    (conf_dir / "00-dir.conflist").mkdir()  # a directory with a config name is no config
    assert [p.name for p in ci.conf_files(conf_dir)] == ["10-a.conf", "20-b.conflist"]
    primary = ci.find_primary(conf_dir)
    assert primary is not None and primary.path.name == "10-a.conf"


def test_chain_target_by_network_name_or_file_name(conf_dir: Path) -> None:
    write(conf_dir / "10-a.conf", BRIDGE_CONF)
    write(conf_dir / "20-b.conflist", KINDNET)
    by_name = ci.find_primary(conf_dir, "kindnet")
    by_file = ci.find_primary(conf_dir, "20-b.conflist")
    assert by_name is not None and by_name.path.name == "20-b.conflist"
    assert by_file is not None and by_file.path == by_name.path
    assert ci.find_primary(conf_dir, "calico") is None


def test_no_primary_yet_is_an_error_that_says_so(conf_dir: Path) -> None:
    with pytest.raises(ci.InstallError, match=r"no network configuration .* yet"):
        ci.ensure_merged(conf_dir, ENTRY)
    with pytest.raises(ci.InstallError, match="named 'kindnet'"):
        ci.ensure_merged(conf_dir, ENTRY, "kindnet")
    assert ci.find_primary(conf_dir / "missing") is None


def test_a_primary_mid_write_is_not_touched(conf_dir: Path) -> None:
    path = write(conf_dir / "10-kindnet.conflist", '{"cniVersion": "0.3.1", "plu')
    with pytest.raises(ci.InstallError, match="not valid JSON"):
        ci.ensure_merged(conf_dir, ENTRY)
    assert path.read_text() == '{"cniVersion": "0.3.1", "plu'


# -- merge and unmerge ----------------------------------------------------------------------


def test_merge_appends_last_and_keeps_everything_else(conf_dir: Path) -> None:
    path = write(conf_dir / "10-kindnet.conflist", KINDNET, mode=0o600)
    assert ci.ensure_merged(conf_dir, ENTRY) == path
    doc = json.loads(path.read_text())
    assert doc["plugins"] == [*KINDNET["plugins"], ENTRY]
    assert {k: v for k, v in doc.items() if k != "plugins"} == \
        {k: v for k, v in KINDNET.items() if k != "plugins"}
    assert list(doc) == list(KINDNET)  # key order too
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert only_files(conf_dir) == ["10-kindnet.conflist"]  # no temp file left
    assert ci.is_merged(conf_dir, ENTRY)


def test_merge_is_idempotent(conf_dir: Path) -> None:
    path = write(conf_dir / "10-kindnet.conflist", KINDNET)
    ci.ensure_merged(conf_dir, ENTRY)
    before = path.read_bytes(), os.stat(path).st_ino, os.stat(path).st_mtime_ns
    for _ in range(3):
        assert ci.ensure_merged(conf_dir, ENTRY) is None
    assert (path.read_bytes(), os.stat(path).st_ino, os.stat(path).st_mtime_ns) == before


def test_a_changed_entry_is_replaced_not_added(conf_dir: Path) -> None:
    path = write(conf_dir / "10-kindnet.conflist", KINDNET)
    ci.ensure_merged(conf_dir, ENTRY)
    closed = {**ENTRY, "failClosed": True}
    assert ci.ensure_merged(conf_dir, closed) == path
    plugins = json.loads(path.read_text())["plugins"]
    assert plugins == [*KINDNET["plugins"], closed]


def test_stray_and_misplaced_entries_collapse_to_one_last(conf_dir: Path) -> None:
    doc = dict(KINDNET, plugins=[ENTRY, KINDNET["plugins"][0], ENTRY, KINDNET["plugins"][1]])
    path = write(conf_dir / "10-kindnet.conflist", doc)
    ci.ensure_merged(conf_dir, ENTRY)
    assert json.loads(path.read_text())["plugins"] == [*KINDNET["plugins"], ENTRY]


def test_unmerge_takes_out_only_ours_and_is_idempotent(conf_dir: Path) -> None:
    path = write(conf_dir / "10-kindnet.conflist", KINDNET)
    ci.ensure_merged(conf_dir, ENTRY)
    assert ci.unmerge_all(conf_dir) == [path]
    assert json.loads(path.read_text()) == KINDNET
    assert ci.unmerge_all(conf_dir) == []
    assert json.loads(path.read_text()) == KINDNET


@pytest.mark.parametrize("name", ["10-mynet.conf", "10-mynet.json"])
def test_a_single_plugin_conf_is_converted_and_restored_byte_for_byte(conf_dir: Path,
                                                                      name: str) -> None:
    original = write(conf_dir / name, BRIDGE_CONF, mode=0o640)
    written = ci.ensure_merged(conf_dir, ENTRY)
    assert written == conf_dir / "10-mynet.conflist"
    assert only_files(conf_dir) == ["10-mynet.conflist"]  # the .conf would shadow it
    doc = json.loads(written.read_text())
    # libcni's own conversion (ConfListFromConf): the whole original is the first plugin
    assert doc["cniVersion"] == "0.4.0" and doc["name"] == "mynet"
    assert doc["plugins"] == [json.loads(BRIDGE_CONF), ENTRY]
    assert os.stat(written).st_mode & 0o777 == 0o640
    assert ci.ensure_merged(conf_dir, ENTRY) is None  # now a conflist: idempotent
    assert ci.unmerge_all(conf_dir) == [original]
    assert only_files(conf_dir) == [name]
    assert original.read_text() == BRIDGE_CONF
    assert os.stat(original).st_mode & 0o777 == 0o640


def test_conversion_refuses_to_overwrite_someone_elses_conflist(conf_dir: Path) -> None:
    write(conf_dir / "10-mynet.conf", BRIDGE_CONF)
    theirs = write(conf_dir / "10-mynet.conflist", KINDNET)
    with pytest.raises(ci.InstallError, match="exists and is not ours"):
        ci.ensure_merged(conf_dir, ENTRY)
    assert json.loads(theirs.read_text()) == KINDNET
    assert (conf_dir / "10-mynet.conf").read_text() == BRIDGE_CONF


def test_ringlane_as_the_primary_is_refused(conf_dir: Path) -> None:
    write(conf_dir / "10-rl.conf", {"cniVersion": "1.0.0", "name": "x", "type": "ringlane"})
    with pytest.raises(ci.InstallError, match="only chains after another plugin"):
        ci.ensure_merged(conf_dir, ENTRY)


def test_unmerge_keeps_a_converted_list_that_someone_extended(conf_dir: Path) -> None:
    write(conf_dir / "10-mynet.conf", BRIDGE_CONF)
    path = ci.ensure_merged(conf_dir, ENTRY)
    assert path is not None
    doc = json.loads(path.read_text())
    doc["plugins"].insert(1, {"type": "bandwidth"})  # another chained plugin joined
    path.write_text(json.dumps(doc))
    ci.unmerge_all(conf_dir)
    left = json.loads(path.read_text())
    assert left["plugins"] == [json.loads(BRIDGE_CONF), {"type": "bandwidth"}]
    assert ci.CONVERTED_KEY not in left


# -- atomicity and concurrent writers ------------------------------------------------------


def test_writes_go_through_a_temp_file_the_runtime_ignores(conf_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(conf_dir / "10-kindnet.conflist", KINDNET)
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        # at the moment of the rename the temp file is complete, and no runtime would load it
        seen.append((Path(src).name, Path(src).read_text()))
        assert not Path(src).name.endswith(ci.CONF_EXTENSIONS)
        assert [p.name for p in ci.conf_files(conf_dir)] == ["10-kindnet.conflist"]
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    ci.ensure_merged(conf_dir, ENTRY)
    assert len(seen) == 1 and json.loads(seen[0][1])["plugins"][-1] == ENTRY
    assert path.read_text() == seen[0][1]


def test_a_failed_write_leaves_the_original_and_no_temp(conf_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(conf_dir / "10-kindnet.conflist", KINDNET)
    before = path.read_bytes()

    def boom(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        ci.ensure_merged(conf_dir, ENTRY)
    assert path.read_bytes() == before
    assert only_files(conf_dir) == ["10-kindnet.conflist"]


def test_a_primary_writing_between_our_read_and_rename_wins(conf_dir: Path) -> None:
    path = write(conf_dir / "10-kindnet.conflist", KINDNET)
    stale = ci.read_conf(path)
    newer = dict(KINDNET, plugins=[*KINDNET["plugins"], {"type": "bandwidth"}])
    time.sleep(0.01)
    write(path, newer)  # the primary rewrote its file after we read it
    with pytest.raises(ci.ConcurrentWrite):
        ci.merge(stale, ENTRY)
    assert json.loads(path.read_text()) == newer  # its write is not lost
    ci.ensure_merged(conf_dir, ENTRY)  # read again: merged into the newer content
    assert json.loads(path.read_text())["plugins"] == [*newer["plugins"], ENTRY]


def test_ensure_merged_retries_a_concurrent_write(conf_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write(conf_dir / "10-kindnet.conflist", KINDNET)
    calls = 0
    real_merge = ci.merge

    def flaky(conf: ci.ConfFile, entry: dict[str, Any]) -> Path | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ci.ConcurrentWrite("changed")
        return real_merge(conf, entry)

    monkeypatch.setattr(ci, "merge", flaky)
    assert ci.ensure_merged(conf_dir, ENTRY) is not None and calls == 2


# -- the watch loop: agent readiness, rewrites, uninstall ----------------------------------


class FakeAgent:
    def __init__(self) -> None:
        self.ready = False

    def __call__(self, _socket: Path) -> bool:
        return self.ready


@pytest.fixture
def watcher(tmp_path: Path, conf_dir: Path) -> tuple[ci.Watcher, FakeAgent]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ringlane").write_text("#!/bin/sh\n")  # the init step installed it
    agent = FakeAgent()
    opts = ci.WatchOptions(conf_dir=conf_dir, bin_dir=bin_dir, entry=ENTRY,
                           ready_file=tmp_path / "ready", python=sys.executable,
                           cleanup_command=[sys.executable, "-c",
                                            f"open({str(tmp_path / 'cleaned')!r}, 'w')"])
    return ci.Watcher(opts, ready=agent), agent


def test_watch_merges_only_once_the_agent_is_ready(watcher: tuple[ci.Watcher, FakeAgent],
                                                   conf_dir: Path) -> None:
    w, agent = watcher
    path = write(conf_dir / "10-kindnet.conflist", KINDNET)
    w.step()
    assert json.loads(path.read_text()) == KINDNET and not w.opts.ready_file.exists()  # type: ignore[union-attr]
    agent.ready = True
    w.step()
    assert ci.is_merged(conf_dir, ENTRY) and w.opts.ready_file.exists()  # type: ignore[union-attr]
    agent.ready = False  # an agent restarting later does not take the chain out
    w.step()
    assert ci.is_merged(conf_dir, ENTRY)


def test_watch_remerges_when_the_primary_rewrites_its_file(
        watcher: tuple[ci.Watcher, FakeAgent], conf_dir: Path) -> None:
    w, agent = watcher
    agent.ready = True
    path = write(conf_dir / "10-kindnet.conflist", KINDNET)
    w.step()
    write(path, KINDNET)  # kindnet writes its file again, without us
    assert not ci.is_merged(conf_dir, ENTRY)
    w.step()
    assert json.loads(path.read_text())["plugins"] == [*KINDNET["plugins"], ENTRY]
    # a new primary that sorts first (the cluster's CNI was replaced) is chained too
    first = write(conf_dir / "05-new.conf", BRIDGE_CONF)
    w.step()
    assert not first.exists() and ci.is_merged(conf_dir, ENTRY)
    assert ci.find_primary(conf_dir).path.name == "05-new.conflist"  # type: ignore[union-attr]


def test_watch_waits_for_a_primary_that_is_not_there_yet(
        watcher: tuple[ci.Watcher, FakeAgent], conf_dir: Path) -> None:
    w, agent = watcher
    agent.ready = True
    w.step()  # logs, does not raise
    assert not w.merged
    write(conf_dir / "10-kindnet.conflist", KINDNET)
    w.step()
    assert w.merged and ci.is_merged(conf_dir, ENTRY)


def test_sigterm_without_the_uninstall_marker_keeps_everything(
        watcher: tuple[ci.Watcher, FakeAgent], conf_dir: Path, tmp_path: Path) -> None:
    w, agent = watcher
    agent.ready = True
    write(conf_dir / "10-kindnet.conflist", KINDNET)
    w.step()
    assert w.shutdown() == 0
    assert ci.is_merged(conf_dir, ENTRY)
    assert (w.opts.bin_dir / "ringlane").exists() and not (tmp_path / "cleaned").exists()


def test_uninstall_marker_then_sigterm_removes_everything(
        watcher: tuple[ci.Watcher, FakeAgent], conf_dir: Path, tmp_path: Path) -> None:
    w, agent = watcher
    agent.ready = True
    write(conf_dir / "10-mynet.conf", BRIDGE_CONF)
    w.step()
    assert w.opts.ready_file is not None and w.opts.ready_file.exists()
    w.uninstall.set()
    w.step()  # the marker: the entry goes at once, readiness drops (the hook's ack)
    assert only_files(conf_dir) == ["10-mynet.conf"] and not w.opts.ready_file.exists()
    w.step()  # and it is not merged back
    assert (conf_dir / "10-mynet.conf").read_text() == BRIDGE_CONF
    assert w.shutdown() == 0
    assert (tmp_path / "cleaned").exists()  # ringlane-agent --cleanup ran
    assert not (w.opts.bin_dir / "ringlane").exists()


def test_watch_run_stops_on_its_event(watcher: tuple[ci.Watcher, FakeAgent],
                                      conf_dir: Path) -> None:
    w, agent = watcher
    agent.ready = True
    w.opts.interval = 0.01
    write(conf_dir / "10-kindnet.conflist", KINDNET)
    w.stop.set()
    assert w.run() == 0  # one pass, then the stop: merged, nothing removed
    assert ci.is_merged(conf_dir, ENTRY)


def test_watch_reinstalls_a_vanished_plugin_and_prunes_old_versions(
        watcher: tuple[ci.Watcher, FakeAgent], conf_dir: Path) -> None:
    w, _agent = watcher
    bin_dir = w.opts.bin_dir
    old = ci.install_plugin(bin_dir, python="/usr/bin/python3-old")  # the previous release
    w.stop.set()
    w.run()  # installs this release beside it
    assert w.plugin is not None and w.plugin.root != old.root and old.root.exists()
    past = time.time() - 2 * ci.KEEP_OLD_SECONDS
    os.utime(old.root, (past, past))
    w.step()
    assert not old.root.exists() and w.plugin.root.exists()
    shutil.rmtree(w.plugin.root)  # someone cleaned /opt/cni/bin by hand
    w.step()
    assert (w.plugin.root / ci.COMPLETE).exists()
    (bin_dir / "ringlane").unlink()
    w.step()
    assert run_plugin(bin_dir / "ringlane").returncode == 0


def test_agent_ready_asks_the_control_socket() -> None:
    d = Path(tempfile.mkdtemp(prefix="rlci-", dir="/tmp"))
    try:
        sock = d / "agent.sock"
        assert not ci.agent_ready(sock)  # nobody listening
        state = {"ready": False}
        server = ControlServer(sock, {"status": lambda _r: dict(state)})
        server.start()
        try:
            assert not ci.agent_ready(sock)
            state["ready"] = True
            assert ci.agent_ready(sock)
        finally:
            server.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize(("status", "acked"), [
    ({"phase": "Running", "initContainerStatuses": [{"name": "cni", "ready": True}]}, False),
    ({"phase": "Running", "initContainerStatuses": [{"name": "cni", "ready": False}]}, True),
    ({"phase": "Pending", "initContainerStatuses": [{"name": "mount-bpffs", "ready": False}]},
     True),
    ({"phase": "Failed"}, True),
])
def test_hook_acknowledgement(status: dict[str, Any], acked: bool) -> None:
    assert ci.cni_container_acked({"status": status}, "cni") is acked
    snake = {"status": {"phase": status["phase"],
                        "init_container_statuses": status.get("initContainerStatuses")}}
    assert ci.cni_container_acked(ci._camel_pod(snake), "cni") is acked


# -- the plugin executable -----------------------------------------------------------------


VERSION_REQUEST = b'{"cniVersion": "1.0.0"}'


def run_plugin(launcher: Path, command: str = "VERSION",
               stdin: bytes = VERSION_REQUEST) -> subprocess.CompletedProcess[bytes]:
    # env -i: the runtime's environment has no PYTHON*, no LD_LIBRARY_PATH, nothing of ours
    return subprocess.run(["env", "-i", f"CNI_COMMAND={command}", str(launcher)],
                          input=stdin, capture_output=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def bundle() -> ci.Bundle:
    if shutil.which("ldd") is None:
        pytest.skip("ldd (libc-bin) is missing")
    return ci.interpreter_bundle()


def test_bundle_holds_the_interpreter_its_libraries_and_loader(bundle: ci.Bundle) -> None:
    assert bundle.python in bundle.files and bundle.files[bundle.python].is_file()
    assert bundle.loader.startswith(bundle.libdir + "/ld-linux")
    libs = {Path(rel).name for rel in bundle.files if rel.startswith(bundle.libdir + "/")}
    assert "libc.so.6" in libs
    stdlib = {rel for rel in bundle.files if rel.startswith("lib/python")}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for needed in ("os.py", "json/__init__.py", "traceback.py", "encodings/utf_8.py",
                   "encodings/latin_1.py"):
        assert f"lib/{version}/{needed}" in stdlib, needed
    # what the plugin cannot reach stays out: the bundle is copied to every node
    assert not any("/tkinter/" in r or "/asyncio/" in r or "/unittest/" in r for r in stdlib)
    assert sum(p.stat().st_size for p in bundle.files.values()) < 80 * 2**20


def test_bundled_plugin_runs_with_nothing_of_the_host(tmp_path: Path, bundle: ci.Bundle) -> None:
    bin_dir = tmp_path / "bin"
    first = ci.install_plugin(bin_dir, bundle=bundle)
    assert first.changed and first.launcher == bin_dir / "ringlane"
    assert os.access(first.launcher, os.X_OK)
    assert first.launcher.read_text().startswith("#!/bin/sh\n")
    p = run_plugin(first.launcher)
    assert p.returncode == 0, p.stderr
    assert "1.1.0" in json.loads(p.stdout)["supportedVersions"]
    # DEL with no agent: the lazy path (the queue module) works from the bundle as well
    state = tmp_path / "state"
    conf = {"cniVersion": "1.0.0", "name": "kindnet", "type": "ringlane",
            "agentSocket": str(tmp_path / "none.sock"), "stateDir": str(state)}
    p = subprocess.run(["env", "-i", "CNI_COMMAND=DEL", "CNI_CONTAINERID=abc123",
                        "CNI_IFNAME=eth0", "CNI_NETNS=/proc/self/ns/net", "CNI_PATH=/x",
                        str(first.launcher)], input=json.dumps(conf).encode(),
                       capture_output=True, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert (state / "del-queue.jsonl").exists()
    # the same version again: nothing written
    again = ci.install_plugin(bin_dir, bundle=bundle)
    assert not again.changed and again.root == first.root


def test_upgrade_swaps_the_launcher_and_prunes_old_versions_later(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    old = ci.install_plugin(bin_dir, python="/usr/bin/python3-old")
    new = ci.install_plugin(bin_dir, python=sys.executable)
    assert new.changed and new.root != old.root
    assert str(new.root) in new.launcher.read_text()
    assert old.root.exists()  # a plugin started a moment ago may still import from it
    past = time.time() - 2 * ci.KEEP_OLD_SECONDS
    os.utime(old.root, (past, past))
    ci.install_plugin(bin_dir, python=sys.executable)
    assert not old.root.exists() and new.root.exists()
    assert [p.name for p in (bin_dir / "ringlane.d").iterdir()] == [new.root.name]


def test_host_python_launcher_runs_the_plugin(tmp_path: Path) -> None:
    result = ci.install_plugin(tmp_path / "bin", python=sys.executable)
    assert result.launcher.read_text().startswith(f"#!{sys.executable} -IS\n")
    p = run_plugin(result.launcher)
    assert p.returncode == 0, p.stderr


def test_remove_plugin(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    ci.install_plugin(bin_dir, python=sys.executable)
    (bin_dir / "ptp").write_text("someone else's")
    assert len(ci.remove_plugin(bin_dir)) == 2
    assert only_files(bin_dir) == ["ptp"]
    assert ci.remove_plugin(bin_dir) == []


# -- the command line the chart runs ------------------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    conf_dir.mkdir()
    yield bin_dir, conf_dir


def test_cli_install_and_uninstall(dirs: tuple[Path, Path]) -> None:
    bin_dir, conf_dir = dirs
    write(conf_dir / "10-kindnet.conflist", KINDNET)
    common = [f"--cni-bin-dir={bin_dir}", f"--cni-conf-dir={conf_dir}"]
    assert ci.run(["--log-format=console", "install", *common, f"--python={sys.executable}",
                   "--fail-closed", "--timeout-ms=500", "--agent-socket=/run/rl/a.sock"]) == 0
    plugins = json.loads((conf_dir / "10-kindnet.conflist").read_text())["plugins"]
    assert plugins[-1] == {"type": "ringlane", "agentSocket": "/run/rl/a.sock",
                           "stateDir": "/var/lib/ringlane/cni", "failClosed": True,
                           "timeoutMs": 500}
    assert (bin_dir / "ringlane").exists()
    assert ci.run(["--log-format=console", "uninstall", *common]) == 0
    assert json.loads((conf_dir / "10-kindnet.conflist").read_text()) == KINDNET
    assert not (bin_dir / "ringlane").exists() and not (bin_dir / "ringlane.d").exists()


@pytest.mark.parametrize("bad", ["--timeout-ms=0", "--agent-socket=relative.sock",
                                 "--state-dir=var/lib"])
def test_cli_rejects_bad_plugin_fields(dirs: tuple[Path, Path], bad: str) -> None:
    bin_dir, conf_dir = dirs
    with pytest.raises(ci.InstallError):
        ci.run(["install", f"--cni-bin-dir={bin_dir}", f"--cni-conf-dir={conf_dir}", bad])


def test_module_entry_point_reports_errors_as_exit_1(dirs: tuple[Path, Path]) -> None:
    bin_dir, conf_dir = dirs  # no primary in conf_dir
    p = subprocess.run([sys.executable, "-m", "agent.cni_install", "--log-format=console",
                        "install", f"--cni-bin-dir={bin_dir}", f"--cni-conf-dir={conf_dir}",
                        f"--python={sys.executable}"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1
    assert "no network configuration" in p.stderr
