"""Put the `ringlane` CNI plugin on a node and chain it after the node's primary network.

    python -m agent.cni_install install   [options]   copy the plugin, merge the conflist, exit
    python -m agent.cni_install uninstall [options]   remove every ringlane entry and the plugin
    python -m agent.cni_install watch     [options]   the DaemonSet's CNI container (below)
    python -m agent.cni_install announce-uninstall    the chart's pre-delete hook (below)

The plugin. Kubelet's runtime executes `<binDir>/ringlane` on the host, outside every container,
so it may not rely on an interpreter the host may lack (kind's nodes, most node images have
none). By default the plugin is installed with its own interpreter: this process's Python, the
standard-library modules the plugin can import (found by modulefinder, not guessed), the shared
libraries they link, and the dynamic loader that goes with them, under
`<binDir>/ringlane.d/<digest>/`. `<binDir>/ringlane` is a `/bin/sh` launcher that runs that
loader on that interpreter: nothing of the host is used but the kernel and /bin/sh.
`--python /usr/bin/python3` instead writes the plain `#!python -IS` launcher of
agent/cni/launcher.py for hosts that have a Python of their own. Each version lives in its own
digest directory and the launcher is replaced atomically, so a runtime executing the previous
plugin during an upgrade never sees a half-written file.

The network configuration. The runtime uses the first file of the conf dir, in byte order, that
ends in .conf, .conflist or .json (libcni's rule); that is the primary, unless `--chain-target`
names another (by network name or file name). A .conflist gets `{"type": "ringlane", ...}` as
its last plugin; every other plugin and every field we do not know are kept as they were. A
.conf or .json holds a single plugin: it is converted the way libcni converts one
(`{"cniVersion", "name", "plugins": [<the whole original>]}`), ringlane appended, written as
`<name>.conflist` and the original removed; the original text travels inside the conflist
under CONVERTED_KEY (libcni ignores unknown top-level keys) so that uninstall puts back the very
bytes it replaced. Every write is a temp file in the same directory (a name libcni ignores),
fsync, rename: a runtime reading the directory sees the old file or the new one, never a part.
A write is abandoned and redone when the file changed between our read and our rename.

`watch` (the chart's CNI container, a restartable init container that outlives the agent):
installs the plugin, waits until the agent says it is ready on its control socket, merges,
then every `--interval` seconds merges again if the primary rewrote its file (or another file
became the primary) and reinstalls the plugin if it vanished. `--ready-file` exists while the
entry is in place (the container's readiness probe). With `--namespace` and
`--uninstall-selector` it also watches for the chart's uninstall marker (the pre-delete hook's
pod): on seeing it, it removes the entry at once (new pods stop being chained) and drops its
readiness (the hook's acknowledgement); on the SIGTERM that follows, and only then, it runs
`--cleanup-command` (`ringlane-agent --cleanup`) and removes the plugin. A SIGTERM without the
marker (upgrade, eviction, drain) leaves everything in place: the plugin fails open and the
next agent adopts the node's pods.

`announce-uninstall` is that hook: its own pod is the marker; it waits (bounded) until every
DaemonSet pod's CNI container has dropped its readiness, then exits 0 so that the uninstall
proceeds even when a node never answers.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agent.cni import launcher

log = structlog.get_logger("ringlane.cni_install")

PLUGIN_TYPE = "ringlane"
CONF_EXTENSIONS = (".conf", ".conflist", ".json")  # libcni.ConfFiles, in the runtimes' order
CONVERTED_KEY = "ringlane.io/converted-from"
TMP_SUFFIX = ".ringlane-tmp"  # ends in none of CONF_EXTENSIONS: the runtime never loads one
DEFAULT_SOCKET = Path("/run/ringlane/agent.sock")
BUNDLE_DIR = "ringlane.d"
COMPLETE = ".complete"  # written last into a digest directory: the copy is whole
KEEP_OLD_SECONDS = 60.0  # a plugin started from the previous version may still import from it
# Imported by the interpreter itself before any script (the file-system and stdio codecs are
# looked up by name at start-up), so no import statement shows them to modulefinder.
STARTUP_MODULES = ("encodings", "codecs", "io", "abc", "os", "stat", "posixpath",
                   "genericpath", "_collections_abc", "zipimport")

JSONObject = dict[str, Any]


class InstallError(Exception):
    """Something on the node prevents the install; the message says what and where."""


# -- the network configuration ---------------------------------------------------------------


def plugin_entry(*, agent_socket: str = str(DEFAULT_SOCKET),
                 state_dir: str = "/var/lib/ringlane/cni", fail_closed: bool = False,
                 timeout_ms: int = 3000) -> JSONObject:
    """Ringlane's element of `plugins` (agent/cni/plugin.py documents each field)."""
    return {"type": PLUGIN_TYPE, "agentSocket": agent_socket, "stateDir": state_dir,
            "failClosed": fail_closed, "timeoutMs": timeout_ms}


def conf_files(conf_dir: Path) -> list[Path]:
    """The files the runtime considers, in the order it considers them."""
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return []
    return [conf_dir / n for n in names
            if n.endswith(CONF_EXTENSIONS) and (conf_dir / n).is_file()]


@dataclass(frozen=True)
class ConfFile:
    """One network configuration file as read: its text, its parsed form, its identity."""

    path: Path
    text: str
    doc: JSONObject
    stat: tuple[int, int, int]  # inode, size, mtime_ns: has it changed since we read it?

    @property
    def is_list(self) -> bool:
        return self.path.suffix == ".conflist"

    @property
    def network_name(self) -> str:
        return str(self.doc.get("name", ""))

    def plugins(self) -> list[Any]:
        if self.is_list:
            plugins = self.doc.get("plugins")
            return plugins if isinstance(plugins, list) else []
        return [self.doc]


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_conf(path: Path) -> ConfFile:
    """Parse one file; InstallError when it is not a JSON object (a primary mid-write, or
    not a network configuration at all)."""
    try:
        with open(path, encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"{path}: cannot read: {exc}") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InstallError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InstallError(f"{path}: not a JSON object")
    if path.suffix == ".conflist" and not isinstance(doc.get("plugins"), list):
        raise InstallError(f"{path}: a .conflist without a 'plugins' list")
    return ConfFile(path, text, doc, _identity(st))


def find_primary(conf_dir: Path, target: str = "") -> ConfFile | None:
    """The file the runtime uses (the first one), or the one `target` names by network name
    or file name. None when there is none yet (the primary plugin has not written it)."""
    files = conf_files(conf_dir)
    if not target:
        return read_conf(files[0]) if files else None
    for path in files:
        if path.name == target:
            return read_conf(path)
        with contextlib.suppress(InstallError):
            conf = read_conf(path)
            if conf.network_name == target:
                return conf
    return None


def _is_ours(plugin: Any) -> bool:
    return isinstance(plugin, dict) and plugin.get("type") == PLUGIN_TYPE


def _dump(doc: JSONObject) -> str:
    return json.dumps(doc, indent=2) + "\n"


def write_atomic(path: Path, text: str, mode: int = 0o644,
                 expect: tuple[int, int, int] | None = None) -> None:
    """Replace `path` with `text` in one rename. With `expect`, refuse (ConcurrentWrite) when
    `path` is no longer the file read: someone else wrote it meanwhile."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if expect is not None:
            try:
                now = _identity(os.stat(path))
            except FileNotFoundError as exc:
                raise ConcurrentWrite(f"{path} vanished while we merged it") from exc
            if now != expect:
                raise ConcurrentWrite(f"{path} changed while we merged it")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class ConcurrentWrite(InstallError):
    """The file changed under us; read it again and redo the change."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o7777


def merged_doc(conf: ConfFile, entry: JSONObject) -> JSONObject:
    """`conf` as a conflist whose last plugin is `entry`, everything else kept in order."""
    if conf.is_list:
        doc = dict(conf.doc)
        doc["plugins"] = [p for p in conf.doc["plugins"] if not _is_ours(p)] + [entry]
        return doc
    original = {k: v for k, v in conf.doc.items()}
    if _is_ours(original):
        raise InstallError(f"{conf.path}: the primary network is ringlane itself; ringlane "
                           "only chains after another plugin")
    return {"cniVersion": original.get("cniVersion", "0.3.1"),
            "name": original.get("name", ""),
            "plugins": [original, entry],
            CONVERTED_KEY: {"file": conf.path.name, "text": conf.text}}


def merge(conf: ConfFile, entry: JSONObject) -> Path | None:
    """Chain `entry` into `conf`; returns the file written, None when it already was (the only
    ringlane plugin, the last one, equal to `entry`)."""
    plugins = conf.plugins()
    if conf.is_list and plugins and plugins[-1] == entry \
            and sum(_is_ours(p) for p in plugins) == 1:
        return None
    doc = merged_doc(conf, entry)
    if conf.is_list:
        write_atomic(conf.path, _dump(doc), _mode(conf.path), expect=conf.stat)
        return conf.path
    dest = conf.path.with_suffix(".conflist")
    if dest.exists():
        try:
            theirs = read_conf(dest).doc.get(CONVERTED_KEY)
        except InstallError:
            theirs = None
        if not (isinstance(theirs, dict) and theirs.get("file") == conf.path.name):
            raise InstallError(f"cannot convert {conf.path} to a conflist: {dest} exists and is "
                               "not ours; name the network to chain with --chain-target")
    write_atomic(dest, _dump(doc), _mode(conf.path))
    # From here the runtime loads `dest`... once the original, which sorts first, is gone.
    if _identity(os.stat(conf.path)) != conf.stat:
        dest.unlink()
        raise ConcurrentWrite(f"{conf.path} changed while we converted it")
    conf.path.unlink()
    _fsync_dir(conf.path.parent)
    return dest


def unmerge(conf: ConfFile) -> Path | None:
    """Take every ringlane plugin out of `conf` and undo a conversion we made; returns the
    file written (or restored), None when there was nothing of ours."""
    converted = conf.doc.get(CONVERTED_KEY)
    if not conf.is_list or not (any(_is_ours(p) for p in conf.plugins()) or converted):
        return None
    rest = [p for p in conf.plugins() if not _is_ours(p)]
    if isinstance(converted, dict) and isinstance(converted.get("file"), str) \
            and isinstance(converted.get("text"), str) and len(rest) == 1:
        original = conf.path.parent / Path(converted["file"]).name
        write_atomic(original, converted["text"], _mode(conf.path))
        conf.path.unlink()
        _fsync_dir(conf.path.parent)
        return original
    doc = {k: v for k, v in conf.doc.items() if k != CONVERTED_KEY}
    doc["plugins"] = rest
    write_atomic(conf.path, _dump(doc), _mode(conf.path), expect=conf.stat)
    return conf.path


def ensure_merged(conf_dir: Path, entry: JSONObject, target: str = "",
                  attempts: int = 5) -> Path | None:
    """Chain into the primary, retrying when it is written concurrently. Returns the file
    written, None when nothing had to change; InstallError when there is no primary yet."""
    for _ in range(attempts):
        conf = find_primary(conf_dir, target)
        if conf is None:
            raise InstallError(f"no network configuration in {conf_dir}"
                               + (f" named {target!r}" if target else "")
                               + " yet (the primary CNI plugin writes it)")
        try:
            return merge(conf, entry)
        except ConcurrentWrite as exc:
            log.info("cni_install.retry", reason=str(exc))
    raise InstallError(f"{conf_dir}: the primary configuration kept changing under us")


def is_merged(conf_dir: Path, entry: JSONObject, target: str = "") -> bool:
    try:
        conf = find_primary(conf_dir, target)
    except InstallError:
        return False
    return conf is not None and conf.is_list and conf.plugins()[-1:] == [entry]


def unmerge_all(conf_dir: Path, attempts: int = 5) -> list[Path]:
    """Remove ringlane from every file of the directory (the primary may have changed since
    the merge); files that are not configurations are left alone."""
    changed: list[Path] = []
    for path in conf_files(conf_dir):
        for _ in range(attempts):
            try:
                written = unmerge(read_conf(path))
            except ConcurrentWrite:
                continue
            except InstallError as exc:
                log.info("cni_install.skipped", file=str(path), reason=str(exc))
                break
            if written is not None:
                changed.append(written)
            break
    return changed


# -- the plugin executable -------------------------------------------------------------------


def plugin_modules() -> list[tuple[str, Path]]:
    """(relative path, source) of the plugin's own files: agent/__init__.py and agent/cni."""
    root = Path(launcher.PACKAGE_ROOT)
    files = [("agent/__init__.py", root / "agent" / "__init__.py")]
    for p in sorted((root / "agent" / "cni").glob("*.py")):
        files.append((f"agent/cni/{p.name}", p))
    return files


@dataclass
class Bundle:
    """What to copy for a self-contained interpreter: relative path -> source file."""

    files: dict[str, Path] = field(default_factory=dict)
    python: str = ""  # relative path of the interpreter
    loader: str = ""  # relative path of the dynamic loader; empty for a static interpreter
    libdir: str = "lib/so"


def _stdlib_dirs() -> tuple[Path, Path]:
    paths = sysconfig.get_paths()
    stdlib = Path(paths["stdlib"])
    dynload = Path(paths["platstdlib"]) / "lib-dynload"
    return stdlib, dynload


def shared_libraries(elf: Path) -> tuple[dict[str, Path], Path | None]:
    """soname -> file of every library `elf` loads, and its dynamic loader (None: static).
    Uses ldd (libc-bin, part of every Debian system)."""
    p = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        if "not a dynamic executable" in p.stdout + p.stderr:
            return {}, None
        raise InstallError(f"ldd {elf} failed: {p.stderr.strip() or p.stdout.strip()}")
    libs: dict[str, Path] = {}
    loader: Path | None = None
    for line in p.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            name, target = parts[0], parts[parts.index("=>") + 1]
            if target == "not":
                raise InstallError(f"{elf} needs {name}, which is not found")
            if target.startswith("/"):
                libs[name] = Path(target)
        elif parts and parts[0].startswith("/"):
            loader = Path(parts[0])
    return libs, loader


PLUGIN_RUNTIME = ("plugin", "protocol", "queue", "spec", "fastjson")  # what the plugin runs

_TRACE = """
import json, sys
sys.path.insert(0, sys.argv[1])
for name in json.loads(sys.argv[2]):
    __import__(name)
print(json.dumps({n: getattr(m, "__file__", None) for n, m in sys.modules.items()}))
"""


def plugin_imports() -> list[str]:
    """Every module the plugin's files import, at module level or in a function (lazy paths
    such as DEL's queue or the traceback of an internal error), except under TYPE_CHECKING."""
    import ast

    names: set[str] = set()
    for mod in PLUGIN_RUNTIME:
        tree = ast.parse((Path(launcher.PACKAGE_ROOT) / "agent" / "cni" / f"{mod}.py")
                         .read_text())
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                    and node.test.id == "TYPE_CHECKING":
                skip.update(id(n) for sub in node.body for n in ast.walk(sub))
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                if node.module == "agent.cni":  # from agent.cni import protocol, ...
                    names.update(f"agent.cni.{a.name}" for a in node.names)
    return sorted(names | {"agent.cni.plugin"})


def runtime_modules(executable: Path) -> dict[str, Path]:
    """module -> file of everything the interpreter loads, started as the plugin is
    (`-I -S`), to import what the plugin imports and every codec (the runtime's locale picks
    the one start-up needs). Importing a module runs its own module-level imports, so this
    is the closure the plugin can reach, without the optional and platform-specific imports
    that a static scan (modulefinder) drags in by the hundred."""
    stdlib, _ = _stdlib_dirs()
    wanted = [*plugin_imports(), *STARTUP_MODULES,
              *(f"encodings.{p.stem}" for p in sorted((stdlib / "encodings").glob("*.py"))
                if p.stem not in ("__init__", "mbcs", "oem", "cp65001"))]
    p = subprocess.run([str(executable), "-I", "-S", "-c", _TRACE, launcher.PACKAGE_ROOT,
                        json.dumps(wanted)], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise InstallError(f"cannot list the plugin's modules with {executable}: "
                           f"{p.stderr.strip()[-500:]}")
    loaded: dict[str, str | None] = json.loads(p.stdout)
    return {name: Path(f) for name, f in loaded.items() if f}


def interpreter_bundle(executable: Path | None = None) -> Bundle:
    """The files that run the plugin with this interpreter on a host that has none: the
    interpreter, the standard library modules the plugin reaches, their shared libraries and
    the dynamic loader (the host's libc is never used: it may be older or absent)."""
    exe = Path(os.path.realpath(executable or sys.executable))
    stdlib, dynload = _stdlib_dirs()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    bundle = Bundle(python=f"bin/{version}")
    bundle.files[bundle.python] = exe
    extensions: list[Path] = []
    for src in runtime_modules(exe).values():
        for base, rel_base in ((dynload, f"lib/{version}/lib-dynload"),
                               (stdlib, f"lib/{version}")):
            if src.is_absolute() and src.is_relative_to(base):
                rel = f"{rel_base}/{src.relative_to(base).as_posix()}"
                bundle.files[rel] = src
                if src.suffix == ".so":
                    extensions.append(src)
                else:
                    cached = _cached(src)
                    if cached is not None:
                        bundle.files[f"{rel_base}/{cached.relative_to(base).as_posix()}"] = cached
                break
    # getpath's landmarks: <prefix>/lib/pythonX.Y/os.py and .../lib-dynload next to bin/
    bundle.files[f"lib/{version}/os.py"] = stdlib / "os.py"
    loader: Path | None = None
    for elf in [exe, *extensions]:
        libs, ld = shared_libraries(elf)
        loader = loader or ld
        for name, path in libs.items():
            bundle.files[f"{bundle.libdir}/{name}"] = Path(os.path.realpath(path))
    if loader is not None:
        bundle.loader = f"{bundle.libdir}/{loader.name}"
        bundle.files[bundle.loader] = Path(os.path.realpath(loader))
    return bundle


def _cached(src: Path) -> Path | None:
    """The interpreter's compiled copy of `src`, when it has one (start-up of every pod)."""
    tag = sys.implementation.cache_tag
    pyc = src.parent / "__pycache__" / f"{src.stem}.{tag}.pyc"
    return pyc if pyc.is_file() else None


def _digest(files: Mapping[str, Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for rel in sorted(files):
        h.update(rel.encode() + b"\0")
        h.update(files[rel].read_bytes())
    return h.hexdigest()[:16]


def bundled_launcher_text(root: Path, bundle: Bundle) -> str:
    python = shlex.quote(str(root / bundle.python))
    main = shlex.quote(str(root / "main.py"))
    if bundle.loader:
        run = (f"{shlex.quote(str(root / bundle.loader))} --library-path "
               f"{shlex.quote(str(root / bundle.libdir))} {python}")
    else:
        run = python
    return ("#!/bin/sh\n"
            "# ringlane CNI plugin with its own interpreter; generated by "
            "`python -m agent.cni_install`\n"
            f"exec {run} -I -S {main} \"$@\"\n")


@dataclass(frozen=True)
class PluginInstall:
    launcher: Path
    root: Path
    changed: bool


def install_plugin(bin_dir: Path, *, python: str = "", name: str = PLUGIN_TYPE,
                   bundle: Bundle | None = None) -> PluginInstall:
    """Write `<bin_dir>/<name>` and its files under `<bin_dir>/<name>.d/<digest>`; a no-op
    when that version is already complete and the launcher points at it. `python`: use the
    host's interpreter at that path instead of bundling this one."""
    files = dict(plugin_modules())
    if not python:
        bundle = bundle or interpreter_bundle()
        files.update(bundle.files)
    digest = _digest(files, python)
    base = bin_dir / f"{name}.d"
    root = base / digest
    entry = launcher.launcher_text(python or "/usr/bin/python3", str(root))  # main.py
    text = launcher.launcher_text(python, str(root)) if python else \
        bundled_launcher_text(root, bundle or Bundle())
    dest = bin_dir / name
    changed = False
    if not (root / COMPLETE).exists():
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=base, prefix=f".{digest}."))
        try:
            for rel, src in files.items():
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)
            (staging / "main.py").write_text(entry)
            (staging / COMPLETE).write_text(digest + "\n")
            if root.exists():  # an interrupted copy of the same version
                shutil.rmtree(root)
            os.rename(staging, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        changed = True
    try:
        current = dest.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        current = ""
    if current != text:
        _write_exec(dest, text)
        changed = True
    _prune(base, keep=root)
    return PluginInstall(dest, root, changed)


def _write_exec(dest: Path, text: str) -> None:
    tmp = dest.with_name(f".{dest.name}{TMP_SUFFIX}.{os.getpid()}")
    tmp.write_text(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


def _prune(base: Path, keep: Path, older_than: float = KEEP_OLD_SECONDS) -> None:
    """Remove previous versions, once no plugin started from them can still be importing."""
    now = time.time()
    for entry in base.iterdir():
        if entry == keep or not entry.is_dir():
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - entry.stat().st_mtime > older_than:
                shutil.rmtree(entry, ignore_errors=True)


def remove_plugin(bin_dir: Path, name: str = PLUGIN_TYPE) -> list[Path]:
    """Remove the launcher (first: nothing can start the plugin any more) and its files."""
    removed = []
    dest = bin_dir / name
    if dest.exists() or dest.is_symlink():
        dest.unlink()
        removed.append(dest)
    base = bin_dir / f"{name}.d"
    if base.exists():
        shutil.rmtree(base)
        removed.append(base)
    return removed


# -- the agent and the cluster ---------------------------------------------------------------


def agent_ready(socket_path: Path, timeout: float = 2.0) -> bool:
    """The agent answers `status` with ready: its data path is up and programmed."""
    from agent.control import request
    from agent.errors import RinglaneError

    try:
        status = request(socket_path, "status", timeout=timeout)
    except (RinglaneError, OSError, ValueError):
        return False
    return isinstance(status, dict) and status.get("ready") is True


def cni_container_acked(pod: Mapping[str, Any], container: str) -> bool:
    """Has this DaemonSet pod acknowledged the uninstall? Its CNI container reports not ready
    (it took the entry out), or it is not running at all (nothing there will re-merge)."""
    status = pod.get("status") or {}
    if status.get("phase") not in ("Pending", "Running"):
        return True
    for cs in [*(status.get("initContainerStatuses") or []),
               *(status.get("containerStatuses") or [])]:
        if cs.get("name") == container:
            return cs.get("ready") is not True
    return True


# -- the long-running container --------------------------------------------------------------


@dataclass
class WatchOptions:
    conf_dir: Path
    bin_dir: Path
    entry: JSONObject
    agent_socket: Path = DEFAULT_SOCKET
    target: str = ""
    python: str = ""
    interval: float = 2.0
    ready_file: Path | None = None
    cleanup_command: list[str] = field(default_factory=list)
    wait_for_agent: bool = True


class Watcher:
    """The CNI container's loop; `uninstall` is set by the marker watch (or a test)."""

    def __init__(self, opts: WatchOptions,
                 ready: Callable[[Path], bool] = agent_ready) -> None:
        self.opts = opts
        self.agent_is_ready = ready
        self.stop = threading.Event()
        self.uninstall = threading.Event()
        self.merged = False
        self.withdrawn = False
        self.plugin: PluginInstall | None = None

    def _set_ready(self, ready: bool) -> None:
        path = self.opts.ready_file
        if path is None:
            return
        if ready:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("merged\n")
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def step(self) -> None:
        """One pass: what the loop does every interval."""
        o = self.opts
        if self.uninstall.is_set():
            if not self.withdrawn:
                changed = unmerge_all(o.conf_dir)
                self._set_ready(False)
                self.withdrawn = True
                log.info("cni_install.withdrawn", files=[str(p) for p in changed])
            return
        if not (o.bin_dir / PLUGIN_TYPE).exists() or \
                (self.plugin is not None and not (self.plugin.root / COMPLETE).exists()):
            self.plugin = install_plugin(o.bin_dir, python=o.python)
            log.info("cni_install.plugin_reinstalled", bin_dir=str(o.bin_dir))
        elif self.plugin is not None:  # previous versions, once old enough
            _prune(self.plugin.root.parent, keep=self.plugin.root)
        if not self.merged and o.wait_for_agent and not self.agent_is_ready(o.agent_socket):
            return  # chain only behind an agent that can serve the plugin
        try:
            written = ensure_merged(o.conf_dir, o.entry, o.target)
        except InstallError as exc:
            log.warning("cni_install.not_merged", reason=str(exc))
            return
        if written is not None:
            log.info("cni_install.merged", file=str(written),
                     again=self.merged)  # again: the primary rewrote its file
        self.merged = True
        self._set_ready(True)

    def run(self) -> int:
        o = self.opts
        result = self.plugin = install_plugin(o.bin_dir, python=o.python)
        log.info("cni_install.plugin", launcher=str(result.launcher), root=str(result.root),
                 changed=result.changed)
        while True:
            try:
                self.step()
            except (InstallError, OSError) as exc:
                log.error("cni_install.step_failed", error=str(exc))
            if self.stop.wait(o.interval):
                break
        return self.shutdown()

    def shutdown(self) -> int:
        """SIGTERM: leave everything unless the chart is being removed."""
        if not self.uninstall.is_set():
            log.info("cni_install.stopped", kept="conflist entry and plugin")
            return 0
        o = self.opts
        unmerge_all(o.conf_dir)
        self._set_ready(False)
        code = 0
        if o.cleanup_command:
            p = subprocess.run(o.cleanup_command, check=False)
            code = 0 if p.returncode == 0 else 1
            log.info("cni_install.node_cleanup", command=o.cleanup_command,
                     returncode=p.returncode)
        removed = remove_plugin(o.bin_dir)
        log.info("cni_install.uninstalled", removed=[str(p) for p in removed])
        return code


def announce_uninstall(namespace: str, selector: str, container: str, timeout: float,
                       interval: float = 2.0) -> int:
    """The pre-delete hook: wait until every DaemonSet pod acknowledged (or `timeout`)."""
    from agent.k8s.marker import list_pods  # the only importer of kubernetes is agent.k8s

    deadline = time.monotonic() + timeout
    while True:
        pods = list_pods(namespace, selector)
        pending = [_camel_pod(p)["metadata"]["name"] for p in pods
                   if not cni_container_acked(_camel_pod(p), container)]
        if not pending:
            log.info("cni_install.uninstall_acknowledged", pods=len(pods))
            return 0
        if time.monotonic() > deadline:
            log.warning("cni_install.uninstall_unacknowledged", pods=pending,
                        hint="those nodes keep the ringlane entry; see docs/operations.md")
            return 0
        time.sleep(interval)


def _camel_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The client's to_dict() speaks snake_case; cni_container_acked reads the API's names."""
    status = pod.get("status") or {}
    return {"metadata": pod.get("metadata") or {},
            "status": {"phase": status.get("phase"),
                       "initContainerStatuses": status.get("init_container_statuses")
                       or status.get("initContainerStatuses"),
                       "containerStatuses": status.get("container_statuses")
                       or status.get("containerStatuses")}}


# -- command line ----------------------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cni-bin-dir", type=Path, default=Path("/opt/cni/bin"),
                   help="where the runtime finds plugins (default /opt/cni/bin)")
    p.add_argument("--cni-conf-dir", type=Path, default=Path("/etc/cni/net.d"),
                   help="the runtime's network configuration directory (default /etc/cni/net.d)")


def _add_install(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--chain-target", default="",
                   help="network name or file name to chain after (default: the first file)")
    p.add_argument("--python", default="",
                   help="use the host's interpreter at this path instead of bundling one")
    p.add_argument("--agent-socket", default=str(DEFAULT_SOCKET))
    p.add_argument("--state-dir", default="/var/lib/ringlane/cni")
    p.add_argument("--fail-closed", action="store_true",
                   help="refuse pods the agent did not confirm (default: fail open)")
    p.add_argument("--timeout-ms", type=int, default=3000)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent.cni_install", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    sub = p.add_subparsers(dest="command", required=True)
    _add_install(sub.add_parser("install", help="copy the plugin and merge the conflist"))
    _add_common(sub.add_parser("uninstall", help="unmerge every conflist, remove the plugin"))
    w = sub.add_parser("watch", help="install, wait for the agent, merge, keep it merged")
    _add_install(w)
    w.add_argument("--interval", type=float, default=2.0)
    w.add_argument("--ready-file", type=Path)
    w.add_argument("--no-wait-for-agent", action="store_true")
    w.add_argument("--namespace", default="")
    w.add_argument("--uninstall-selector", default="",
                   help="label selector of the uninstall marker pod")
    w.add_argument("--cleanup-command", default="",
                   help="run on the SIGTERM that follows the marker (e.g. ringlane-agent "
                        "--cleanup --config FILE)")
    a = sub.add_parser("announce-uninstall", help="the pre-delete hook")
    a.add_argument("--namespace", required=True)
    a.add_argument("--selector", required=True, help="label selector of the DaemonSet's pods")
    a.add_argument("--container", default="cni")
    a.add_argument("--timeout", type=float, default=120.0)
    return p


def _entry(args: argparse.Namespace) -> JSONObject:
    if not 1 <= args.timeout_ms <= 60_000:
        raise InstallError(f"--timeout-ms {args.timeout_ms} is not in 1..60000")
    for name in ("agent_socket", "state_dir"):
        if not str(getattr(args, name)).startswith("/"):
            raise InstallError(f"--{name.replace('_', '-')} must be an absolute path")
    return plugin_entry(agent_socket=args.agent_socket, state_dir=args.state_dir,
                        fail_closed=args.fail_closed, timeout_ms=args.timeout_ms)


def run(argv: Iterable[str]) -> int:
    args = _parser().parse_args(list(argv))
    from agent import logs

    logs.configure(args.log_format)
    if args.command == "install":
        entry = _entry(args)
        result = install_plugin(args.cni_bin_dir, python=args.python)
        written = ensure_merged(args.cni_conf_dir, entry, args.chain_target)
        log.info("cni_install.installed", launcher=str(result.launcher),
                 conflist=str(written) if written else "unchanged")
        return 0
    if args.command == "uninstall":
        changed = unmerge_all(args.cni_conf_dir)
        removed = remove_plugin(args.cni_bin_dir)
        log.info("cni_install.uninstalled", conf=[str(p) for p in changed],
                 removed=[str(p) for p in removed])
        return 0
    if args.command == "announce-uninstall":
        return announce_uninstall(args.namespace, args.selector, args.container, args.timeout)
    opts = WatchOptions(conf_dir=args.cni_conf_dir, bin_dir=args.cni_bin_dir, entry=_entry(args),
                        agent_socket=Path(args.agent_socket), target=args.chain_target,
                        python=args.python, interval=args.interval, ready_file=args.ready_file,
                        cleanup_command=shlex.split(args.cleanup_command),
                        wait_for_agent=not args.no_wait_for_agent)
    watcher = Watcher(opts)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: watcher.stop.set())
    if args.namespace and args.uninstall_selector:
        from agent.k8s.marker import watch_marker

        threading.Thread(target=watch_marker, name="uninstall-marker", daemon=True,
                         args=(args.namespace, args.uninstall_selector, watcher.uninstall,
                               watcher.stop)).start()
    return watcher.run()


def main() -> None:
    try:
        sys.exit(run(sys.argv[1:]))
    except InstallError as exc:
        log.error("cni_install.failed", error=str(exc))
        sys.exit(1)


if __name__ == "__main__":
    main()
