"""The connector fixture runner (shared/fixtures/README.md): `python -m tools.fixtures PATH.json...`.

Test tooling, not product (issue 18 item 6): it stands outside the installed packages, and the product does not
know it exists. What a connector appended is seen by watching `core.envelope.commands_from_envelopes`, the one
door connector envelopes go through, for as long as a scenario's gateway lives.

Each scenario gets a fresh SQLite database loaded from `seed.json`, a real gateway on 127.0.0.1 (werkzeug in a
thread, inline processing, the clock at each step's instant), its `requires` played first, then its own steps:
HTTP requests sent as raw bytes, or a `template` block run through the real sGTM template under the Node
harness. Answers, appended connector commands and stored state are compared by the fixture rules; every
mismatch is reported. A scenario's `config` and `installation_settings` hold while its own steps play (so a
required scenario plays as it does alone), and each of its `variants` is replayed on a fresh database with its
overrides over the scenario's (rule 4; docs/shopify.md SHP-100-D1).
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import requests
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

import core.envelope
from connectors.sgtm.distribution import served_template, substitute
from connectors.shopify import models as sm
from core.accounts import key_digest
from core.commands import Command
from core.crypto import cipher
from core.money import currency_exponent, format_minor
from core.storage import models as m
from core.storage.db import migrate

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "unit" / "connectors" / "sgtm" / "template_harness.mjs"
TEMPLATE = ROOT / "connectors" / "sgtm" / "template.tpl"
SEED_AT = datetime.fromisoformat("2026-01-01T00:00:00+00:00")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Placeholders:
    """What the README's placeholders resolve to: `<gateway>` and `<same_as:scenario.kind>`."""

    base_url: str = ""
    ids: dict[str, str] = field(default_factory=dict)  # "<scenario>.<output kind>" -> server id


@dataclass
class Live(Placeholders):
    app: Flask | None = None
    base_config: dict[str, Any] = field(default_factory=dict)  # the seed's configuration and the runner's
    installations: list[str] = field(default_factory=list)  # the seed's installation ids (rule 4)
    appended: list[dict[str, Any]] = field(default_factory=list)  # connector envelopes not compared yet

    @property
    def flask(self) -> Flask:
        assert self.app is not None
        return self.app

    def at(self, when: str) -> None:
        moment = _at(when)
        self.flask.config["MBUZZ"].clock = lambda: moment

    def recorded(self) -> list[dict[str, Any]]:
        taken = list(self.appended)
        self.appended.clear()
        return taken


def seed(app: Flask, data: dict[str, Any]) -> None:
    """Load `seed.json` with its exact ids (tokens encrypted as SHP-7 stores them); loading it again changes
    nothing."""
    settings = app.config["MBUZZ"].settings
    secret_box = cipher(settings.encryption_keys, settings.secret_key)
    with app.config["MBUZZ"].sessions.begin() as db:
        for account in data.get("accounts", []):
            settings = {"lookback_days": account["lookback_days"]} if "lookback_days" in account else {}
            db.merge(m.Account(id=account["id"], name=account["name"], status="active", created_at=SEED_AT))
            db.merge(m.AccountSettings(account_id=account["id"], settings=settings, config_versions={},
                                     updated_at=SEED_AT))
        for key in data.get("api_keys", []):
            db.merge(m.ApiKey(account_id=key["account_id"], id=f"key_{key_digest(key['plaintext'])[:26]}",
                            environment=key["environment"], kind=key["kind"],
                            key_digest=key_digest(key["plaintext"]), key_prefix=key["plaintext"][:12],
                            installation_id=key.get("installation_id"), created_at=SEED_AT))
        for inst in data.get("installations", []):
            token = inst.get("access_token")
            db.merge(m.Installation(
                id=inst["id"], shop_domain=inst["shop_domain"], shop_gid=inst.get("shop_gid"),
                shop_name=inst.get("shop_name"), primary_domain=inst.get("primary_domain"),
                domains=inst.get("domains", []), currency=inst.get("currency"),
                iana_timezone=inst.get("iana_timezone"),
                plan_partner_development=bool(inst.get("plan_partner_development")),
                account_id=inst.get("account_id"), environment=inst.get("environment", "test"),
                mode=inst.get("mode", "app"), status=inst.get("status", "active"),
                access_token_enc=secret_box.encrypt(token.encode()).decode() if token else None,
                token_expires_at=_at(inst["token_expires_at"]) if inst.get("token_expires_at") else None,
                scopes=inst.get("scopes"), pixel_id=inst.get("pixel_id"), settings=inst.get("settings", {}),
                installed_at=_at(inst["installed_at"]) if inst.get("installed_at") else None,
                created_at=SEED_AT, updated_at=SEED_AT))


# --- configuration (README rules 1 and 4) ----------------------------------------------------------------------

CONFIG_SETTINGS = {  # a fixture `config` name -> the Settings field it sets (None when empty)
    "SHOPIFY_API_SECRET": "shopify_api_secret",
    "SHOPIFY_API_SECRET_PREVIOUS": "shopify_api_secret_previous",
    "SHOPIFY_API_KEY": "shopify_api_key",
    "MBUZZ_SHOPIFY_OUTBOUND_BASE": "shopify_outbound_base",
    "MBUZZ_SHOPIFY_AUTO_CONNECT_ACCOUNT": "shopify_auto_connect_account",
}
CONFIG_DEFAULTED = {  # likewise, the Settings default when empty
    "SHOPIFY_API_VERSION": "shopify_api_version",
    "SHOPIFY_SCOPES": "shopify_scopes",
    "MBUZZ_PUBLIC_URL": "public_url",
}
CONFIG_RUNNER = ("MBUZZ_SYNC_WAIT_MS", "queue", "nonce_generator")  # read by the runner itself


def settings_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The Settings values a fixture configuration sets (the seed's, with a scenario's over it)."""
    from gateway.config import Settings

    fields: dict[str, Any] = {field: config.get(name) or None for name, field in CONFIG_SETTINGS.items()}
    fields |= {field: config.get(name) or getattr(Settings, field) for name, field in CONFIG_DEFAULTED.items()}
    fields["sync_wait_ms"] = int(config.get("MBUZZ_SYNC_WAIT_MS", 3000))
    return fields


def config_problems(config: dict[str, Any], label: str) -> list[str]:
    """A configuration the runner cannot honour is reported, never silently ignored."""
    known = {*CONFIG_SETTINGS, *CONFIG_DEFAULTED, *CONFIG_RUNNER}
    problems = [f"{label} config {name}: not supported by the fixture runner" for name in config if name not in known]
    if config.get("queue", "inline") != "inline":
        problems.append(f"{label} config queue: only 'inline' is supported, got {config['queue']!r}")
    return problems


@contextmanager
def live_gateway(seed_data: dict[str, Any], overrides: dict[str, Any] | None = None,
                 scenario_config: dict[str, Any] | None = None) -> Iterator[Live]:
    """A seeded gateway on 127.0.0.1 started with the seed's configuration, `overrides` (the runner's own, such
    as the fake Shopify's URL) and the played scenario's `config`; the base every scenario's `config` is put
    over while it plays is the first two only (rule 4)."""
    from gateway import create_app
    from gateway.config import Settings

    with tempfile.TemporaryDirectory(prefix="mbuzz-fixture-") as folder:
        url = f"sqlite:///{folder}/fixture.db"
        migrate(url)
        base = {**seed_data.get("config", {}), **(overrides or {})}
        config = {**base, **(scenario_config or {})}
        app = create_app(Settings.from_env(database_url=url, redis_url=None, **settings_fields(config)))
        seed(app, seed_data)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request would drown the report
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        live = Live(base_url=f"http://127.0.0.1:{server.server_port}", app=app, base_config=base,
                    installations=[inst["id"] for inst in seed_data.get("installations", [])])
        try:
            with watching_envelopes(live.appended):
                yield live
        finally:
            server.shutdown()
            thread.join(timeout=5)
            app.config["MBUZZ"].engine.dispose()


@contextmanager
def watching_envelopes(into: list[dict[str, Any]]) -> Iterator[None]:
    """Every envelope a connector hands to the core is copied into `into`, in order, then converted as usual."""
    convert = core.envelope.commands_from_envelopes

    def watched(envelopes: Sequence[dict[str, Any]], received: datetime) -> list[Command]:
        into.extend(envelopes)
        return convert(envelopes, received)

    with mock.patch.object(core.envelope, "commands_from_envelopes", watched):
        yield


# --- matching -----------------------------------------------------------------------------------------------

def _instant(text: str) -> datetime | None:
    if len(text) < 20 or text[10:11] != "T":
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, str) and isinstance(b, str) and a != b:  # RFC 3339 times compare as instants
        left, right = _instant(a), _instant(b)
        return left is not None and right is not None and left == right
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    return a == b


def match(expected: Any, got: Any, path: str, live: Placeholders, exact: frozenset[str] = frozenset()) -> list[str]:
    """Subset match with the README's placeholders; `null` means absent or null."""
    if isinstance(expected, str):
        if expected == "<present>":
            return [] if got is not None else [f"{path}: expected a value"]
        if expected.startswith("<server_id:") and expected.endswith(">"):
            prefix = expected[len("<server_id:"):-1] + "_"
            return [] if isinstance(got, str) and got.startswith(prefix) else [f"{path}: expected a {prefix} id"]
        if expected.startswith("<same_as:") and expected.endswith(">"):
            want = live.ids.get(expected[len("<same_as:"):-1])
            return [] if got == want else [f"{path}: expected {want!r} ({expected}), got {got!r}"]
        expected = expected.replace("<gateway>", live.base_url)
    if expected is None:
        return [] if got is None else [f"{path}: expected absent, got {got!r}"]
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [f"{path}: expected an object, got {got!r}"]
        problems = []
        if path.rsplit(".", 1)[-1] in exact and set(expected) != set(got):
            problems.append(f"{path}: keys {sorted(got)} differ from {sorted(expected)}")
        for key, value in expected.items():
            problems += match(value, got.get(key), f"{path}.{key}", live, exact)
        return problems
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [f"{path}: expected {len(expected)} items, got {got!r}"]
        return [p for i, (e, g) in enumerate(zip(expected, got, strict=True))
                for p in match(e, g, f"{path}[{i}]", live, exact)]
    return [] if _same_value(expected, got) else [f"{path}: expected {expected!r}, got {got!r}"]


def _equal_json(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal_json(x, y) for x, y in zip(a, b, strict=True))
    numbers = (int, float, Decimal)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return Decimal(str(a)) == Decimal(str(b))
    return type(a) is type(b) and a == b


def _absent(command: dict[str, Any], dotted: str) -> bool:
    node: Any = command
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node is None


def _fits(want: dict[str, Any], command: dict[str, Any], label: str, live: Placeholders) -> list[str]:
    exact = frozenset(k.removesuffix("_exact") for k in ("properties_exact", "traits_exact") if want.get(k))
    spec = {k: v for k, v in want.items() if k not in ("properties_exact", "traits_exact", "absent")}
    return match(spec, command, label, live, exact) + [
        f"{label}.{p}: must be absent" for p in want.get("absent", []) if not _absent(command, p)]


def match_commands(expected: dict[str, Any], got: list[dict[str, Any]], live: Placeholders) -> list[str]:
    """Equal number; each expected command matches a different appended one (in order if `commands_ordered`)."""
    wanted = expected.get("commands")
    if wanted is None:
        return []
    if len(got) != len(wanted):
        return [f"commands: expected {len(wanted)}, got {len(got)}: {[c.get('kind') for c in got]}"]
    problems: list[str] = []
    free = list(range(len(got)))
    for i, want in enumerate(wanted):
        label = f"commands[{i}]"
        candidates = [i] if expected.get("commands_ordered") else free
        found = next((j for j in candidates if not _fits(want, got[j], label, live)), None)
        if found is None:
            problems += _fits(want, got[candidates[0]], label, live) if candidates else [f"{label}: unmatched"]
        elif found in free:
            free.remove(found)
    return problems


# --- state --------------------------------------------------------------------------------------------------

def _model_of(table: str) -> Any:
    return next((mapper.class_ for mapper in m.Base.registry.mappers if mapper.class_.__tablename__ == table), None)


LOGICAL_TABLES = {"identities": "users"}  # the specs' names for core tables


def _condition(model: Any, table: str, column: str, value: Any) -> Any:
    """A `where` entry; fixtures name visitors by their public id and identities by their external id."""
    if table == "identities" and column == "external_id":
        return model.user_key == value
    if table == "identities" and column == "external_id_prefix":
        return model.user_key.startswith(value)
    if column == "visitor_id" and hasattr(model, "visitor_key"):
        return model.visitor_key == value
    if column == "visitor_id":
        return model.visitor_id.in_(sa.select(m.Visitor.id).where(m.Visitor.visitor_key == value))
    return getattr(model, column) == value


def _logical(column: str) -> str:
    return "visitor_id" if column == "visitor_key" else column


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Instants as fixtures write them, and JSON columns also reachable as `column.key`."""
    out = {key: _plain(value) for key, value in row.items()}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update({f"{key}.{inner}": _plain(v) for inner, v in value.items()})
    return out


def _plain(value: Any) -> Any:
    """A stored value as fixtures write it: instants as RFC 3339 UTC with `Z`."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _state(live: Live, checks: list[dict[str, Any]], label: str) -> list[str]:
    problems: list[str] = []
    with live.flask.config["MBUZZ"].sessions() as db:
        for check in checks:
            table, where, expect = check["table"], check["where"], check["expect"]
            if table == "conversions":
                conditions = [m.Conversion.idempotency_key.startswith(v) if k == "idempotency_key_prefix"
                              else getattr(m.Conversion, k) == v for k, v in where.items()]
                rows = [_conversion_view(db, c) for c in db.scalars(sa.select(m.Conversion).where(*conditions))]
            elif table == "visitors":  # `identity_id`: the identity the visitor is linked to now, if any
                rows = [{"visitor_id": v.visitor_key, "identity_id": db.scalar(sa.select(m.VisitorLink.user_id).where(
                    m.VisitorLink.account_id == v.account_id, m.VisitorLink.environment == v.environment,
                    m.VisitorLink.visitor_id == v.id, m.VisitorLink.valid_to.is_(None)).limit(1))}
                    for v in db.scalars(sa.select(m.Visitor).where(
                        m.Visitor.account_id == where["account_id"], m.Visitor.visitor_key == where["visitor_id"]))]
            elif (model := _model_of(LOGICAL_TABLES.get(table, table))) is not None:
                found = db.scalars(sa.select(model).where(*[_condition(model, table, k, v) for k, v in where.items()]))
                rows = [_flat({_logical(c.key): getattr(r, c.key) for c in sa.inspect(model).column_attrs})
                        for r in found]
            else:
                problems.append(f"{label} {table}: no such table")
                continue
            if "count" in expect and len(rows) != expect["count"]:
                problems.append(f"{label} {table} {where}: expected {expect['count']} rows, got {len(rows)}")
            for key, value in expect.items():
                if key != "count" and rows and not _state_value_ok(live, db, key, value, rows[0]):
                    problems.append(f"{label} {table}.{key}: expected {value!r}, got {rows[0].get(key)!r}")
    return problems


def _export(live: Live, wanted: dict[str, Any], label: str) -> list[str]:
    """SHP-87: the newest data-request export, decrypted, holds at least what the fixture lists."""
    settings = live.flask.config["MBUZZ"].settings
    with live.flask.config["MBUZZ"].sessions() as db:
        row = db.scalars(sa.select(sm.ShopifyDataRequest).order_by(sm.ShopifyDataRequest.created_at.desc())).first()
    if row is None or row.export_enc is None:
        return [f"{label} export: no data request export stored"]
    export = json.loads(cipher(settings.encryption_keys, settings.secret_key).decrypt(row.export_enc.encode()))
    return match(wanted, export, f"{label} export", live)


def _conversion_view(db: Any, conv: m.Conversion) -> dict[str, Any]:
    """The logical `conversions` row of the specs: money as decimal strings, the key's quality."""
    quality = (conv.properties or {}).get("key_quality") or ("none" if conv.idempotency_key is None else "strong")
    exponent = currency_exponent(conv.currency)
    external = None if conv.user_id is None else db.scalar(sa.select(m.User.user_key).where(
        m.User.account_id == conv.account_id, m.User.id == conv.user_id))

    def money(minor: int | None) -> str | None:
        return None if minor is None else format_minor(minor, exponent)

    return {"revenue": money(conv.revenue_minor), "key_quality": quality, "status": conv.status,
            "currency": conv.currency, "refunded_amount": money(conv.refunded_minor),
            "net_revenue": money(conv.net_revenue_minor), "environment": conv.environment,
            "idempotency_key": conv.idempotency_key, "identifier": (conv.properties or {}).get("identifier"),
            "identity_external_id": external, "identity_external_id_prefix": (external or "")[:9] or None}


# --- playing scenarios --------------------------------------------------------------------------------------

def _remember_ids(live: Live, scenario_id: str, body: Any) -> None:
    if isinstance(body, dict):
        for output in body.get("outputs", []) or []:
            if isinstance(output, dict) and output.get("id"):
                live.ids[f"{scenario_id}.{output['kind']}"] = output["id"]


def _check_answer(live: Live, want: dict[str, Any], status: int, body: Any, label: str) -> list[str]:
    problems = []
    if status != want.get("status", status):
        problems.append(f"{label} status: expected {want['status']}, got {status}: {body}")
    if "body" in want:
        problems += match(want["body"], body, f"{label} body", live)
    return problems


def _run_template(live: Live, scenario: dict[str, Any], expected: dict[str, Any], folder: Path) -> list[str]:
    live.at(scenario["now"])
    template = folder / f"{scenario['id']}.tpl"
    template.write_text(served_template(live.base_url), encoding="utf-8")
    block = substitute(scenario["template"], live.base_url)
    proc = subprocess.run(["node", str(HARNESS), "run", str(template)], capture_output=True, text=True,
                          input=json.dumps({**block, "now_ms": scenario.get("now_ms")}), timeout=60)
    if proc.returncode != 0:
        return [f"{scenario['id']}: the template harness failed: {proc.stderr.strip()[-500:]}"]
    result = json.loads(proc.stdout)
    want = expected.get("template", {})
    label = scenario["id"]
    problems = []
    if result.get("outcome") != want.get("outcome"):
        problems.append(f"{label} template outcome: expected {want.get('outcome')}, got {result.get('outcome')}")
    sent = [r.get("body") for r in result.get("http_requests", [])]
    bodies = [r["body"] for r in want.get("http_requests", [])]
    if not _equal_json(substitute(bodies, live.base_url), sent):  # exact equality, numbers by value
        problems.append(f"{label} template body: expected {bodies}, got {sent}")
    problems += match(want.get("cookies_set", []), result.get("cookies_set", []), f"{label} cookies", live)
    responses = result.get("http_responses", [])
    gateway = expected.get("gateway", {})
    if responses:
        body = json.loads(responses[0]["body"])
        problems += _check_answer(live, gateway, responses[0]["status"], body, f"{label} gateway")
        _remember_ids(live, label, body)
    problems += [f"{label} {p}" for p in match_commands(gateway, live.recorded(), live)]
    problems += _state(live, gateway.get("state", []) + gateway.get("after_processing", []), label)
    problems += _state(live, expected.get("after_processing", []), label)
    return problems


def _step_expectation(expected: dict[str, Any], step: dict[str, Any], index: int) -> dict[str, Any] | None:
    """The expected entry of a step: by name, else by position; an expected file without `steps` compares
    nothing."""
    steps = expected.get("steps")
    if steps is None:
        return {}
    name = step.get("name")
    named = next((s for s in steps if name is not None and s.get("name") == name), None)
    return named if named is not None else (steps[index] if index < len(steps) else None)


def _run_steps(live: Live, scenario: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for index, step in enumerate(scenario.get("steps", [])):
        label = f"{scenario['id']} step {step.get('name', index)}"
        want = _step_expectation(expected, step, index)
        if want is None:
            problems.append(f"{label}: the expected file has nothing for this step")
            want = {}
        live.at(step["at"])
        request = step.get("request")
        if request is None and step.get("action") == "shopify_sweep":  # the due-retry sweep (SHP-54)
            from connectors.shopify.sweep import sweep_due

            sweep_due(live.flask.config["MBUZZ"])
            problems += [f"{label} {p}" for p in match_commands(want, live.recorded(), live)]
            problems += _state(live, want.get("state", []) + want.get("after_processing", []), label)
            continue
        if request is None:
            problems.append(f"{label}: action {step.get('action')!r} is not supported")
            continue
        resp = requests.request(request["method"], live.base_url + request["path"],
                                data=request.get("body_raw", "").encode(), headers=_step_headers(live, request),
                                timeout=30, allow_redirects=False)
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        problems += _check_answer(live, want.get("response", {}), resp.status_code, body, label)
        problems += _check_shopify_step(live, step, want, resp, label)
        _remember_ids(live, scenario["id"], body)
        problems += [f"{label} {p}" for p in match_commands(want, live.recorded(), live)]
        problems += _state(live, want.get("state", []) + want.get("after_processing", []), label)
        if "export_contains" in want:
            problems += _export(live, want["export_contains"], label)
    return problems


def _play(live: Live, path: Path, folder: Path, done: set[Path], variant: dict[str, Any] | None = None) -> list[str]:
    """The scenario's `requires` (each under its own overrides only, never the variant's), then the scenario
    under its overrides with the variant's on top (rule 4)."""
    scenario = json.loads(path.read_text(encoding="utf-8"))
    problems: list[str] = []
    for required in scenario.get("requires", []):
        target = (path.parent.parent / f"{required}.json") if "/" in required else path.parent / f"{required}.json"
        if target not in done:
            problems += _play(live, target, folder, done)
    expected_path = path.with_name(path.name.removesuffix(".json") + ".expected.json")
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    if variant is not None:
        if "steps" not in scenario:
            return problems + [f"{scenario['id']}: variants are supported for scenarios with request steps only"]
        expected = variant_expected(expected, variant, scenario)
    refused, undo = _apply_overrides(live, scenario, variant)
    if refused:
        return problems + refused
    try:
        if "template" in scenario:
            problems += _run_template(live, scenario, expected, folder)
        elif "cases" in scenario:
            problems += _run_cases(live, path, scenario, expected)
        else:
            problems += _run_steps(live, scenario, expected)
    finally:
        undo()
    done.add(path)
    return problems


def run_fixture(path: Path) -> list[str]:
    """Every mismatch of one scenario (after its `requires`), on a fresh seeded database; then of each of its
    `variants`, each on a fresh seeded database too (rule 4), reported with the variant's name."""
    seed_path = path.parent.parent / "seed.json"
    seed_data = json.loads(seed_path.read_text(encoding="utf-8"))
    expected = json.loads(path.with_name(path.name.removesuffix(".json") + ".expected.json").read_text(
        encoding="utf-8"))
    problems = _run_once(path, seed_data, None)
    for variant in expected.get("variants") or []:
        if checkable(variant):
            problems += [f"variant {variant.get('name', '?')!r}: {p}" for p in _run_once(path, seed_data, variant)]
    return problems


def _run_once(path: Path, seed_data: dict[str, Any], variant: dict[str, Any] | None) -> list[str]:
    scenario = json.loads(path.read_text(encoding="utf-8"))
    config = {**scenario.get("config", {}), **(variant or {}).get("config", {})}
    with _fake_shopify(scenario) as fake, live_gateway(seed_data, _fake_config(fake), config) as live, \
            tempfile.TemporaryDirectory() as folder:
        live.flask.extensions[SHOPIFY_RUN] = {"fake": fake, "responses": {}}
        return _play(live, path, Path(folder), set(), variant)


# --- rule 4: a scenario's own `config` and `installation_settings`, and `variants` -----------------------------

EXPECTATIONS = ("response", "commands", "commands_ordered", "state", "after_processing", "http_mocks_called",
                "export_contains")


def checkable(variant: dict[str, Any]) -> bool:
    """A variant with something to compare; one with only a `note` (F9's stale update) is prose for people."""
    return "steps" in variant or any(key in variant for key in EXPECTATIONS)


def variant_expected(expected: dict[str, Any], variant: dict[str, Any], scenario: dict[str, Any]) -> dict[str, Any]:
    """The variant's expectations as an expected file: its own `steps` if it lists them, else its `response`,
    `commands`, `state`... for the scenario's last step, the earlier steps played but not compared."""
    if "steps" in variant:
        return {**expected, "steps": variant["steps"]}
    steps = scenario.get("steps", [])
    unchecked = [{"name": step.get("name")} for step in steps[:-1]]
    last = {"name": steps[-1].get("name")} if steps else {}
    return {**expected, "steps": [*unchecked, {**last, **{k: variant[k] for k in EXPECTATIONS if k in variant}}]}


def _apply_overrides(live: Live, scenario: dict[str, Any],
                     variant: dict[str, Any] | None) -> tuple[list[str], Callable[[], None]]:
    """Put the scenario's (then the variant's) `config` over the seed's configuration and its
    `installation_settings` over each seed installation's settings; answer the problems that prevent it, or
    how to put everything back once the scenario has played."""
    from connectors.shopify.install import generators, use_generators
    from connectors.shopify.settings import validate_settings

    label = scenario["id"]
    config = {**scenario.get("config", {}), **(variant or {}).get("config", {})}
    accepted, errors = validate_settings({**scenario.get("installation_settings", {}),
                                          **(variant or {}).get("installation_settings", {})})
    problems = config_problems(config, label) + [f"{label} installation_settings {e}" for e in errors]
    if problems:
        return problems, lambda: None
    services = live.flask.config["MBUZZ"]
    settings, chosen = services.settings, generators(services)
    services.settings = replace(settings, **settings_fields({**live.base_config, **config}))
    use_generators(services, _generators_for(config))
    undo_installations = _set_installation_settings(live, accepted)

    def undo() -> None:
        undo_installations()
        services.settings = settings
        use_generators(services, chosen)

    return [], undo


def _generators_for(config: dict[str, Any]) -> Any:
    """The scenario's injectable generators (SHP-4: `nonce_generator` is the fixed OAuth nonce)."""
    from connectors.shopify.install import Generators

    chosen = Generators()
    if config.get("nonce_generator"):
        nonce = str(config["nonce_generator"])
        chosen.nonce = lambda: nonce
    return chosen


def _set_installation_settings(live: Live, accepted: dict[str, Any]) -> Callable[[], None]:
    """`installation_settings` over the seed installations' settings (`environment` is the installation's own
    column, as SHP-99 stores it); the undo puts back only the overridden keys, so what the steps changed
    otherwise (connector state) stays."""
    if not accepted:
        return lambda: None
    sessions = live.flask.config["MBUZZ"].sessions
    query = sa.select(m.Installation).where(m.Installation.id.in_(live.installations))
    saved: dict[str, tuple[str, dict[str, Any]]] = {}
    with sessions.begin() as db:
        for inst in db.scalars(query):
            saved[inst.id] = (inst.environment, dict(inst.settings or {}))
            inst.settings = {**(inst.settings or {}), **{k: v for k, v in accepted.items() if k != "environment"}}
            inst.environment = accepted.get("environment", inst.environment)

    def undo() -> None:
        with sessions.begin() as db:
            for inst in db.scalars(query):
                if inst.id not in saved:  # deleted and made again by the steps: nothing of ours to put back
                    continue
                environment, before = saved[inst.id]
                current = dict(inst.settings or {})
                for key in accepted:
                    if key == "environment":
                        inst.environment = environment
                    elif key in before:
                        current[key] = before[key]
                    else:
                        current.pop(key, None)
                inst.settings = current

    return undo


# --- Shopify install fixtures (F13a–F13f): the fake Shopify, cookies, redirects and case lists ------------------

SHOPIFY_RUN = "mbuzz.fixture_shopify"  # app.extensions key: the fake Shopify and the answers of earlier steps


@contextmanager
def _fake_shopify(scenario: dict[str, Any]) -> Iterator[Any]:
    """A local fake Shopify serving the scenario's `http_mocks`, or None when it has none (README rule 5)."""
    mocks = scenario.get("http_mocks")
    if not mocks:
        yield None
        return
    from urllib.parse import urlsplit

    from tools.fake_shopify import FakeShopify

    fake = FakeShopify()
    for name, http_mock in mocks.items():
        wanted = http_mock.get("request")
        target = urlsplit((wanted or {}).get("url") or http_mock.get("url") or "")
        shop = target.hostname or ""
        if wanted and target.path == "/admin/oauth/access_token":
            answer = http_mock.get("response", {})
            fake.on_token(name, shop, wanted.get("json_subset", {}), answer.get("status", 200), answer.get("json"))
        elif target.path.endswith("/graphql.json"):
            fake.add_shop(shop, **(_note_shop(http_mock.get("note", "")) or {}))
    with fake:
        yield fake


def _note_shop(note: str) -> dict[str, Any] | None:
    """The shop object of an `admin_graphql` note ("Answer the shop query with {shop:{id:'…', …}}")."""
    import re

    start = note.find("{", max(note.find("shop query"), 0))
    if start < 0:
        return None
    depth, end = 0, -1
    for index in range(start, len(note)):
        depth += {"{": 1, "}": -1}.get(note[index], 0)
        if depth == 0:
            end = index
            break
    literal = re.sub(r"'([^'\\]*)'", lambda found: json.dumps(found.group(1)), note[start:end + 1])
    literal = re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:", r'\1"\2":', literal)
    try:
        parsed = json.loads(literal)
    except ValueError:
        return None
    shop = parsed.get("shop") if isinstance(parsed, dict) else None
    return shop if isinstance(shop, dict) else None


def _fake_config(fake: Any) -> dict[str, Any]:
    return {"MBUZZ_SHOPIFY_OUTBOUND_BASE": fake.base_url} if fake is not None else {}


def _set_cookies(resp: requests.Response) -> list[tuple[str, str, str]]:
    """(name, value, attributes) of every Set-Cookie header, read raw (requests' jar drops Secure cookies)."""
    found = []
    for header in resp.raw.headers.getlist("Set-Cookie") if resp.raw is not None else []:
        pair, _, attributes = header.partition(";")
        name, _, value = pair.partition("=")
        found.append((name.strip(), value.strip(), attributes.lower()))
    return found


def _step_headers(live: Live, request: dict[str, Any]) -> dict[str, str]:
    """The step's headers, plus a Cookie header with the cookies an earlier step set (`send_cookies_from`)."""
    headers = dict(request.get("headers", {}))
    run = live.flask.extensions.get(SHOPIFY_RUN) or {}
    if run.get("fake") is not None:
        run["fake"].clear()  # http_mocks_called is about this step only
    source = request.get("send_cookies_from")
    if source:
        earlier = run.get("responses", {}).get(source)
        cookies = [f"{n}={v}" for n, v, attrs in (_set_cookies(earlier) if earlier is not None else [])
                   if "max-age=0" not in attrs]
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
    return headers


def _same_location(expected: str, got: str | None) -> bool:
    from urllib.parse import parse_qs, urlsplit

    if got is None:
        return False
    left, right = urlsplit(expected), urlsplit(got)
    return (left.scheme, left.netloc, left.path) == (right.scheme, right.netloc, right.path) and \
        parse_qs(left.query, keep_blank_values=True) == parse_qs(right.query, keep_blank_values=True)


def _check_shopify_step(live: Live, step: dict[str, Any], want: dict[str, Any], resp: requests.Response,
                        label: str) -> list[str]:
    """`location` (equal after parsing the query), `set_cookie_name`, `headers` (subset) and
    `http_mocks_called` (exactly the scripted mocks, those with a `request`, that this step reached)."""
    problems: list[str] = []
    run = live.flask.extensions.get(SHOPIFY_RUN) or {}
    run.setdefault("responses", {})[step.get("name")] = resp
    answer = want.get("response", {})
    if "location" in answer:
        expected = answer["location"].replace("<gateway>", live.base_url)
        if not _same_location(expected, resp.headers.get("Location")):
            problems.append(f"{label} location: expected {expected}, got {resp.headers.get('Location')}")
    if "set_cookie_name" in answer and answer["set_cookie_name"] not in [n for n, _, _ in _set_cookies(resp)]:
        problems.append(f"{label} set_cookie_name: no Set-Cookie named {answer['set_cookie_name']}")
    if "headers" in answer:
        got = {k.lower(): v for k, v in resp.headers.items()}
        problems += match({k.lower(): v for k, v in answer["headers"].items()}, got, f"{label} headers", live)
    if "http_mocks_called" in want:
        fake = run.get("fake")
        called = sorted(set(fake.called_mocks())) if fake is not None else []
        if called != sorted(set(want["http_mocks_called"])):
            problems.append(f"{label} http_mocks_called: expected {sorted(want['http_mocks_called'])}, got {called}")
    return problems


def _state_value_ok(live: Live, db: Any, key: str, value: Any, row: dict[str, Any]) -> bool:
    """A state `expect` entry: `<present>`, the pseudo-column `access_token_plaintext_in_db`, or equality."""
    if key == "access_token_plaintext_in_db":
        return bool(value) == _plaintext_in_db(live, db, row.get("access_token_enc"))
    if value == "<present>":
        return row.get(key) is not None
    return _same_value(value, row.get(key))


def _plaintext_in_db(live: Live, db: Any, token_enc: str | None) -> bool:
    """Whether the decrypted access token appears in any column of any row of the database (SHP-7)."""
    if not token_enc:
        return False
    settings = live.flask.config["MBUZZ"].settings
    plaintext = cipher(settings.encryption_keys, settings.secret_key).decrypt(token_enc.encode()).decode()
    for table in m.Base.metadata.sorted_tables:
        for row in db.execute(sa.select(table)):
            if any(plaintext in (v if isinstance(v, str) else json.dumps(v, default=str)) for v in row):
                return True
    return False


def _run_cases(live: Live, path: Path, scenario: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """F13e (query and body HMAC known answers, pure) and F13f (session tokens against the live gateway)."""
    label = scenario["id"]
    if "signing" not in scenario:
        from connectors.shopify.querysign import body_hmac_valid, query_hmac_valid

        problems = []
        results = [query_hmac_valid(c["query"], [c["secret"]]) for c in scenario["cases"]]
        if "results" in expected and results != expected["results"]:
            problems.append(f"{label} results: expected {expected['results']}, got {results}")
        hooks = [body_hmac_valid(c["body_raw"].encode(), c["header"], [c["secret"]])
                 for c in scenario.get("webhook_cases", [])]
        if "webhook_results" in expected and hooks != expected["webhook_results"]:
            problems.append(f"{label} webhook_results: expected {expected['webhook_results']}, got {hooks}")
        return problems
    seed_data = json.loads((path.parent.parent / "seed.json").read_text(encoding="utf-8"))
    problems = []
    for case in scenario["cases"]:
        if case.get("config"):
            with live_gateway(seed_data, {**scenario.get("config", {}), **case["config"]}) as other:
                problems += _token_case(other, scenario, expected, case, label)
        else:
            problems += _token_case(live, scenario, expected, case, label)
    return problems


def _token_case(live: Live, scenario: dict[str, Any], expected: dict[str, Any], case: dict[str, Any],
                label: str) -> list[str]:
    live.at(scenario["now"])
    request = scenario["request"]
    headers = {} if case.get("no_token") else {"Authorization": f"Bearer {_session_token(scenario, case)}"}
    resp = requests.request(request["method"], live.base_url + request["path"], headers=headers, timeout=30)
    want = expected.get("statuses", {}).get(case["name"], case.get("expect_status"))
    problems = []
    if resp.status_code != want:
        problems.append(f"{label} case {case['name']}: expected {want}, got {resp.status_code}: {resp.text[:200]}")
    if case["name"] == "valid" and "valid_body_subset" in expected:
        problems += match(expected["valid_body_subset"], resp.json(), f"{label} case valid body", live)
    return problems


def _session_token(scenario: dict[str, Any], case: dict[str, Any]) -> str:
    """F13f's recipe: base claims, overrides, removals, times relative to `now`; signed with the case's alg."""
    import base64
    import warnings

    import jwt
    import jwt.warnings

    signing = scenario.get("signing", {})
    now = int(_at(scenario["now"]).timestamp())
    claims: dict[str, Any] = {**scenario.get("base_claims", {}), **case.get("overrides", {})}
    for name, offset in {**scenario.get("base_relative", {}), **case.get("relative", {})}.items():
        claims[name] = now + int(offset)
    for name in case.get("remove", []):
        claims.pop(name, None)
    alg = case.get("alg", signing.get("default_alg", "HS256"))
    if alg == "none":  # an unsigned token: empty signature segment
        def part(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
    with warnings.catch_warnings():  # the fixtures' secrets are short on purpose; production ones are not
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, case.get("secret", signing.get("secret", "")), algorithm=alg)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tools.fixtures PATH.json...`: play each scenario; exit 0 only if all pass."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.fixtures", description=main.__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="scenario files (shared/fixtures/<connector>/*.json)")
    paths: list[Path] = parser.parse_args(argv).paths
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such scenario file: {', '.join(missing)}")
    failed = 0
    for path in paths:
        problems = run_fixture(path)
        failed += bool(problems)
        for problem in problems:
            print(f"{path}: {problem}")
    print(f"{len(paths) - failed} of {len(paths)} fixtures pass")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
