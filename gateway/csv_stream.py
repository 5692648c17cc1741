"""The one streamed CSV writer of the data API (api.md API-122) and the dashboard downloads (dashboard.md DSH-23).

Both promise the same file: RFC 4180, comma-separated, CRLF, UTF-8 without BOM, a header row, empty cells for
null, and a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) prefixed with
``'`` — except a plain number such as ``-40.00``, which no spreadsheet runs. Keeping one writer keeps
that promise in one place (API-122-D1, DSH-23-D1).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from flask import Response, stream_with_context

from core.reads import rfc3339
from core.reports import Range

__all__ = ["FORMULA_PREFIXES", "csv_cell", "csv_download"]

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
        text = orjson.dumps(value).decode()
    else:
        text = str(value)
    if text.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        if buffer.tell() > FLUSH_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def csv_download(name: str, rng: Range, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """An attachment ``<name>_<start>_<end>.csv`` streamed while ``rows`` is read (a generator may query lazily,
    inside the request context that ``stream_with_context`` keeps open)."""
    filename = f"{name}_{rng.start.isoformat()}_{rng.end.isoformat()}.csv"
    resp = Response(stream_with_context(_chunks(header, rows)), mimetype="text/csv")
    resp.headers["Content-Type"] = "text/csv; charset=utf-8"
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp
