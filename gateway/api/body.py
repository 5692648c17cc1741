"""Request bytes -> JSON value, with the whole-body rules of api.md API-2, API-3, API-20 and API-30.

Pure functions, no Flask: the gateway reads the (size-capped) body and the ``Content-Encoding`` header and
hands them here, then maps :class:`BodyError` to ``{"error": message}`` with ``BodyError.status``.

Design: the happy path is one ``orjson.loads`` plus a few C-speed byte scans. orjson differs from what the
spec wants in a few places (it silently turns too-large integers into floats, rejects a BOM, and its error
texts do not tell *which* 400 applies), so whenever orjson fails, or a scan says its answer might be
imprecise, the body is re-parsed by the stdlib ``json`` module with hooks that classify the problem exactly.
That slow path runs only for bad or unusual bodies.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass, field

import orjson

__all__ = [
    "MAX_DEPTH",
    "BodyError",
    "ParsedBody",
    "parse_body",
    "require_object",
    "MSG_INVALID_JSON",
    "MSG_NOT_UTF8",
    "MSG_NUMBER_RANGE",
    "MSG_TOO_DEEP",
    "MSG_NOT_OBJECT",
    "WARN_NUL_REMOVED",
]

MAX_DEPTH = 32

MSG_INVALID_JSON = "Request body must be valid JSON"
MSG_NOT_UTF8 = "Request body must be UTF-8 encoded JSON"
MSG_NUMBER_RANGE = "Request body contains a number outside the supported range"
MSG_TOO_DEEP = f"Request body nesting exceeds maximum depth of {MAX_DEPTH}"
MSG_NOT_OBJECT = "Request body must be a JSON object"
# A gzip stream that is corrupt or truncated has no message of its own in api.md; what the client sent,
# decoded per its own Content-Encoding, is not JSON, so it gets the "not parseable" 400.
MSG_BAD_GZIP = MSG_INVALID_JSON
WARN_NUL_REMOVED = "removed NUL characters"

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_BOM = b"\xef\xbb\xbf"
# orjson keeps every integer up to 2**64-1 and turns longer ones into floats without complaint. Any integer
# outside i64 has at least 19 digits, so only a body containing such a digit run (in a number *or* a
# string: a false positive merely costs the precise slow path) needs the stdlib re-parse. Mapping every
# digit to "0" and searching for a run of zeros is several times faster than a regex over the body.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_DIGIT_RUN = b"0" * 19
# A NUL can only enter a JSON string through this escape (raw control bytes are invalid JSON).
_NUL_ESCAPE = b"\\u0000"
_SURROGATE = re.compile("[\ud800-\udfff]")
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_NAMES = frozenset({"gzip", "x-gzip"})  # RFC 9110 §8.4.1.3: x-gzip is an alias of gzip
_IDENTITY_NAMES = frozenset({"", "identity"})


class BodyError(Exception):
    """A whole-request rejection; ``status`` is 400, 413 or 415 and ``message`` the exact api.md text."""

    status: int
    message: str

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class ParsedBody:
    """The parsed value plus body-level warnings (API-3) that every response of the request must carry."""

    value: object
    warnings: list[str] = field(default_factory=list)


class _RangeError(Exception):
    """Raised from inside stdlib ``json`` hooks; unwound to a 400 by :func:`_slow_parse`."""


class _InvalidLiteral(Exception):
    """NaN / Infinity / -Infinity: accepted by stdlib ``json`` but not JSON."""


def _too_large(n: int, limit: int) -> BodyError:
    return BodyError(413, f"Request body too large: {n} bytes (maximum {limit})")


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one gzip layer, never producing more than ``limit + 1`` bytes.

    A bomb is cut off as soon as the output passes ``limit``; the 413 then reports the bytes produced up to
    that point (``limit + 1``), since the true size is deliberately never computed. Concatenated gzip
    members (RFC 1952 §2.2) are decoded one after another, like ``gzip.decompress`` does.
    """
    out = bytearray()
    while True:
        decoder = zlib.decompressobj(_GZIP_WBITS)
        try:
            out += decoder.decompress(data, limit + 1 - len(out))
        except zlib.error:
            raise BodyError(400, MSG_BAD_GZIP) from None
        if len(out) > limit:
            raise _too_large(len(out), limit)
        if not decoder.eof:
            raise BodyError(400, MSG_BAD_GZIP)
        data = decoder.unused_data
        if not data:
            return bytes(out)


def _decode_content(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    if content_encoding is None:
        return raw
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    if all(c in _IDENTITY_NAMES for c in codings):
        return raw
    for c in codings:
        if c not in _GZIP_NAMES and c not in _IDENTITY_NAMES:
            raise BodyError(415, f"Unsupported Content-Encoding: {content_encoding.strip()}")
    data = raw
    for c in reversed(codings):  # codings are listed in the order they were applied
        if c in _GZIP_NAMES:
            data = _gunzip(data, limit)
    return data


def _exceeds_depth(value: object, limit: int) -> bool:
    """Iterative, so a value of any depth is checked without touching the C stack."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[dict[str, object] | list[object], int]] = [(value, 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        node, depth = pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                push((child, depth + 1))
    return False


def _check_int(text: str) -> int:
    # Checking the digit count first keeps int() away from Python's 4300-digit conversion guard.
    digits = len(text) - (text[0] == "-")
    if digits > 19:
        raise _RangeError
    n = int(text)
    if n < _I64_MIN or n > _I64_MAX:
        raise _RangeError
    return n


def _check_float(text: str) -> float:
    f = float(text)
    if math.isinf(f):
        raise _RangeError
    return f


def _reject_constant(_: str) -> object:
    raise _InvalidLiteral


_STDLIB_DECODER = json.JSONDecoder(
    parse_int=_check_int, parse_float=_check_float, parse_constant=_reject_constant, strict=True
)


class _Scrubber:
    """Removes U+0000 from keys and strings; optionally rejects lone surrogates (stdlib path only).

    Recursive on purpose: it only runs after the depth check, so recursion is bounded by MAX_DEPTH.
    Containers are rebuilt only where something changed.
    """

    __slots__ = ("check_surrogates", "removed")

    def __init__(self, check_surrogates: bool) -> None:
        self.check_surrogates = check_surrogates
        self.removed = False

    def string(self, s: str) -> str:
        if self.check_surrogates and _SURROGATE.search(s) is not None:
            raise BodyError(400, MSG_NOT_UTF8)
        if "\x00" in s:
            self.removed = True
            return s.replace("\x00", "")
        return s

    def value(self, v: object) -> object:
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, dict):
            changed = False
            out: dict[str, object] = {}
            for k, child in v.items():
                k2 = self.string(k)
                c2 = self.value(child)
                if k2 is not k or c2 is not child:
                    changed = True
                out[k2] = c2  # keys that differed only by NULs collide: the later value wins (API-3)
            return out if changed else v
        if isinstance(v, list):
            new = [self.value(child) for child in v]
            return new if any(a is not b for a, b in zip(new, v, strict=True)) else v
        return v


def _slow_parse(data: bytes) -> tuple[object, bool]:
    """Precise classification for bodies orjson refused or may have read imprecisely.

    Order of checks: encoding, syntax/number range (as the parser meets them), depth, lone surrogates.
    Returns the value and whether NULs were removed.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, MSG_NOT_UTF8) from None
    try:
        value: object = _STDLIB_DECODER.decode(text)
    except _RangeError:
        raise BodyError(400, MSG_NUMBER_RANGE) from None
    except (_InvalidLiteral, json.JSONDecodeError):
        raise BodyError(400, MSG_INVALID_JSON) from None
    except RecursionError:
        raise BodyError(400, MSG_TOO_DEEP) from None
    except ValueError:  # defensive: any other refusal of the stdlib parser is still "not JSON"
        raise BodyError(400, MSG_INVALID_JSON) from None
    if _exceeds_depth(value, MAX_DEPTH):
        raise BodyError(400, MSG_TOO_DEEP)
    scrubber = _Scrubber(check_surrogates=True)
    value = scrubber.value(value)
    return value, scrubber.removed


def parse_body(raw: bytes, content_encoding: str | None, limit: int) -> ParsedBody:
    """Decode, size-check and parse a request body; raises only :class:`BodyError`.

    ``limit`` is the endpoint's byte cap (API-30) and applies to the decompressed bytes. Nesting depth
    counts containers, a flat object or array being depth 1; depth 32 is allowed, 33 is not.
    """
    data = _decode_content(raw, content_encoding, limit)
    if len(data) > limit:
        raise _too_large(len(data), limit)
    if data.startswith(_BOM):
        data = data[3:]
    removed = False
    try:
        value: object = orjson.loads(data)
    except orjson.JSONDecodeError:
        value, removed = _slow_parse(data)
    else:
        if _DIGIT_RUN in data.translate(_DIGITS_TO_ZERO):
            value, removed = _slow_parse(data)
        else:
            if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _exceeds_depth(value, MAX_DEPTH):
                raise BodyError(400, MSG_TOO_DEEP)
            if _NUL_ESCAPE in data:
                scrubber = _Scrubber(check_surrogates=False)
                value = scrubber.value(value)
                removed = scrubber.removed
    return ParsedBody(value, [WARN_NUL_REMOVED] if removed else [])


def require_object(value: object) -> dict[str, object]:
    """Callers that need a top-level object (all but the events batch form) narrow the type here."""
    if not isinstance(value, dict):
        raise BodyError(400, MSG_NOT_OBJECT)
    return value
