"""JSON answers (api.md API-4) and the client's address (API-141, sessions.md FP-1) for every Flask edge."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, request

from edge.services import app_services


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = Response(orjson.dumps(body), status=status, mimetype="application/json")
    resp.headers["Content-Type"] = "application/json; charset=utf-8"
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def client_ip() -> str:
    """This request's client address, behind ``MBUZZ_TRUSTED_PROXIES`` proxies."""
    return ip_of(request.headers.get("X-Forwarded-For", ""), request.remote_addr,
                 app_services().settings.trusted_proxies)


def ip_of(forwarded_for: str, remote_addr: str | None, trusted_hops: int) -> str:
    """The client's address: the ``trusted_hops``-th address from the right of ``X-Forwarded-For`` when the
    header has that many, else the socket's peer."""
    if trusted_hops:
        forwarded = [p.strip() for p in forwarded_for.split(",") if p.strip()]
        if len(forwarded) >= trusted_hops:
            return forwarded[-trusted_hops]
    return remote_addr or "unknown"
