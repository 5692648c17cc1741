"""CSV downloads of dashboard tables (dashboard.md DSH-23): exactly what the page shows, streamed.

The same rules as the data API's CSV (api.md API-122): RFC 4180 with CRLF, UTF-8 without BOM, and a cell that a
spreadsheet would run as a formula is prefixed with `'`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from flask import Response, stream_with_context

if TYPE_CHECKING:
    from gateway.dashboard.filters import Filters

__all__ = ["csv_cell", "csv_response"]

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def csv_response(name: str, flt: Filters, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([csv_cell(v) for v in row])
            if buffer.tell() > 16384:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    filename = f"{name}_{flt.range.start.isoformat()}_{flt.range.end.isoformat()}.csv"
    return Response(stream_with_context(lines()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
