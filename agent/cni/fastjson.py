"""`loads`/`dumps` for the plugin without importing the `json` package.

Why: kubelet starts the plugin for every pod, and `import json` costs more than the rest of
the plugin's work together: json.decoder, json.scanner and json.encoder compile regular
expressions at import, pulling in `re`, `enum`, `functools` and `collections`, about 10 ms of a
~20 ms run (measured with `python -IS`, bench/cni_latency.py). The parsing and serialising
that `json` itself uses is done by its C accelerator `_json`; this module hands that
accelerator the same context `json` would (strict decoding, compact ASCII output).

`_json` is CPython's implementation module, so nothing here is trusted blindly: on import the
accelerator encodes and decodes a sample covering every JSON type, and if it is missing, has
another signature or gives another answer, `loads`/`dumps` are simply the `json` package's.
Errors are `json`'s own: on any failure the input is handed to `json.loads`, which raises
`json.JSONDecodeError` (a ValueError) worded as always; only the error path imports `json`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: see above, start-up is the point
if TYPE_CHECKING:
    from collections.abc import Callable

_WS = " \t\n\r"


class _DecodeContext:
    """The attributes `_json.make_scanner` reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def _not_serializable(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _accelerated() -> tuple[Callable[[str | bytes], object], Callable[[object], str]] | None:
    try:
        import _json
    except ImportError:
        return None
    # typeshed types the context as a json.JSONDecoder; the C code only reads its attributes
    scan = _json.make_scanner(_DecodeContext())  # type: ignore[arg-type]
    encode = _json.make_encoder(None, _not_serializable, _json.encode_basestring_ascii, None,
                                ":", ",", False, False, True)

    def loads(data: str | bytes) -> object:
        if isinstance(data, bytes | bytearray):
            s = data.decode("utf-8")
            s = s[1:] if s.startswith("\ufeff") else s  # as json does for bytes (utf-8-sig)
        else:
            s = data
        try:
            value, end = scan(s, len(s) - len(s.lstrip(_WS)))
        except Exception:
            # StopIteration (no value), or the scanner's own error, which it raises through
            # json.decoder.JSONDecodeError and fails to (SystemError) when json.decoder has
            # not been imported yet: the error path may take its time, let json word it.
            end = -1
        if end < 0 or s[end:].strip(_WS):
            import json

            return json.loads(s)  # raises json.JSONDecodeError
        return value

    def dumps(value: object) -> str:
        return "".join(encode(value, 0))

    sample = {"s": "a\"\\\n\u00e9\U0001f600", "i": -12, "f": 1.5, "t": True, "n": None,
              "l": [[], {}, 0, False]}
    text = '{"s":"a\\"\\\\\\n\\u00e9\\ud83d\\ude00","i":-12,"f":1.5,"t":true,"n":null,' \
           '"l":[[],{},0,false]}'
    try:
        if dumps(sample) != text or loads(text) != sample or loads(text.encode()) != sample:
            return None
    except Exception:
        return None
    return loads, dumps  # (errors are json's by construction, see loads)


def _fallback() -> tuple[Callable[[str | bytes], object], Callable[[object], str]]:
    import json

    def dumps(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))

    return json.loads, dumps


loads, dumps = _accelerated() or _fallback()
