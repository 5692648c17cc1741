"""REST API v1 endpoints (api.md §8). Thin: parse → build commands → append to the log → answer.

A request's rejections (API-24) are handed to the log with its accepted commands, so the answer needs the log
alone: with PostgreSQL down and Redis up a request answers 2xx exactly when something was appended (API-66,
quality.md Q-22), and a keyed rejection gets an id derived from its key, so a retry records it once (API-24-D1).
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from flask import Blueprint, Response, g, request
from sqlalchemy.exc import OperationalError

from connectors.shopify.api_version import configured_version_status
from core.accounts import key_digest
from core.admission import Admission, AdmissionUnavailable, NotAdmitted
from core.channels import is_bot, traffic_for
from core.commands import Command, CommandResult
from core.ids import new_id
from core.log import Appended, LogUnavailable, Rejected
from core.privacy import scrub_name
from core.reads import pending_conversion_body, pending_identify_body
from core.usage import quota_reached
from edge.http import client_ip, json_response
from gateway.api import normalize
from gateway.api.admission import AdmissionGate
from gateway.api.auth import PROBLEMS, AuthFailure, Principal, authenticate, well_formed_token
from gateway.api.body import BodyError, parse_body
from gateway.api.event_batch import event_batch, server_side_sessions
from gateway.api.fields import idempotency_header
from gateway.services import Services, services

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
log = logging.getLogger("mbuzz.api")

EVENTS_LIMIT = 524_288
OTHER_LIMIT = 32_768
API_VERSION = "1.0.0"
UNAVAILABLE = "Service temporarily unavailable"  # API-66's 503
DEFECT = "Internal server error"  # API-4's 500 (gateway.errors)
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def error(message: str, status: int, **extra: Any) -> Response:
    return json_response({"error": message, **extra}, status)


def request_id_of(given: str) -> str:
    """API-4: the caller's ``X-Request-Id`` when it is a sane one, else a new one."""
    return given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())


@bp.before_app_request
def _request_id() -> None:
    g.request_id = request_id_of(request.headers.get("X-Request-Id", ""))


@bp.after_app_request
def _stamp(resp: Response) -> Response:
    resp.headers["X-Request-Id"] = g.get("request_id") or str(uuid.uuid4())
    if request.method == "OPTIONS" and request.path.startswith("/api/v1"):  # API-150: Allow only, no CORS
        resp.status_code = 204
        resp.set_data(b"")
    if g.get("retry_after"):
        resp.headers["Retry-After"] = g.retry_after
    if g.get("processing"):
        resp.headers["X-Mbuzz-Processing"] = g.processing
    if g.get("rate_verdict") is not None:  # API-140's figures of a write request (gateway.api.admission)
        resp.headers.update(g.rate_verdict.headers())
    return resp


def _services() -> Services:
    return services()


def _auth_error(exc: AuthFailure) -> Response:
    if exc.status == 429:
        if exc.verdict is not None:
            g.rate_verdict = exc.verdict
        return _rate_limited(exc.retry_after or 1)
    return json_response({"error": exc.message}, 401, {"WWW-Authenticate": "Bearer"})


def _principal_or_error(token: str | None = None) -> Principal | Response:
    try:
        return authenticate(token)
    except AuthFailure as exc:
        return _auth_error(exc)
    except OperationalError:
        return _unavailable()


def _unavailable() -> Response:
    """API-66: nothing could make the command durable; the client should retry."""
    g.retry_after = "5"  # re-applied after Flask-Limiter rewrites Retry-After from its own window
    return json_response({"error": UNAVAILABLE}, 503, {"Retry-After": "5"})


def _read_body(limit: int) -> tuple[Any, list[str]]:
    length = request.content_length
    encoding = request.headers.get("Content-Encoding")
    if length is not None and length > limit and not encoding:
        raise BodyError(413, f"Request body too large: {length} bytes (maximum {limit})")
    raw = request.stream.read(limit + 1) if encoding else request.get_data(cache=False)
    parsed = parse_body(raw, encoding, limit)
    return parsed.value, parsed.warnings


Parsed: TypeAlias = "tuple[Any, list[str], str | None] | BodyError"


def _parsed(limit: int) -> Parsed:
    """The idempotency header and the body, or the whole-request error to answer (after authentication)."""
    try:
        header_key = idempotency_header(request.headers.get("X-Idempotency-Key"))
        value, warnings = _read_body(limit)
    except BodyError as exc:
        return exc
    return value, warnings, header_key


def _answer(view: Callable[..., Response], principal: Principal, parsed: Parsed) -> Response:
    if isinstance(parsed, BodyError):
        return error(parsed.message, parsed.status)
    try:
        return view(principal, *parsed)
    except BodyError as exc:
        return error(exc.message, exc.status)
    except (LogUnavailable, OperationalError):
        return _unavailable()


def endpoint(limit: int, scope: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Authentication, the per-key limit of ``scope`` (API-140), body parsing and the whole-request errors shared
    by every write endpoint, admitted by the endpoint's append (gateway.api.admission)."""

    def wrap(view: Callable[..., Response]) -> Callable[..., Response]:
        def inner() -> Response:
            return _admit(view, limit, scope)

        inner.__name__ = view.__name__
        return inner

    return wrap


def _admit(view: Callable[..., Response], limit: int, scope: str) -> Response:
    """API-12/13/140/141 in the append's round trip when Redis can (docs/api.md API-13-D3)."""
    gate: AdmissionGate = _services().admission_gate
    try:
        token = well_formed_token()
    except AuthFailure as exc:
        return _auth_error(exc)
    digest = key_digest(token)
    principal = gate.remembered(digest)
    verified = principal is None
    parsed: Parsed | None = None
    for _ in range(2):
        if principal is None:
            found = _principal_or_error(token)
            if isinstance(found, Response):
                return found
            principal = found
            gate.remember(digest, principal)
        if parsed is None:  # the body is read once, and never for a key already refused
            parsed = _parsed(limit)
        if not gate.with_redis:
            break
        try:
            return _admitted(view, principal, parsed, gate.admission(scope, digest, client_ip(), verified))
        except NotAdmitted as exc:
            if exc.reason != "unverified" or verified:
                return _refused(exc)
            gate.forget(digest)  # a changed or stale entry: the database decides, then the script again
            principal, verified = None, True
        except AdmissionUnavailable:
            break
    if not verified:
        found = _principal_or_error(token)
        if isinstance(found, Response):
            return found
        principal = found
    assert principal is not None and parsed is not None
    g.rate_verdict = gate.limit_in_memory(scope, digest)  # API-140: this process's count while Redis cannot admit
    if not g.rate_verdict.allowed:
        return _rate_limited(g.rate_verdict.retry_after)
    return _answer(view, principal, parsed)


def _admitted(view: Callable[..., Response], principal: Principal, parsed: Parsed, admission: Admission) -> Response:
    """The view, with its append admitting the request; an answer that appended nothing is admitted before it
    is given (raises ``NotAdmitted`` / ``AdmissionUnavailable`` then, so no answer skips a check)."""
    g.admission = admission
    response = _answer(view, principal, parsed)
    pending = g.pop("admission", None)
    if pending is not None:
        g.rate_verdict = _services().log.append(principal.tenant, [], wait=False, admission=pending).verdict
    return response


def _refused(exc: NotAdmitted) -> Response:
    if exc.reason == "limited":
        g.rate_verdict = exc.verdict
        return _rate_limited(exc.retry_after)
    if exc.reason == "blocked":
        return _auth_error(AuthFailure("Rate limit exceeded", status=429, retry_after=exc.retry_after,
                                       verdict=exc.verdict))
    return _auth_error(AuthFailure(PROBLEMS["revoked"]))  # verified just now: only the revocation mark refuses


def _rate_limited(retry_after: int) -> Response:
    return json_response({"error": "Rate limit exceeded", "retry_after": retry_after}, 429,
                         {"Retry-After": str(retry_after)})


def _append(
    principal: Principal, commands: Sequence[Command], rejections: list[Rejected] | None = None
) -> list[CommandResult]:
    appended = _log_append(principal, commands, rejections=rejections or ())
    g.processing = appended.mode
    return appended.results


def _log_append(principal: Principal, commands: Sequence[Command], wait: bool = True,
                rejections: Sequence[Rejected] = ()) -> Appended:
    """The log's append, admitting the request when its endpoint asked for it (``_admitted``)."""
    appended = _services().log.append(principal.tenant, commands, wait=wait, rejections=rejections,
                                      admission=g.pop("admission", None))
    if appended.verdict is not None:
        g.rate_verdict = appended.verdict
    return appended


def _rejected(
    principal: Principal, endpoint_name: str, index: int | None, name: Any, errors: list[str], key: str | None
) -> Rejected:
    """API-24: what was rejected and why, never the body. A keyed item (the key API-51/52/53 would use) gets an
    id derived from its tenant, endpoint and key, so a retry of the same rejected item is recorded once."""
    if key is None:
        rejection_id = new_id("rej")
    else:
        seed = "\n".join((principal.tenant.environment, endpoint_name, key))
        rejection_id = "rej_" + hashlib.sha256(seed.encode()).hexdigest()[:32]
    return Rejected(id=rejection_id, endpoint=endpoint_name, index=index,
                    name=scrub_name(name) if isinstance(name, str) else None, errors=errors,
                    key_prefix=principal.key_prefix, request_id=g.get("request_id"), created_at=_services().now())


def _raw_key(value: Any) -> str | None:
    """The client's idempotency key of a rejected item as sent, when it is one (API-51: string or integer)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if 0 < len(text) <= 255 else None


def _billing_blocked(principal: Principal) -> Response | None:
    """API-33: once the monthly quota is used up, events and sessions answer 402 (conversions never do).

    With the database unreachable the quota cannot be read; the request is accepted into the log rather than
    refused (quality.md Q-22; docs/api.md API-33-D1): usage is still counted when the drain processes it."""
    if principal.monthly_event_quota is None:
        return None
    try:
        with _services().sessions() as db:
            if not quota_reached(db, principal.tenant.account_id, principal.monthly_event_quota, _services().now()):
                return None
    except OperationalError:
        log.warning("database unavailable: quota of %s not checked", principal.tenant.account_id)
        return None
    return json_response({"error": "Account cannot accept events", "billing_blocked": True}, 402)


def _unwrap(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BodyError(400, "Request body must be a JSON object")
    if key in value:
        inner = value[key]
        if not isinstance(inner, dict):
            raise BodyError(400, f"{key} must be an object")
        return inner
    return value


def _unprocessable(principal: Principal, name: str, item: Any, errors: list[str], key: str | None) -> Response:
    """A 422, recorded through the log (API-24): with PostgreSQL down it is still a 422, not a 503 (Q-22)."""
    _log_append(principal, [], wait=False, rejections=[_rejected(principal, name, None, item, errors, key)])
    return json_response({"success": False, "errors": errors}, 422)


# ------------------------------------------------------------------------------------------ endpoints


@bp.route("/health", methods=["GET"])
def health() -> Response:
    mode = _services().log.mode
    body: dict[str, Any] = {"status": "ok", "version": API_VERSION, "mode": mode}
    if request.args.get("deep") in ("1", "true"):
        checks = _services().deep_checks()
        body["checks"] = checks
        shopify = configured_version_status(_services().settings, _services().now())  # shopify.md SHP-6
        checks["shopify_api_version"] = "absent" if shopify is None else "ok" if shopify.supported else "unsupported"
        if shopify is not None and not shopify.supported:
            body["warnings"] = [shopify.message]  # reported, not fatal: Shopify still answers, older behaviour
        if "down" in checks.values():
            body["status"] = "down"
            return json_response(body, 503)
    return json_response(body)


@bp.route("/validate", methods=["GET"])
def validate() -> Response:
    principal = _principal_or_error()
    if isinstance(principal, Response):
        return principal
    return json_response(
        {
            "valid": True,
            "account": {"id": principal.tenant.account_id, "name": principal.account_name},
            "environment": principal.tenant.environment,
            "key_prefix": principal.key_prefix,
        }
    )


@bp.route("/events", methods=["POST"])
@endpoint(EVENTS_LIMIT, "ingest")
def events(principal: Principal, value: Any, warnings: list[str], header_key: str | None) -> Response:
    if (blocked := _billing_blocked(principal)) is not None:
        return blocked
    batch = event_batch(value, warnings, header_key, _services().now(), request.headers.get("User-Agent", ""))
    rejections = [_event_rejection(principal, index, item, errors, header_key)
                  for index, item, errors in batch.rejected()]
    return json_response(batch.answer(_append(principal, batch.commands, rejections)), 202)


def _event_rejection(
    principal: Principal, index: int, item: Any, errors: list[str], header_key: str | None
) -> Rejected:
    """The API-24 record of a rejected event, keyed as API-51 keys events (message_id, id, header:index)."""
    raw = item if isinstance(item, dict) else {}
    key = _raw_key(raw.get("message_id", raw.get("id")))
    if key is None and header_key is not None:
        key = f"{header_key}:{index}"
    return _rejected(principal, "events", index, raw.get("event_type"), errors, key)


@bp.route("/sessions", methods=["POST"])
@endpoint(OTHER_LIMIT, "ingest")
def sessions(principal: Principal, value: Any, warnings: list[str], header_key: str | None) -> Response:
    if (blocked := _billing_blocked(principal)) is not None:
        return blocked
    raw = _unwrap(value, "session")
    now = _services().now()
    built = normalize.build_touch(raw, now, header_key)
    if built.command is None:
        return _unprocessable(principal, "sessions", raw.get("session_id"), built.errors, header_key)
    _append(principal, [server_side_sessions(built.command, request.headers.get("User-Agent", ""))])
    cmd = built.command
    channel = "bot" if cmd.user_agent and is_bot(cmd.user_agent) else traffic_for(
        cmd.url, cmd.referrer, cmd.explicit_utm
    ).channel
    body: dict[str, Any] = {
        "status": "accepted",
        "visitor_id": cmd.visitor_key,
        "session_id": cmd.client_session_id,
        "channel": channel,
    }
    all_warnings = warnings + built.warnings
    if all_warnings:
        body["warnings"] = all_warnings
    return json_response(body, 202)


@bp.route("/conversions", methods=["POST"])
@endpoint(OTHER_LIMIT, "sync")
def conversions(principal: Principal, value: Any, warnings: list[str], header_key: str | None) -> Response:
    raw = _unwrap(value, "conversion")
    now = _services().now()
    built = normalize.build_conversion(raw, now, header_key, principal.currency)
    key = _raw_key(raw.get("idempotency_key")) or header_key  # API-52's key, as sent
    if built.command is None:
        return _unprocessable(principal, "conversions", raw.get("conversion_type"), built.errors, key)
    (result,) = _append(principal, [built.command])
    if result.status == "rejected":
        if g.get("processing") == "queued":  # the drain that rejected it has recorded it already (API-24)
            return json_response({"success": False, "errors": result.errors}, 422)
        return _unprocessable(principal, "conversions", raw.get("conversion_type"), result.errors, key)
    if not result.body:  # API-62: still in the log when the wait ran out
        duplicate = result.status == "duplicate"
        pending = pending_conversion_body(built.command, result.result_id or built.command.id, duplicate)
        return json_response(pending, 200 if duplicate else 202)
    body = dict(result.body)
    all_warnings = warnings + list(body.pop("warnings", []))
    if all_warnings and result.status != "duplicate":
        body["warnings"] = all_warnings
    status = 200 if result.status == "duplicate" else 201
    if body.get("attribution", {}).get("status") == "pending" and status == 201:
        status = 202
    return json_response(body, status)


@bp.route("/identify", methods=["POST"])
@endpoint(OTHER_LIMIT, "sync")
def identify(principal: Principal, value: Any, warnings: list[str], header_key: str | None) -> Response:
    raw = _unwrap(value, "identify")
    built = normalize.build_identify(raw, _services().now())
    if built.command is None:
        return _unprocessable(principal, "identify", None, built.errors, None)
    (result,) = _append(principal, [built.command])
    if not result.body:  # API-101: the wait ran out
        return json_response(pending_identify_body(built.command), 202)
    body = dict(result.body)
    all_warnings = warnings + built.warnings + result.warnings
    if all_warnings:
        body["warnings"] = all_warnings
    return json_response(body, 200)
