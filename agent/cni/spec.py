"""What the CNI specification fixes, independent of Ringlane: versions, error codes and the
error object, environment and name rules, and result conversion between spec versions.

Standard library only and nothing imported that the plugin does not need on every call: this
module runs in a process that kubelet starts for every pod and stops a moment later, so its
import time is part of every pod's start-up: no `typing`, `dataclasses`, `ipaddress`, not even
`json` or `socket` (fastjson.py says why and what instead).
"""

from __future__ import annotations

import _socket
import os

from agent.cni import fastjson

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms at start-up

if TYPE_CHECKING:
    from typing import Any

    JSONObject = dict[str, Any]

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

# Well-known codes (spec section 5, "Error"); 100 and above are the plugin's own.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
# Ringlane's own codes.
AGENT_REFUSED = 100  # the agent answered {"ok": false, "error": ...}
AGENT_BAD_REPLY = 101  # the agent answered something that is not the protocol

IFNAME_MAX = 15  # IFNAMSIZ - 1


class CniError(Exception):
    """An error the plugin reports as the spec's error object (stdout, exit code 1).

    `msg` states exactly what is wrong (the value and where it came from); `details` says what
    the plugin expected or what to do about it, since runtimes often show only one of them.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details
        self.cni_version: str | None = None  # the config's, once known: errors speak it

    def to_json(self, cni_version: str) -> JSONObject:
        return {"cniVersion": cni_version, "code": self.code, "msg": self.msg,
                "details": self.details}


def version_key(version: str) -> tuple[int, ...]:
    """'1.0.0' -> (1, 0, 0), for "introduced in" comparisons between supported versions."""
    return tuple(int(part) for part in version.split("."))


def require_version(version: str, minimum: str, command: str) -> None:
    """CHECK came with 0.4.0, STATUS and GC with 1.1.0: an older config must not get them."""
    if version_key(version) < version_key(minimum):
        raise CniError(INCOMPATIBLE_VERSION,
                       f"config cniVersion {version} does not allow {command} "
                       f"(introduced in CNI {minimum})",
                       f"use cniVersion {minimum} or later in the network configuration")


def _valid_name_chars(value: str) -> bool:
    """The spec's rule for container IDs and network names: [a-zA-Z0-9][a-zA-Z0-9_.-]*."""
    if not value or not (value[0].isascii() and value[0].isalnum()):
        return False
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in value)


def check_container_id(value: str) -> None:
    if not _valid_name_chars(value):
        raise CniError(INVALID_ENVIRONMENT,
                       f"CNI_CONTAINERID={value!r} is not a valid container ID",
                       "it must start with a letter or digit followed by letters, digits, "
                       "'_', '.' or '-'")


def check_ifname(value: str) -> None:
    why = ""
    if len(value) > IFNAME_MAX:
        why = f"longer than {IFNAME_MAX} characters"
    elif value in (".", ".."):
        why = "'.' or '..'"
    elif any(c in "/:" or c.isspace() for c in value):
        why = "contains '/', ':' or whitespace"
    if why:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_IFNAME={value!r} is {why}",
                       "a Linux interface name is 1 to 15 characters without '/', ':' or "
                       "whitespace")


def check_network_name(value: object) -> str:
    if not isinstance(value, str) or not _valid_name_chars(value):
        raise CniError(INVALID_CONFIG,
                       f"network config 'name' {value!r} is missing or not a valid network "
                       "name",
                       "the runtime inserts the network's name: letters, digits, '_', '.', "
                       "'-', starting with a letter or digit")
    return value


def parse_cni_args(value: str) -> dict[str, str]:
    """CNI_ARGS: 'K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;IgnoreUnknown=1'."""
    args: dict[str, str] = {}
    for pair in value.split(";"):
        if not pair:
            continue
        key, sep, val = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT,
                           f"CNI_ARGS entry {pair!r} is not KEY=VALUE",
                           "CNI_ARGS is a ';'-separated list of KEY=VALUE pairs")
        args[key] = val
    return args


def netns_problem(path: str) -> str:
    """Why `path` cannot be a network namespace reference, or '' when it can.

    A netns is a file on nsfs (a bind mount under /run/netns, or /proc/<pid>/ns/net); nsfs is
    one superblock, so comparing the device with our own /proc/self/ns/net tells a namespace
    from an ordinary file without any syscall the standard library lacks.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    try:
        ours = os.stat("/proc/self/ns/net")
    except OSError:
        return ""  # no /proc: existence is all we can check
    if st.st_dev != ours.st_dev:
        return "is not a network namespace (expected /run/netns/<name> or /proc/<pid>/ns/net)"
    return ""


def same_netns_path(a: str, b: str) -> bool:
    """The runtime may write the sandbox as /var/run/netns/x and CNI_NETNS as /run/netns/x."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def ip_family(address: str) -> int:
    """4 or 6 for an address in CIDR notation ('10.1.2.3/24'), 0 when it is neither."""
    ip, sep, prefix = address.partition("/")
    if not sep or not prefix.isdigit():
        return 0
    for family, version, bits in ((_socket.AF_INET, 4, 32), (_socket.AF_INET6, 6, 128)):
        try:
            _socket.inet_pton(family, ip)
        except OSError:
            continue
        return version if int(prefix) <= bits else 0
    return 0


def convert_result(result: JSONObject, to_version: str) -> JSONObject:
    """`result` in `to_version`'s format, otherwise unchanged (the plugin passes prevResult
    through: unknown keys and every value it does not have to change stay as they were).

    The only difference between the supported formats is `ips[].version`: required in 0.3.x
    and 0.4.0, gone since 1.0.0. A prevResult normally already is in the config's version
    (the runtime converts it), but nothing breaks if it is not.
    """
    out = dict(result)
    out["cniVersion"] = to_version
    ips = result.get("ips")
    if isinstance(ips, list):
        converted: list[Any] = []
        for entry in ips:
            if isinstance(entry, dict):
                entry = dict(entry)
                if version_key(to_version) >= (1, 0, 0):
                    entry.pop("version", None)
                elif "version" not in entry:
                    family = ip_family(str(entry.get("address", "")))
                    if family:
                        entry["version"] = str(family)
            converted.append(entry)
        out["ips"] = converted
    return out


def dumps(value: object) -> str:
    return fastjson.dumps(value)
