"""`POST /sgtm/v1/collect` (sgtm.md SGTM-19..SGTM-34): authenticate, validate, map, append, answer.

The blueprint only does edge work: key check, limits, :mod:`connectors.sgtm.normalize`, masking the IP into a
fingerprint (FP-1/FP-2), and turning the connector commands into core commands for the command log. Everything
else happens in the core processors, exactly as for the REST API.
"""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, request

import core.envelope
from connectors.sgtm.normalize import output_kind, outputs_for, sent_visitor, validate
from core.aliases import visitor_for_ga_client
from core.commands import CommandResult
from core.fingerprint import clean_user_agent, fingerprint, mask_ip
from core.storage.models import Installation
from core.tenant import Tenant
from edge.http import json_response
from edge.keys import cached_lookup
from edge.services import AppServices, app_services

bp = Blueprint("sgtm_v1", __name__, url_prefix="/sgtm/v1")

MAX_BODY = 32 * 1024
TOKEN = re.compile(r"pk_sgtm_(live|test)_[0-9a-f]{32}|sk_(live|test)_[0-9a-f]{32}")
_BEARER = re.compile(r"Bearer\s+(\S+)", re.IGNORECASE)
WAITED = ("conversion", "identify", "sgtm_order_link")  # SGTM-34: answered with their processing result
# SHP-52: set by the Shopify connector; runs a parked order's linking chain at once when a link names it
ORDER_LINKED = "mbuzz.order_linked"

log = logging.getLogger("mbuzz.sgtm")


def _unauthorized(code: str) -> Response:
    return json_response({"error": code}, 401)


def _tenant() -> Tenant | Response:
    """SGTM-19: an active sGTM key (write-only) or secret key; the environment comes from the key."""
    header = (request.headers.get("Authorization") or "").strip()
    if not header:
        return _unauthorized("missing_api_key")
    match = _BEARER.fullmatch(header)
    token = match.group(1) if match else ""
    if TOKEN.fullmatch(token) is None:
        return _unauthorized("invalid_api_key")
    found = cached_lookup(app_services(), token)  # the REST API's key cache (API-13)
    wanted_kind = "sgtm" if token.startswith("pk_sgtm_") else "secret"
    if found.problem is not None or found.kind != wanted_kind or not found.account_id or not found.environment:
        return _unauthorized("invalid_api_key")
    return Tenant(found.account_id, found.environment)


def _output(cmd: dict[str, Any], result: CommandResult) -> dict[str, Any]:
    """SGTM-34: conversions and identify report their processing result, sessions and events `accepted`."""
    out: dict[str, Any] = {"kind": output_kind(cmd), "key": cmd["idempotency_key"]}
    if cmd["kind"] not in WAITED:
        out["status"] = "accepted"
        return out
    if result.status in ("queued", "pending") and not result.body:  # the wait ran out
        out["status"] = "pending"
        return out
    duplicate = result.status == "duplicate"
    if cmd["kind"] == "sgtm_order_link":  # SGTM-31: merged into the Shopify order, or held for it
        out.update({k: v for k, v in result.body.items() if k in ("status", "merged_into", "duplicate")})
        if out["status"] == "converted":  # held, then emitted as a conversion: this is a reload of it
            out.update(status="duplicate", duplicate=True)
        return out
    if cmd["kind"] == "conversion":
        out["id"] = result.result_id
        out["status"] = "duplicate" if duplicate else "created"
        out["duplicate"] = duplicate
    else:
        out["status"] = "duplicate" if duplicate else "created"
    return out


@bp.route("/collect", methods=["POST"])
def collect() -> Response:
    tenant = _tenant()
    if isinstance(tenant, Response):
        return tenant
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        return json_response({"error": "payload_too_large"}, 413)
    try:
        body = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        return json_response({"error": "invalid_json"}, 400)
    if not isinstance(body, dict):
        return json_response({"error": "invalid_json"}, 400)
    services = app_services()
    now = services.now()
    payload, errors = validate(body, now)
    if payload is None:
        return json_response({"success": False, "errors": errors}, 422)
    masked = mask_ip(payload.get("ip"), [])  # FP-1: the raw address goes no further
    device = fingerprint(masked, clean_user_agent(payload.get("user_agent")))
    visitor = sent_visitor(payload)
    with services.sessions.begin() as db:
        if visitor is not None and payload.get("ga_client_id"):
            visitor = visitor_for_ga_client(db, tenant, payload.get("ga_client_id"), visitor, now)
        shopify_active = _has_active_shopify(db, tenant)
    outputs = outputs_for(payload, tenant.account_id, tenant.environment, device, shopify_active=shopify_active,
                          visitor=visitor)
    answer: dict[str, Any] = {"status": "accepted", "visitor_id": outputs.visitor_id, "consent": outputs.consent,
                              "outputs": []}
    if outputs.skipped_reason:
        answer["skipped_reason"] = outputs.skipped_reason
    if outputs.commands:
        # Durable before the answer; in queued mode conversions and identify wait for their result (API-62).
        appended = services.log.append(tenant, core.envelope.commands_from_envelopes(outputs.commands, now))
        answer["outputs"] = [_output(c, r) for c, r in zip(outputs.commands, appended.results, strict=True)]
        _run_linked_orders(services, tenant, appended.results)
    return json_response(answer, 202)


def _has_active_shopify(db: Any, tenant: Tenant) -> bool:
    """SGTM-29/SGTM-30: Shopify is the revenue source of an account and environment with an active shop."""
    return db.scalar(sa.select(sa.literal(True)).where(
        Installation.account_id == tenant.account_id, Installation.environment == tenant.environment,
        Installation.status == "active").limit(1)) is not None


def _run_linked_orders(services: AppServices, tenant: Tenant, results: list[CommandResult]) -> None:
    """SHP-52: a link that names a parked order lets its chain run now; if that fails, the order is already
    due for the Shopify sweep, so nothing waits longer than one sweep."""
    rerun = current_app.extensions.get(ORDER_LINKED)
    for result in results:
        parked = result.body.get("parked_order")
        if rerun is not None and parked:
            try:
                rerun(services, tenant.account_id, parked)
            except Exception:
                log.exception("parked order %s: linking rerun failed; the sweep retries it", parked)
