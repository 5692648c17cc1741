"""Login, the environment toggle, API keys, integrations and settings (dashboard.md DSH-1..DSH-5, DSH-16..DSH-18)."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from flask import Response, abort, current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from connectors.sgtm.distribution import served_filename, served_template
from connectors.shopify.compliance import delete_customer_data
from connectors.shopify.install import create_connect_code, create_manual_installation, pcd_refused_topics
from connectors.shopify.models import ShopifyWebhookDelivery
from connectors.shopify.settings import CHOICES, apply_settings, settings_of, validate_settings
from core.accounts import create_api_key, revoke_api_key
from core.attribution import MODELS
from core.reattribution.service import active_batches, apply_settings_change
from core.reattribution.tasks import start_batch
from core.settings import DEFAULTS, SettingsError
from core.storage.models import AccountSettings, ApiKey, Conversion, Event, Installation, ShopifyOrder
from core.tenant import Tenant
from core.usage import monthly_usage
from gateway.dashboard import bp
from gateway.dashboard.auth import ENVIRONMENTS, Viewer, log_in, log_out, logged_in, login_required


def _safe_next(target: str | None) -> str:
    """Only a path of this site: `next=https://evil.example` must not turn the login into a redirector."""
    if target and target.startswith("/dashboard") and not target.startswith("//"):
        return target
    return url_for("dashboard.overview")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        error = log_in(request.form.get("email", ""), request.form.get("password", ""))
        if error is None:
            return redirect(_safe_next(request.form.get("next")))
    status = 429 if error and error.startswith("Too many") else (401 if error else 200)
    return render_template("dashboard/login.html", error=error, next=request.values.get("next", ""),
                           email=request.form.get("email", "")[:254], who=None), status


@bp.route("/logout", methods=["POST"])
def logout() -> WerkzeugResponse:
    log_out()
    return redirect(url_for("dashboard.login"))


@bp.route("/environment", methods=["POST"])
@login_required
def environment() -> WerkzeugResponse:
    """DSH-5: the test/live toggle, remembered in the session."""
    chosen = request.form.get("environment")
    if chosen in ENVIRONMENTS:
        session["environment"] = chosen
    return redirect(_safe_next(request.form.get("next")))


# --- DSH-16 API keys ---------------------------------------------------------------------------------------

@bp.route("/keys", methods=["GET", "POST"])
@login_required
def keys() -> Any:
    who = logged_in()
    services = current_app.config["MBUZZ"]
    created = None
    if request.method == "POST":
        kind = request.form.get("kind", "secret")
        env = request.form.get("environment", who.environment)
        name = (request.form.get("name") or "").strip()[:200] or None
        if kind not in ("secret", "sgtm") or env not in ENVIRONMENTS:
            abort(400)
        with services.sessions.begin() as db:
            created = create_api_key(db, who.account_id, env, name=name, kind=kind)
    with services.sessions() as db:
        rows = list(db.scalars(sa.select(ApiKey).where(ApiKey.account_id == who.account_id)
                               .order_by(ApiKey.created_at.desc())))
        db.expunge_all()
    return render_template("dashboard/keys.html", who=who, keys=rows, created=created, page="keys")


@bp.route("/keys/<key_id>/revoke", methods=["POST"])
@login_required
def revoke_key(key_id: str) -> WerkzeugResponse:
    """Immediate: the key cache is cleared with the revocation, so the next request with the key gets 401."""
    who = logged_in()
    services = current_app.config["MBUZZ"]
    with services.sessions.begin() as db:
        key = db.get(ApiKey, (who.account_id, key_id))
        if key is None:
            abort(404)
        digests = revoke_api_key(db, key_id, account_id=who.account_id)
    services.forget_keys(digests)
    flash(f"Key {key.key_prefix}… revoked.")
    return redirect(url_for("dashboard.keys"))


# --- DSH-17 integrations -----------------------------------------------------------------------------------

@bp.route("/integrations", methods=["GET"])
@login_required
def integrations() -> Any:
    return _integrations_page(session.pop("shown_once", None))


def _integrations_page(shown: dict[str, str] | None) -> Any:
    """`shown`: what is displayed once (a connect code, a manual store's webhook URL and pixel snippet). The
    snippet is rendered in the POST's own answer, never kept in the session cookie (it would outgrow it)."""
    who = logged_in()
    services = current_app.config["MBUZZ"]
    shops = []
    with services.sessions() as db:
        for inst in db.scalars(sa.select(Installation).where(Installation.account_id == who.account_id)
                               .order_by(Installation.shop_domain)):
            last_webhook = db.scalar(sa.select(sa.func.max(ShopifyWebhookDelivery.received_at)).where(
                ShopifyWebhookDelivery.shop_domain == inst.shop_domain))
            methods = dict(db.execute(sa.select(ShopifyOrder.attribution_method, sa.func.count())
                                      .where(ShopifyOrder.account_id == who.account_id,
                                             ShopifyOrder.installation_id == inst.id,
                                             ShopifyOrder.status == "converted")
                                      .group_by(ShopifyOrder.attribution_method)).all())
            unattributed = methods.pop("none", 0)
            shops.append({"inst": inst, "settings": settings_of(inst), "last_webhook": last_webhook,
                          "linked": sum(methods.values()), "unattributed": unattributed,
                          "pcd_refused": pcd_refused_topics(inst)})
        sgtm_last = db.execute(sa.select(Event.received_at, Event.event_type, Event.url).where(
            Event.account_id == who.account_id, Event.environment == who.environment, Event.source == "sgtm")
            .order_by(Event.received_at.desc()).limit(1)).first()
        sgtm_conversion = db.execute(sa.select(Conversion.converted_at, Conversion.conversion_type).where(
            Conversion.account_id == who.account_id, Conversion.environment == who.environment,
            Conversion.source == "sgtm").order_by(Conversion.converted_at.desc()).limit(1)).first()
        db.expunge_all()
    return render_template("dashboard/integrations.html", who=who, shops=shops, sgtm_last=sgtm_last,
                           sgtm_conversion=sgtm_conversion, public_url=services.settings.public_url,
                           shown=shown, page="integrations")


@bp.route("/integrations/sgtm/template.tpl")
@login_required
def sgtm_template() -> Response:
    """sgtm.md SGTM-39: the template with this deployment's collect URL filled in."""
    text = served_template(current_app.config["MBUZZ"].settings.public_url)
    return Response(text, mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{served_filename()}"'})


@bp.route("/integrations/shopify/connect-code", methods=["POST"])
@login_required
def shopify_connect_code() -> WerkzeugResponse:
    who = logged_in()
    code = create_connect_code(current_app.config["MBUZZ"], who.account_id, who.environment)
    session["shown_once"] = {"connect_code": code}
    return redirect(url_for("dashboard.integrations"))


@bp.route("/integrations/shopify/manual", methods=["POST"])
@login_required
def shopify_manual() -> Any:
    """shopify.md SHP-77: the webhook URL and pixel snippet are shown once, right after connecting."""
    who = logged_in()
    try:
        made = create_manual_installation(current_app.config["MBUZZ"], request.form.get("shop", ""),
                                          request.form.get("signing_key", ""), who.account_id, who.environment)
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("dashboard.integrations"))
    return _integrations_page({"webhook_url": made.webhook_url, "pixel_snippet": made.pixel_snippet})


def _own_installation(db: Any, who: Viewer, installation_id: str, lock: bool = False) -> Installation:
    """The viewer's account's store, or 404 (DSH-5: another account's id is not found)."""
    inst = db.get(Installation, installation_id, with_for_update=lock)
    if inst is None or inst.account_id != who.account_id:
        abort(404)
    return inst  # type: ignore[no-any-return]


@bp.route("/integrations/shopify/<installation_id>/delete-customer", methods=["POST"])
@login_required
def shopify_delete_customer(installation_id: str) -> WerkzeugResponse:
    """shopify.md SHP-78: manual shops get no compliance webhooks; the merchant erases a customer here."""
    who = logged_in()
    services = current_app.config["MBUZZ"]
    with services.sessions() as db:
        shop = _own_installation(db, who, installation_id).shop_domain
    customer_id = (request.form.get("customer_id") or "").strip()
    if not customer_id.isdigit():
        flash("customer_id: the Shopify customer id, digits only", "error")
    else:
        delete_customer_data(services, shop, customer_id, (request.form.get("email") or "").strip() or None)
        flash(f"Customer {customer_id} of {shop} erased.")
    return redirect(url_for("dashboard.integrations"))


STORE_SETTINGS = ("revenue_basis", "offline_orders", "exclude_test_orders", "journey_summary")


@bp.route("/integrations/shopify/<installation_id>/settings", methods=["POST"])
@login_required
def shopify_store_settings(installation_id: str) -> WerkzeugResponse:
    """DSH-18 / shopify.md SHP-99: a store's revenue basis, offline orders, test orders and journey summary, with
    the same validation and SHP-82 audit as the embedded page (the actor is the dashboard user)."""
    who = logged_in()
    form = {name: request.form[name] for name in STORE_SETTINGS if name in request.form}
    typed = {k: {"true": True, "false": False}.get(v, v) if True in CHOICES[k] else v for k, v in form.items()}
    accepted, errors = validate_settings(typed)
    services = current_app.config["MBUZZ"]
    with services.sessions.begin() as db:
        inst = _own_installation(db, who, installation_id, lock=True)
        shop = inst.shop_domain
        changed = {} if errors else apply_settings(db, inst, accepted, f"dashboard:{who.user_id}", services.now())
    for error in errors:
        flash(error, "error")
    if not errors:
        flash(f"{shop}: {', '.join(sorted(changed)) or 'nothing'} changed." if changed else f"{shop}: no change.")
    return redirect(url_for("dashboard.integrations"))


# --- DSH-18 settings ---------------------------------------------------------------------------------------

LIST_SETTINGS = ("site_domains", "referral_exclusions", "spam_referrers")
INT_SETTINGS = ("lookback_days", "time_decay_half_life_days", "markov_order", "min_conversions", "min_journeys",
                "fit_window_days")
TEXT_SETTINGS = ("u_shaped_first_share", "u_shaped_last_share", "journey_reset", "currency", "timezone",
                 "default_country_code")


def _changes_from(form: Any, current: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    changes: dict[str, Any] = {}
    errors: list[str] = []
    for name in INT_SETTINGS:
        raw = (form.get(name) or "").strip()
        try:
            value = int(raw)
        except ValueError:
            errors.append(f"{name}: must be a whole number, got {raw!r}")
            continue
        if value != current[name]:
            changes[name] = value
    for name in TEXT_SETTINGS:
        text = (form.get(name) or "").strip() or None
        if text != (str(current[name]) if current[name] is not None else None):
            changes[name] = text
    for name in LIST_SETTINGS:
        items = [line.strip() for line in (form.get(name) or "").splitlines() if line.strip()]
        if items != list(current[name]):
            changes[name] = items
    burst = form.get("direct_burst_collapse") == "on"
    if burst != current["direct_burst_collapse"]:
        changes["direct_burst_collapse"] = burst
    models = [m for m in MODELS if form.get(f"model_{m}") == "on"]
    if models != list(current["enabled_models"]):
        changes["enabled_models"] = models
    return changes, errors


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings() -> Any:
    who = logged_in()
    services = current_app.config["MBUZZ"]
    errors: list[str] = []
    with services.sessions() as db:
        row = db.get(AccountSettings, who.account_id)
        current = {**DEFAULTS, **(row.settings if row is not None else {})}
    if request.method == "POST":
        changes, errors = _changes_from(request.form, current)
        if not errors and changes:
            try:
                with services.sessions.begin() as db:
                    batches = [(Tenant(b.account_id, b.environment), b.id)
                               for b in apply_settings_change(db, who.account_id, changes)]
            except SettingsError as exc:
                errors.append(str(exc))
            else:
                _start(services, batches)
                flash("Settings saved." + (" Attribution is being recalculated." if batches else ""))
                return redirect(url_for("dashboard.settings"))
    with services.sessions() as db:
        progress = active_batches(db, who.tenant)
        usage = monthly_usage(db, who.account_id, services.now())  # DSH-18: operator-set, shown read-only
    return render_template("dashboard/settings.html", who=who, current=current, errors=errors, models=MODELS,
                           progress=progress, usage=usage, page="settings"), (422 if errors else 200)


def _start(services: Any, batches: list[tuple[Tenant, str]]) -> None:
    """Queued mode hands the batches to the workers; inline mode runs them beside the request, so the page
    answers at once and shows the progress (ATT-59)."""
    for tenant, batch_id in batches:
        if services.redis is not None:
            start_batch(services.sessions, services.redis, tenant, batch_id)
        else:
            threading.Thread(target=start_batch, args=(services.sessions, None, tenant, batch_id),
                             name=f"mbuzz-reattribution-{batch_id}", daemon=True).start()
