"""fastjson behaves exactly like json, in the situation the plugin is in: a fresh isolated
interpreter where nothing has imported the `json` package yet (the accelerator's error path
depends on that)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

from tests.cni.conftest import ROOT

INPUTS = [
    "", " ", "{", "}", "[1,]", '{"a":1,}', '{"a" 1}', "nul", "tru", "01", "1.", "-",
    '"unterminated', '"\\x"', '"\\ud800"', "{} x", "[] []", "\ufeff{}", "NaN", "-Infinity",
    '{"a": [1, 2.5e3, -0, -1.5E-2, "\\u00e9\\n", true, false, null, {}]}', ' \n\t{"k":"v"}\r\n',
    '{"dup": 1, "dup": 2}', "1e400", '"' + "x" * 5000 + '"', "[" * 50 + "]" * 50,
]
VALUES: list[Any] = [
    {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": 1}]},
    ["\u00e9\U0001f600", "\"\\\n\t\x00", 1.5, -0.0, 10**30, True, None], {"1": 2}, "", 0,
]


def _outcome_script(loads_from: str) -> str:
    """The outcomes of every input, computed before anything imports json (that comes last,
    to print them)."""
    return (
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        f"from agent.cni.fastjson import loads, dumps\n"
        f"out = []\n"
        f"for text in {INPUTS!r}:\n"
        f"    for data in (text, text.encode()):\n"
        f"        try:\n"
        f"            out.append(['ok', repr({loads_from}(data))])\n"
        f"        except Exception as e:\n"
        f"            out.append([type(e).__name__, str(e)])\n"
        f"out.append(['dumps', [dumps(v) for v in {VALUES!r}]])\n"
        f"out.append(['accelerated', loads.__qualname__.startswith('_accelerated')])\n"
        f"import json\n"
        f"print(json.dumps(out))\n")


def _expected() -> list[Any]:
    out: list[Any] = []
    for text in INPUTS:
        for data in (text, text.encode()):
            try:
                out.append(["ok", repr(json.loads(data))])
            except Exception as e:
                out.append([type(e).__name__, str(e)])
    out.append(["dumps", [json.dumps(v, separators=(",", ":")) for v in VALUES]])
    out.append(["accelerated", True])
    return out


def test_fastjson_matches_json_in_a_fresh_isolated_interpreter() -> None:
    p = subprocess.run([sys.executable, "-IS", "-c", _outcome_script("loads")],
                       capture_output=True, text=True, check=True)
    assert json.loads(p.stdout) == _expected()


def test_nan_round_trip() -> None:
    from agent.cni import fastjson

    value = fastjson.loads("[NaN]")
    assert isinstance(value, list) and math.isnan(value[0])
