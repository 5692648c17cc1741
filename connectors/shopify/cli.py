"""The Shopify connector's operator commands (``flask --app gateway mbuzz shopify-...``) and its part of the worker
(its RQ queue, the SHP-6 version warning, the SHP-54 sweeper and the daily maintenance). Registered by
:func:`connectors.shopify.init_app`; the gateway names none of them (issue 18)."""

from __future__ import annotations

import threading
import time

import click
from flask.cli import with_appcontext

from core.worker_parts import WorkerPart
from edge.services import AppServices, app_services


def _services() -> AppServices:
    return app_services()


@click.command("shopify-connect-manual")
@click.option("--shop", required=True, help="the store's *.myshopify.com domain")
@click.option("--account", "account_id", required=True)
@click.option("--environment", type=click.Choice(["test", "live"]), required=True)
@click.option("--signing-key", prompt=True, hide_input=True, envvar="MBUZZ_SHOPIFY_SIGNING_KEY",
              help="the key shown under Settings → Notifications → Webhooks (prompted when not given)")
@with_appcontext
def shopify_connect_manual_command(shop: str, account_id: str, environment: str, signing_key: str) -> None:
    """SHP-77: connect a store without the app; the webhook URL and pixel snippet are printed once."""
    from connectors.shopify.install import create_manual_installation

    try:
        made = create_manual_installation(_services(), shop, signing_key, account_id, environment)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"installation: {made.installation_id}")
    click.echo(f"webhook URL (orders/paid required; refunds/create, orders/cancelled, customers/create optional; "
               f"JSON): {made.webhook_url}")
    click.echo("custom pixel (Settings → Customer events → Add custom pixel; permission: Analytics):")
    click.echo(made.pixel_snippet)


@click.command("shopify-delete-customer")
@click.option("--shop", required=True)
@click.option("--customer-id", required=True, help="the Shopify customer id (digits)")
@click.option("--email", default=None, help="the customer's e-mail, to also forget identities found by it")
@with_appcontext
def shopify_delete_customer_command(shop: str, customer_id: str, email: str | None) -> None:
    """SHP-78/SHP-88: erase one customer of a connected store (manual mode has no compliance webhooks)."""
    from connectors.shopify.compliance import delete_customer_data
    from connectors.shopify.envelopes import shop_domain

    valid = shop_domain(shop)
    if valid is None or not customer_id.isdigit():
        raise click.ClickException("--shop must be a *.myshopify.com domain and --customer-id digits")
    if not delete_customer_data(_services(), valid, customer_id, email):
        raise click.ClickException(f"{valid} is not connected to an account")
    click.echo(f"customer {customer_id} of {valid}: erased (identity tombstoned, links and aliases deleted)")


@click.command("shopify-sweep")
@with_appcontext
def shopify_sweep_command() -> None:
    """Run every due Shopify retry now: parked orders and refunds waiting for their order (SHP-54)."""
    from connectors.shopify.sweep import sweep_due

    click.echo(f"{sweep_due(_services())} due retries run")


@click.command("shopify-maintenance")
@click.option("--force", is_flag=True, help="run even if a process ran it in the last 24 h")
@with_appcontext
def shopify_maintenance_command(force: bool) -> None:
    """Run the Shopify daily maintenance now, unless it ran in the last 24 h (SHP-8, SHP-27, SHP-37, SHP-87):
    retry recent failed deliveries once, null ledger bodies after 30 days, expire data request exports, and
    re-check webhook subscriptions, move non-expiring tokens to expiring ones, warn about an unsupported API version.
    Without a worker, run it daily (cron)."""
    from connectors.shopify.maintenance import claim_daily_run, run_daily_maintenance

    services = _services()
    if not claim_daily_run(services, force=force):
        click.echo("not due: the daily maintenance ran less than 24 h ago (--force runs it anyway)")
        return
    counts = run_daily_maintenance(services)
    click.echo(" ".join(f"{name}={value}" for name, value in counts.items()))
    if counts["errors"]:
        raise click.ClickException(f"{counts['errors']} step(s) failed; see the log")


@click.command("shopify-migrate-tokens")
@click.option("--shop", default=None, help="only this *.myshopify.com store (default: every app installation)")
@with_appcontext
def shopify_migrate_tokens_command(shop: str | None) -> None:
    """Move every app installation still holding a non-expiring offline token to an expiring one (SHP-23; public
    apps must use expiring tokens from 2027-01-01). The daily maintenance and the next embedded load do the same."""
    from connectors.shopify.envelopes import shop_domain
    from connectors.shopify.outbound import migrate_non_expiring_tokens

    valid = shop_domain(shop) if shop is not None else None
    if shop is not None and valid is None:
        raise click.ClickException("--shop must be a *.myshopify.com domain")
    results = migrate_non_expiring_tokens(_services(), valid)
    for result in results:
        click.echo(f"{result.shop} ({result.installation_id}): "
                   + ("moved to an expiring token" if result.migrated else f"not moved: {result.error}"))
    failed = sum(1 for r in results if not r.migrated)
    click.echo(f"{len(results) - failed} of {len(results)} installation(s) moved to an expiring token")
    if failed:
        raise click.ClickException(f"{failed} installation(s) not moved; see above (the next embedded load or "
                                   "daily maintenance tries again)")


def _start_shopify_sweeper() -> None:
    """SHP-54: every 60 s the worker runs due Shopify retries, so a lost delayed job only delays a retry; and the
    daily maintenance (SHP-8, SHP-27, SHP-37, SHP-87) when no process ran it in the last 24 h. Each step's
    failure is logged and retried with backoff (core.jobs.keep_running)."""
    from connectors.shopify.maintenance import run_if_due
    from connectors.shopify.queue import worker_services
    from connectors.shopify.sweep import sweep_due
    from core.jobs import keep_running

    def loop() -> None:
        time.sleep(60)
        keep_running([("Shopify sweep", lambda: sweep_due(worker_services())),
                      ("Shopify daily maintenance", lambda: run_if_due(worker_services()))], 60.0)

    threading.Thread(target=loop, name="mbuzz-shopify-sweeper", daemon=True).start()


COMMANDS = (shopify_connect_manual_command, shopify_delete_customer_command, shopify_sweep_command,
            shopify_maintenance_command, shopify_migrate_tokens_command)


def worker_part() -> WorkerPart:
    """What the worker runs for the connector: its queue, and at start the SHP-6 warning and the sweeper."""
    from connectors.shopify.queue import SHOPIFY_QUEUE

    def start(burst: bool) -> None:
        from connectors.shopify.api_version import warn_if_unsupported

        services = _services()
        warn_if_unsupported(services.settings, services.now())  # shopify.md SHP-6; the daily maintenance repeats it
        if not burst:
            _start_shopify_sweeper()

    return WorkerPart(queues=(SHOPIFY_QUEUE,), start=start)
