"""The fixture runner honours a scenario's `installation_settings` and `config`, and `variants` (issue 14, item
8; shared/fixtures/README.md rule 4; docs/shopify.md SHP-99-D1).

Every scenario here is a public Shopify fixture copied into a temporary fixtures folder and changed: F1 (an
`orders/paid` web order of 129.50 AUD with a subtotal of 115.00) under `revenue_basis: subtotal` (SHP-44) must
record 115.00, and each test also shows the opposite expectation failing, so a runner that ignored the setting
could not pass. Rule 4 for `requires`: each scenario's overrides hold while its own steps play and are put back
after, so a required scenario plays as it does alone and the dependent one sees only its own.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.unit.connectors.sgtm.test_normalize import SHARED
from tools.fixtures import run_fixture

SHOPIFY = SHARED / "fixtures" / "shopify"
SECRET = "test_app_secret"  # seed.json's SHOPIFY_API_SECRET
TOTAL, SUBTOTAL = "129.50", "115.00"  # F1's current_total_price and current_subtotal_price (AUD)


def _public(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    scenario = json.loads((SHOPIFY / f"{name}.json").read_text(encoding="utf-8"))
    expected = json.loads((SHOPIFY / f"{name}.expected.json").read_text(encoding="utf-8"))
    return scenario, expected


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A fixtures tree of our own: `seed.json` and a `shopify/` folder for the scenarios."""
    shutil.copy(SHARED / "fixtures" / "seed.json", tmp_path / "seed.json")
    (tmp_path / "shopify").mkdir()
    return tmp_path / "shopify"


def _write(folder: Path, scenario: dict[str, Any], expected: dict[str, Any]) -> Path:
    path = folder / f"{scenario['id']}.json"
    path.write_text(json.dumps(scenario), encoding="utf-8")
    (folder / f"{scenario['id']}.expected.json").write_text(json.dumps(expected), encoding="utf-8")
    return path


def _f1(scenario_id: str, basis: str = "total", **top: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """F1 under another id, with top-level keys (`installation_settings`, `config`, `requires`) added, expecting
    the conversion revenue of `basis`."""
    scenario, expected = _public("F1")
    scenario = {**scenario, "id": scenario_id, **top}
    return scenario, _expect_basis({**expected, "id": scenario_id}, basis)


def _expect_basis(expected: dict[str, Any], basis: str) -> dict[str, Any]:
    """F1's expectations with the revenue of `basis` (SHP-44; SHP-44-D1: presentment revenue follows it)."""
    expected = copy.deepcopy(expected)
    amount = SUBTOTAL if basis == "subtotal" else TOTAL
    step = expected["steps"][0]
    conversion = next(c for c in step["commands"] if c["kind"] == "conversion")
    conversion["revenue"] = amount
    conversion["properties"].update(revenue_basis=basis, presentment_revenue=amount)
    for check in step["state"]:
        if check["table"] == "conversions":
            check["expect"]["revenue"] = amount
    return expected


def _sign(raw: str) -> str:
    """SHP-33's header for `raw` under the seed's app secret."""
    return base64.b64encode(hmac.new(SECRET.encode(), raw.encode(), hashlib.sha256).digest()).decode()


def _order_step(order_id: int, name: str) -> dict[str, Any]:
    """F1's delivery for another order of the same customer, signed with the seed's secret."""
    scenario, _ = _public("F1")
    step: dict[str, Any] = copy.deepcopy(scenario["steps"][0])
    body = {**step["request"]["body"], "id": order_id, "name": "#1043", "order_number": 1043,
            "admin_graphql_api_id": f"gid://shopify/Order/{order_id}"}
    raw = json.dumps(body, separators=(",", ":"))
    step["name"] = name
    step["request"]["body"], step["request"]["body_raw"] = body, raw
    step["request"]["headers"].update({
        "X-Shopify-Webhook-Id": f"w-{order_id}", "X-Shopify-Event-Id": f"e-{order_id}",
        "X-Shopify-Hmac-Sha256": _sign(raw)})
    return step


def _order_expected(name: str, basis: str) -> dict[str, Any]:
    amount = SUBTOTAL if basis == "subtotal" else TOTAL
    return {"name": name, "response": {"status": 200, "body": {"status": "accepted"}},
            "commands": [{"kind": "identify"},
                         {"kind": "conversion", "revenue": amount, "properties": {"revenue_basis": basis}}]}


def _second_order(scenario_id: str, requires: list[str], basis: str, **top: Any) -> tuple[dict[str, Any],
                                                                                        dict[str, Any]]:
    """A scenario delivering a second order of F1's customer after `requires`, expecting `basis`."""
    scenario = {"id": scenario_id, "title": "a second order", "now": "2026-05-20T03:20:00Z", "requires": requires,
                "steps": [{**_order_step(5396439498990, "second"), "at": "2026-05-20T03:20:00Z"}], **top}
    return scenario, {"id": scenario_id, "steps": [_order_expected("second", basis)]}


def _revenue_problem(problems: list[str], want: str, got: str) -> bool:
    return any(f"commands[1].revenue: expected '{want}', got '{got}'" in p for p in problems)


def test_rule4_SHP44_scenario_installation_settings_are_applied(folder: Path) -> None:
    """A scenario's `installation_settings: {revenue_basis: subtotal}` makes F1's conversion 115.00; the same
    scenario expecting the total fails on the revenue, and without the setting the subtotal expectation fails."""
    settings = {"installation_settings": {"revenue_basis": "subtotal"}}
    assert run_fixture(_write(folder, *_f1("F1sub", "subtotal", **settings))) == []
    problems = run_fixture(_write(folder, *_f1("F1subtotal_expected_total", "total", **settings)))
    assert _revenue_problem(problems, TOTAL, SUBTOTAL), problems
    problems = run_fixture(_write(folder, *_f1("F1no_setting", "subtotal")))
    assert _revenue_problem(problems, SUBTOTAL, TOTAL), problems


def test_rule4_requires_play_under_their_own_settings_only(folder: Path) -> None:
    """`requires` (README rule 2) with rule 4: F1 required by a subtotal scenario still records the total, the
    subtotal applies to the dependent's own order; and a subtotal scenario required by one without settings
    does not leak its setting into the dependent's order."""
    _write(folder, *_f1("F1"))
    _write(folder, *_f1("F1sub", "subtotal", installation_settings={"revenue_basis": "subtotal"}))
    dependent = _write(folder, *_second_order("G1", ["F1"], "subtotal",
                                              installation_settings={"revenue_basis": "subtotal"}))
    assert run_fixture(dependent) == []
    assert run_fixture(_write(folder, *_second_order("G2", ["F1sub"], "total"))) == []
    problems = run_fixture(_write(folder, *_second_order("G3", ["F1sub"], "subtotal")))
    assert _revenue_problem(problems, SUBTOTAL, TOTAL), problems  # the required scenario's setting ended with it


def test_rule4_config_of_a_required_scenario_is_its_own(folder: Path) -> None:
    """SHP-33 under a scenario's `config`: a required scenario whose app secret differs gets its delivery
    refused (401, nothing emitted), and the dependent scenario, back on the seed's secret, has it accepted."""
    scenario, _ = _f1("F1wrong_secret", config={"SHOPIFY_API_SECRET": "not-the-signing-secret"})
    refused = {"id": "F1wrong_secret", "steps": [{"name": "deliver", "commands": [],
                                                  "response": {"status": 401, "body": {"error": "invalid_hmac"}}}]}
    _write(folder, scenario, refused)
    after = _write(folder, *_f1("F1after", requires=["F1wrong_secret"]))
    assert run_fixture(after) == []
    scenario, expected = _f1("F1wrong_expected_accepted", config={"SHOPIFY_API_SECRET": "not-the-signing-secret"})
    problems = run_fixture(_write(folder, scenario, expected))
    assert any("status: expected 200, got 401" in p for p in problems), problems


def test_rule4_variants_add_their_overrides_to_the_scenarios(folder: Path) -> None:
    """Variants re-run the request on a fresh seed with their overrides over the scenario's: an unrelated
    setting keeps the scenario's subtotal basis, `revenue_basis: total` puts it back, and a variant `config`
    (another secret) is applied too. Each mismatch is reported under the variant's name."""
    scenario, expected = _f1("F1variants", "subtotal", installation_settings={"revenue_basis": "subtotal"})
    conversion = {"kind": "conversion", "revenue": SUBTOTAL, "properties": {"revenue_basis": "subtotal"}}
    expected["variants"] = [
        {"name": "exclude_test_orders", "installation_settings": {"exclude_test_orders": True},
         "response": {"status": 200}, "commands": [{"kind": "identify"}, conversion]},
        {"name": "total", "installation_settings": {"revenue_basis": "total"},
         "commands": [{"kind": "identify"},
                      {**conversion, "revenue": TOTAL, "properties": {"revenue_basis": "total"}}]},
        {"name": "rotated secret", "config": {"SHOPIFY_API_SECRET": "rotated", "SHOPIFY_API_SECRET_PREVIOUS": ""},
         "response": {"status": 401, "body": {"error": "invalid_hmac"}}, "commands": []},
        {"name": "a note for people", "note": "prose only: not run"},
    ]
    assert run_fixture(_write(folder, scenario, expected)) == []
    expected["variants"][1]["commands"][1]["revenue"] = SUBTOTAL  # wrong on purpose: the variant's basis is total
    problems = run_fixture(_write(folder, scenario, expected))
    assert problems == [f"variant 'total': F1variants step deliver commands[1].revenue: expected '{SUBTOTAL}', "
                        f"got '{TOTAL}'"]


def test_rule4_public_variants_run(folder: Path) -> None:
    """F5's public variant (`exclude_test_orders: true`, SHP-46) is played: changing its expected ledger error
    is reported under the variant's name."""
    scenario, expected = _public("F5")
    assert expected["variants"][0]["installation_settings"] == {"exclude_test_orders": True}
    expected["variants"][0]["state"][0]["expect"]["error"] = "not_the_reason"
    problems = run_fixture(_write(folder, scenario, expected))
    assert problems == ["variant 'exclude_test_orders=true': F5 step deliver shopify_webhook_deliveries.error: "
                        "expected 'not_the_reason', got 'test_order_excluded'"]


def test_rule4_unsupported_overrides_are_reported_not_ignored(folder: Path) -> None:
    problems = run_fixture(_write(folder, *_f1("F1bad", installation_settings={"revenue_basis": "gross"},
                                               config={"MBUZZ_NOT_A_SETTING": "1", "queue": "rq"})))
    assert problems == [
        "F1bad config MBUZZ_NOT_A_SETTING: not supported by the fixture runner",
        "F1bad config queue: only 'inline' is supported, got 'rq'",
        "F1bad installation_settings revenue_basis: must be one of total, subtotal",
    ]


def test_SHP38_F9_variant_stale_customer_update_is_ignored(folder: Path) -> None:
    """F9's variant is prose ("after F9, deliver customers/update with the same body but updated_at
    2026-05-20T13:59:00+10:00; expect 200 and no commands"), which the runner does not play: here it is as a
    scenario of its own (SHP-38-D1: the ledger row is `ignored` / `stale_update`)."""
    f9, f9_expected = _public("F9")
    _write(folder, f9, f9_expected)
    step = copy.deepcopy(f9["steps"][0])
    body = {**step["request"]["body"], "updated_at": "2026-05-20T13:59:00+10:00"}
    raw = json.dumps(body, separators=(",", ":"))
    step["at"] = "2026-05-20T04:01:00Z"
    step["request"].update(body=body, body_raw=raw)
    step["request"]["headers"].update({
        "X-Shopify-Topic": "customers/update", "X-Shopify-Webhook-Id": "w-f9-stale", "X-Shopify-Event-Id": "e-f9-stale",
        "X-Shopify-Hmac-Sha256": _sign(raw)})
    stale = {"id": "F9stale", "title": "F9's variant", "now": step["at"], "requires": ["F9"], "steps": [step]}
    want = {"name": step["name"], "response": {"status": 200}, "commands": [],
            "state": [{"table": "shopify_webhook_deliveries", "where": {"webhook_id": "w-f9-stale"},
                       "expect": {"status": "ignored", "error": "stale_update"}}]}
    assert run_fixture(_write(folder, stale, {"id": "F9stale", "steps": [want]})) == []
    want["commands"] = [{"kind": "identify"}]  # what a fresh update would emit: this one must not
    assert run_fixture(_write(folder, stale, {"id": "F9stale", "steps": [want]})) != []
