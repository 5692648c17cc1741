"""The lean path of plain event posts (issue 17 item 1; docs/api.md API-80-D1).

A WSGI layer in front of Flask answers the common `POST /api/v1/events` itself: a key this process verified in the
last ``key_cache_ttl_s``, no quota (API-33 reads the database), a body with a ``Content-Length`` within the cap and
no ``Content-Encoding``, every event valid. Such a request costs what the bare endpoint costs plus the append
script, which admits it exactly as the Flask path does (API-12/13/140/141, API-50..56: core.admission). The
events, commands and answer body come from gateway.api.event_batch, the code the Flask view runs too; the headers
are the view's (API-4's ``X-Request-Id``, ``X-Mbuzz-Processing``, API-140's figures).

Anything else — an unknown, revoked or limited key, a whole-request error, a rejected event, Redis unable to
admit — goes to Flask unchanged, the body handed on as read, before anything was appended: the script appends
nothing when it refuses, so a request is never appended twice. Only what cannot happen before the append
(the log failing after it) is answered here, as Flask's error handlers answer it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from flask import Flask
from sqlalchemy.exc import OperationalError

from core.accounts import key_digest
from core.admission import AdmissionUnavailable, NotAdmitted
from core.log import Appended, LogUnavailable
from edge.http import ip_of
from gateway.api.admission import AdmissionGate
from gateway.api.auth import AuthFailure, token_of
from gateway.api.body import parse_body
from gateway.api.event_batch import event_batch
from gateway.api.fields import idempotency_header
from gateway.api.views import DEFECT, EVENTS_LIMIT, UNAVAILABLE, request_id_of

log = logging.getLogger("mbuzz.api")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
_PATHS = frozenset({"/api/v1/events", "/api/v1/events/"})
_JSON = ("Content-Type", "application/json; charset=utf-8")
_STATUS = {202: "202 ACCEPTED", 500: "500 INTERNAL SERVER ERROR", 503: "503 SERVICE UNAVAILABLE"}  # as werkzeug


class LeanEvents:
    """WSGI middleware: plain event posts answered without Flask, everything else passed to ``flask_path``."""

    def __init__(self, app: Flask, flask_path: WSGIApp) -> None:
        self.app = app
        self.flask_path = flask_path

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        length = _lean_length(environ)
        if length is not None:
            services = self.app.config["MBUZZ"]
            gate: AdmissionGate = services.admission_gate
            if gate.with_redis:
                answer = self._answer(environ, length, services, gate)
                if answer is not None:
                    status, body, headers = answer
                    start_response(_STATUS[status], [_JSON, ("Content-Length", str(len(body))), *headers])
                    return [body]
        return self.flask_path(environ, start_response)

    def _answer(self, environ: Environ, length: int, services: Any,
                gate: AdmissionGate) -> tuple[int, bytes, list[tuple[str, str]]] | None:
        try:
            token = token_of(environ.get("HTTP_AUTHORIZATION", ""))
        except AuthFailure:
            return None
        digest = key_digest(token)
        principal = gate.remembered(digest)
        if principal is None or principal.monthly_event_quota is not None:
            return None
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # Flask reads it again if this path gives the request up
        user_agent = environ.get("HTTP_USER_AGENT", "")
        try:
            header_key = idempotency_header(environ.get("HTTP_X_IDEMPOTENCY_KEY"))
            parsed = parse_body(raw, None, EVENTS_LIMIT)
            batch = event_batch(parsed.value, parsed.warnings, header_key, services.now(), user_agent)
        except Exception:  # BodyError, or a defect: Flask meets it again and answers as it does (API-4's JSON 500)
            return None
        if any(True for _ in batch.rejected()):  # API-24 records carry what Flask's request knows
            return None
        ip = ip_of(environ.get("HTTP_X_FORWARDED_FOR", ""), environ.get("REMOTE_ADDR"),
                   services.settings.trusted_proxies)
        admission = gate.admission("ingest", digest, ip, verified=False)
        request_id = request_id_of(environ.get("HTTP_X_REQUEST_ID", ""))
        try:
            appended: Appended = services.log.append(principal.tenant, batch.commands, admission=admission)
        except (NotAdmitted, AdmissionUnavailable):
            return None  # refused or not decided: nothing was appended, Flask decides as it always does
        except (LogUnavailable, OperationalError):
            return _failed(503, {"error": UNAVAILABLE}, request_id, [("Retry-After", "5")])
        except Exception:
            return _defect(request_id)
        try:  # appended: from here on a defect must not send the request to Flask (it would be appended twice)
            body = orjson.dumps(batch.answer(appended.results))
        except Exception:
            return _defect(request_id)
        headers = [("X-Request-Id", request_id), ("X-Mbuzz-Processing", appended.mode)]
        if appended.verdict is not None:
            headers.extend(appended.verdict.headers().items())
        return 202, body, headers


def _lean_length(environ: Environ) -> int | None:
    """The declared body length of a request this path may take, else None."""
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in _PATHS:
        return None
    if "HTTP_TRANSFER_ENCODING" in environ or "HTTP_CONTENT_ENCODING" in environ:
        return None
    declared = environ.get("CONTENT_LENGTH") or ""
    if not declared.isdigit() or not 0 < int(declared) <= EVENTS_LIMIT:
        return None
    return int(declared)


def _defect(request_id: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    """What :mod:`gateway.errors` answers to an unhandled error (API-4), logged the same way."""
    log.exception("unhandled error on POST /api/v1/events (request %s)", request_id)
    return _failed(500, {"error": DEFECT, "request_id": request_id}, request_id, [])


def _failed(status: int, body: dict[str, Any], request_id: str,
            headers: list[tuple[str, str]]) -> tuple[int, bytes, list[tuple[str, str]]]:
    return status, orjson.dumps(body), [("X-Request-Id", request_id), *headers]
