"""The real template against the real gateway (sgtm.md SGTM-43).

For every fixture with a template block, the fixture runner (`tools.fixtures`) starts the gateway on 127.0.0.1
with a fresh seeded database and the clock at the scenario's `now`, runs template.tpl under the Node harness
with `<gateway>` set to that server (and added to `send_http` as SGTM-40 does), and compares the body sent, the
cookies, the outcome, the gateway's answer and the connector commands with the fixture. What the template
sends is therefore what the gateway accepts.
"""

from __future__ import annotations

import json

import pytest

from tests.unit.connectors.sgtm.test_template_harness import FIXTURES, pytestmark
from tools.fixtures import run_fixture

__all__ = ["pytestmark"]


def _cases() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in FIXTURES.glob("F*.json")
                  if not p.name.endswith(".expected.json") and "template" in json.loads(p.read_text()))


@pytest.mark.parametrize("case", _cases())
def test_SGTM43_the_template_talks_to_the_real_gateway(case: str) -> None:
    assert run_fixture(FIXTURES / f"{case}.json") == []
