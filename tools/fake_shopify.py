"""A local fake Shopify for tests and the fixture runner: a real HTTP server on 127.0.0.1, not a mock object.

The gateway reaches it through `MBUZZ_SHOPIFY_OUTBOUND_BASE` (every outbound `https://{shop}/...` becomes
`{base}/{shop}/...`), so the real `requests` and ShopifyAPI code paths run. It serves

- `POST /{shop}/admin/oauth/access_token`: answered from a scripted table of rules (shop + JSON subset);
- `POST /{shop}/admin/api/{version}/graphql.json`: a small stateful Admin API (shop query, webhook
  subscriptions, web pixel create/read/update) whose answers can be overridden one call at a time;

and records every request, with the GraphQL operation and variables it received. Test tooling (issue 18 item 6):
the tests and the fixture runner (`tools/fixtures.py`, F13a–F13d) start it; the product never imports it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

__all__ = ["PCD_MESSAGE", "PROTECTED_TOPICS", "FakeShop", "FakeShopify", "Recorded", "TokenRule", "subset_matches"]

_TOKEN = re.compile(r"/([a-z0-9][a-z0-9-]*\.myshopify\.com)/admin/oauth/access_token")
_GRAPHQL = re.compile(r"/([a-z0-9][a-z0-9-]*\.myshopify\.com)/admin/api/([0-9]{4}-[0-9]{2}|unstable)/graphql\.json")
_ROOT = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)")

# Topics whose payloads carry customer data: without protected-customer-data approval Shopify refuses them with
# this user error (the Partner Dashboard link in the real message names the app; it is left out here).
PROTECTED_TOPICS = frozenset({"ORDERS_PAID", "ORDERS_CREATE", "ORDERS_CANCELLED", "CUSTOMERS_CREATE",
                              "CUSTOMERS_UPDATE"})
PCD_MESSAGE = ("This app is not approved to subscribe to webhook topics containing protected customer data. "
               "See https://shopify.dev/docs/apps/launch/protected-customer-data for more details.")


def subset_matches(expected: Any, got: Any) -> bool:
    """Every key of `expected` is in `got` with an equal value (recursively for objects)."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(k in got and subset_matches(v, got[k]) for k, v in expected.items())
    return bool(expected == got)


def operation_of(query: str) -> str | None:
    """The first root field of a GraphQL document (`shop`, `webPixelCreate`, ...)."""
    found = _ROOT.search(query or "")
    return found.group(1) if found else None


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    shop: str | None
    kind: str  # token | graphql | unknown
    headers: dict[str, str]
    body: Any
    mock: str | None = None  # the token rule that answered
    operation: str | None = None  # the GraphQL root field
    status: int = 0

    @property
    def variables(self) -> dict[str, Any]:
        value = self.body.get("variables") if isinstance(self.body, dict) else None
        return value if isinstance(value, dict) else {}

    @property
    def query(self) -> str:
        value = self.body.get("query") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else ""


@dataclass
class TokenRule:
    """A scripted answer of the token endpoint: first rule whose shop and JSON subset match answers."""

    name: str
    shop: str
    json_subset: dict[str, Any]
    status: int
    json: Any
    times: int | None = None  # how many requests it answers; None: any number


@dataclass
class FakeShop:
    """The state of one fake shop's Admin API."""

    shop: dict[str, Any]
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    pixel: dict[str, Any] | None = None
    tokens: set[str] | None = None  # accepted access tokens; None accepts any
    protected_data_approved: bool = True  # False: PROTECTED_TOPICS are refused as Shopify does without approval


class FakeShopify:
    """The server; `with FakeShopify() as fake:` starts it on a free port and stops it afterwards."""

    def __init__(self) -> None:
        self.shops: dict[str, FakeShop] = {}
        self.token_rules: list[TokenRule] = []
        self.scripted: list[tuple[str, str, int, Any]] = []  # (shop, operation, status, json), one-shot
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ids = 0

    # --- setup ----------------------------------------------------------------------------------------------

    def add_shop(self, domain: str, **shop: Any) -> FakeShop:
        name = domain.split(".", 1)[0]
        defaults: dict[str, Any] = {
            "id": "gid://shopify/Shop/1", "name": name.replace("-", " ").title(), "myshopifyDomain": domain,
            "primaryDomain": {"host": domain}, "domains": [{"host": domain}], "currencyCode": "USD",
            "ianaTimezone": "UTC", "plan": {"partnerDevelopment": False},
        }
        fake = FakeShop(shop={**defaults, **shop})
        self.shops[domain] = fake
        return fake

    def on_token(self, name: str, shop: str, json_subset: dict[str, Any], status: int, answer: Any,
                 times: int | None = None) -> None:
        self.token_rules.append(TokenRule(name, shop, json_subset, status, answer, times))

    def script(self, shop: str, operation: str, status: int, answer: Any) -> None:
        """The next `operation` call for `shop` gets this answer instead of the stateful one."""
        self.scripted.append((shop, operation, status, answer))

    # --- reading --------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the fake Shopify is not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    def graphql(self, shop: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.kind == "graphql" and (shop is None or r.shop == shop)]

    def operations(self, shop: str | None = None) -> list[str]:
        return [r.operation or "" for r in self.graphql(shop)]

    def called_mocks(self) -> list[str]:
        return [r.mock for r in self.requests if r.mock]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- serving --------------------------------------------------------------------------------------------

    def start(self) -> FakeShopify:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeShopify:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k: v for k, v in request.headers.items()}
        with self._lock:
            token_match, graphql_match = _TOKEN.fullmatch(request.path), _GRAPHQL.fullmatch(request.path)
            if request.method == "POST" and token_match:
                record = Recorded(request.method, request.path, token_match.group(1), "token", headers, body)
                status, answer = self._token(record)
            elif request.method == "POST" and graphql_match:
                record = Recorded(request.method, request.path, graphql_match.group(1), "graphql", headers, body,
                                  operation=operation_of(body.get("query", "") if isinstance(body, dict) else ""))
                status, answer = self._graphql(record)
            else:
                record = Recorded(request.method, request.path, None, "unknown", headers, body)
                status, answer = 404, {"errors": "Not Found"}
            record.status = status
            self.requests.append(record)
        response = Response(json.dumps(answer), status=status, mimetype="application/json")
        return response(environ, start_response)

    def _token(self, record: Recorded) -> tuple[int, Any]:
        for rule in self.token_rules:
            if rule.shop == record.shop and rule.times != 0 and subset_matches(rule.json_subset, record.body):
                if rule.times is not None:
                    rule.times -= 1
                record.mock = rule.name
                return rule.status, rule.json
        return 400, {"error": "invalid_request", "error_description": "no scripted answer for this request"}

    def _graphql(self, record: Recorded) -> tuple[int, Any]:
        for index, (shop, operation, status, answer) in enumerate(self.scripted):
            if shop == record.shop and operation == record.operation:
                del self.scripted[index]
                return status, answer
        state = self.shops.get(record.shop or "")
        if state is None:
            return 404, {"errors": "Not Found"}
        token = record.headers.get("X-Shopify-Access-Token")
        if state.tokens is not None and token not in state.tokens:
            return 401, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
        return 200, self._answer(state, record.operation, record.variables)

    def _next_id(self, kind: str) -> str:
        self._ids += 1
        return f"gid://shopify/{kind}/{9000 + self._ids}"

    def _answer(self, state: FakeShop, operation: str | None, variables: dict[str, Any]) -> dict[str, Any]:
        if operation == "shop":
            return {"data": {"shop": state.shop}}
        if operation == "webhookSubscriptions":
            return {"data": {"webhookSubscriptions": {"nodes": [
                {"id": s["id"], "topic": s["topic"], "uri": s["uri"]} for s in state.subscriptions]}}}
        if operation == "webhookSubscriptionCreate":
            if not state.protected_data_approved and variables.get("topic") in PROTECTED_TOPICS:
                return {"data": {"webhookSubscriptionCreate": {"webhookSubscription": None, "userErrors": [
                    {"field": ["webhookSubscription"], "message": PCD_MESSAGE}]}}}
            given = variables.get("webhookSubscription") or {}
            created = {"id": self._next_id("WebhookSubscription"), "topic": variables.get("topic"),
                       "uri": given.get("uri"), "includeFields": given.get("includeFields")}
            state.subscriptions.append(created)
            return {"data": {"webhookSubscriptionCreate": {"webhookSubscription": {"id": created["id"]},
                                                           "userErrors": []}}}
        if operation == "webPixelCreate":
            if state.pixel is not None:
                return {"data": {"webPixelCreate": {"webPixel": None, "userErrors": [
                    {"code": "TAKEN", "field": ["webPixel"], "message": "Web pixel is taken."}]}}}
            state.pixel = {"id": self._next_id("WebPixel"),
                           "settings": (variables.get("webPixel") or {}).get("settings")}
            return {"data": {"webPixelCreate": {"webPixel": {"id": state.pixel["id"]}, "userErrors": []}}}
        if operation == "webPixel":
            return {"data": {"webPixel": {"id": state.pixel["id"]} if state.pixel else None}}
        if operation == "webPixelUpdate":
            if state.pixel is None or state.pixel["id"] != variables.get("id"):
                return {"data": {"webPixelUpdate": {"webPixel": None, "userErrors": [
                    {"code": "NOT_FOUND", "field": ["id"], "message": "Web pixel not found."}]}}}
            state.pixel["settings"] = (variables.get("webPixel") or {}).get("settings")
            return {"data": {"webPixelUpdate": {"webPixel": {"id": state.pixel["id"]}, "userErrors": []}}}
        return {"errors": [{"message": f"unknown operation {operation!r}"}]}
