"""gunicorn settings for every way the gateway is served: Procfile, `make run` / `make run-redis` and the tests'
real-process helper (tests/integration/processes.py) all start gunicorn with `-c gunicorn.conf.py`.

Why a custom worker (api.md API-4, docs/api.md API-4-D1): gunicorn answers some requests itself, before the app
sees them (a request line over `limit_request_line`, too many or too large header fields, a header with a
character HTTP forbids, a broken chunked body, ...), and its stock answer is an HTML page. `JsonErrorWorker` is
the gthread worker whose `handle_error` keeps gunicorn's own choice of status, logging and access log, and only
replaces the page with the API's error envelope: `{"error": "<what was wrong, with the limit>"}` as
`application/json; charset=utf-8`; a defect is the 500 of API-23 with its `request_id` (logged with it). These
answers carry no `X-Request-Id` header: the app never saw a request, and the header's absence is how a client
(and tests/connectors/shopify/test_hostile_live.py) tells the server's own refusal from an answer of the app.

Settings given on the command line (workers, bind, threads, timeouts) win over the values below; the worker
class must come from here, so the command lines do not pass `--worker-class`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from gunicorn import util
from gunicorn.http.errors import InvalidHeader, InvalidHeaderName, LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.gthread import ThreadWorker

# gunicorn's defaults, written out because the JSON answers name them (API-4-D1).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
threads = 8
_MESSAGE_MAX = 200  # a refused header is echoed in the message, cut like API-22 cuts values


class _Captured:
    """Stands in for the client socket while gunicorn writes its HTML answer, to learn the status it chose."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, _flag: bool) -> None:
        return None

    def sendall(self, data: bytes) -> None:
        self.data += data


def _status(captured: bytes) -> tuple[int, str]:
    """`HTTP/1.1 414 URI Too Long` -> (414, "URI Too Long"); a 500 when gunicorn wrote nothing readable."""
    parts = captured.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return int(parts[1]), parts[2]
    return 500, "Internal Server Error"


def _cut(text: str) -> str:
    return text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX] + "…"


def error_body(status: int, exc: BaseException, cfg: Any) -> dict[str, str]:
    """API-4-D1: the JSON envelope of an answer gunicorn gives before the app runs; names the limit."""
    if status >= 500 and status != 501:
        return {"error": "Internal server error", "request_id": str(uuid.uuid4())}
    if isinstance(exc, LimitRequestLine):
        return {"error": f"Request line too long (maximum {cfg.limit_request_line} bytes)"}
    if isinstance(exc, LimitRequestHeaders):
        detail = str(exc)
        if detail.endswith("fields size"):
            return {"error": f"Request header field too large (maximum {cfg.limit_request_field_size} bytes "
                             "per field)"}
        if detail.endswith("fields"):
            return {"error": f"Too many request header fields (maximum {cfg.limit_request_fields})"}
        return {"error": f"Request header section too large: {_cut(detail)}"}
    if isinstance(exc, InvalidHeaderName):
        return {"error": _cut(f"Invalid header name {exc.hdr!r}: a name is letters, digits and !#$%&'*+-.^_`|~")}
    if isinstance(exc, InvalidHeader):
        return {"error": _cut(f"Invalid header {exc.hdr!r}: control characters and malformed values are not "
                              "allowed")}
    return {"error": _cut(f"Bad request: {exc}" if status == 400 else str(exc) or "Request refused")}


def json_answer(status: int, reason: str, body: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode("latin-1") + payload


class JsonErrorWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, with gunicorn's own error answers in the API's JSON shape (API-4-D1)."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)  # status choice, warning log and access log: gunicorn's
        status, reason = _status(captured.data)
        body = error_body(status, exc, self.cfg)
        if "request_id" in body:
            self.log.error("the answer above was 500 with request_id %s", body["request_id"])
        try:
            util.write_nonblock(client, json_answer(status, reason, body))
        except Exception:  # the client is gone: nothing to answer
            self.log.debug("Failed to send error message.")


worker_class = JsonErrorWorker
