"""The one streamed CSV writer of the data API (api.md API-122) and the dashboard downloads (dashboard.md DSH-23).

Both promise the same file: RFC 4180, comma-separated, CRLF, UTF-8 without BOM, a header row, empty cells for
null, and a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) prefixed with
``'`` — except a plain number such as ``-40.00``, which no spreadsheet runs. Keeping one writer keeps
that promise in one place (API-122-D1, DSH-23-D1).

A stream has sent its 200 before its last row is read, so a failure half-way cannot change the status. Instead
of ending early as if complete, the file then ends with one line starting ``#ERROR`` (API-122-D2, quality.md
Q-60); stored JSON with numbers beyond 64 bits is written as strings, never a failure (API-47-D1).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from flask import Response, g, has_request_context, stream_with_context

from core.reads import rfc3339
from core.reports import Range, json_safe

__all__ = ["ERROR_MARK", "FORMULA_PREFIXES", "csv_cell", "csv_download"]

log = logging.getLogger("mbuzz.gateway")
ERROR_MARK = "#ERROR"  # API-122-D2: first characters of the last line of an export that failed half-way

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # "-40.00" (a refund) is a number, never a formula
FLUSH_BYTES = 16384  # rows are buffered up to about this much text, then sent, so memory stays flat


def csv_cell(value: Any) -> str:
    """Plain text of a value as API-122-D1 writes it, neutralised against formula injection."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        text = rfc3339(value) or ""
    elif isinstance(value, dict | list):
        try:
            text = orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # an integer beyond 64 bits stored before API-47-D1
            text = orjson.dumps(json_safe(value)).decode()
    else:
        text = str(value)
    if text.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _error_line(written: int) -> str:
    """API-122-D2: what ends an export that failed after its 200 went out (logged with the same request id)."""
    request_id = (g.get("request_id") if has_request_context() else None) or str(uuid.uuid4())
    log.exception("CSV export failed after %d rows (request %s)", written, request_id)
    return (f"{ERROR_MARK} export incomplete: a server error stopped it after {written} rows; "
            f"the rows above are not the whole result (request {request_id})\r\n")


def _chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    written = 0
    try:
        for row in rows:
            writer.writerow([csv_cell(v) for v in row])
            written += 1
            if buffer.tell() > FLUSH_BYTES:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    except Exception:  # the status is sent: the file must say it is incomplete (API-122-D2)
        buffer.write(_error_line(written))
    yield buffer.getvalue().encode()


def csv_download(name: str, rng: Range, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """An attachment ``<name>_<start>_<end>.csv`` streamed while ``rows`` is read (a generator may query lazily,
    inside the request context that ``stream_with_context`` keeps open)."""
    filename = f"{name}_{rng.start.isoformat()}_{rng.end.isoformat()}.csv"
    resp = Response(stream_with_context(_chunks(header, rows)), mimetype="text/csv")
    resp.headers["Content-Type"] = "text/csv; charset=utf-8"
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp
