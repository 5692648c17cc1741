"""Pydantic v2 models of the v1 wire format (api.md §8): lenient request types, exact response shapes.

The OpenAPI document is generated from these models (API-160) and the tests validate every fixture request and
every answer against them, so document, code and fixtures cannot drift apart. Request fields are deliberately
loose (``revenue: number | string``, ``properties: object | []``)
because the published SDKs send those forms; the exact messages for wrong values come from the field rules.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Constraints describe the canonical valid form (API-36, API-40, API-41, API-91), so generated examples reach the
# processors; the edge is more lenient still (it trims, strips quotes, reads "0.4999e2"), never stricter.
ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,255}$", description="API-40 / API-42")]
Id = ClientId | None
Name = Annotated[str, Field(min_length=1, max_length=255, pattern=r"\S")]
Funnel = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]
UserId = Annotated[str, Field(min_length=1, max_length=255, pattern=r"\S")] | Annotated[
    int, Field(ge=-(2**63), le=2**63 - 1)
]
Revenue = Annotated[float, Field(ge=0, le=999_999_999_999.99)] | Annotated[
    str, Field(pattern=r"^\s*([0-9]{1,12}(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,2})?\s*$")
]
Timestamp = str | float | int | None
Properties = dict[str, Any] | list[Any] | None


class _In(BaseModel):
    model_config = ConfigDict(extra="allow")


class SessionIn(_In):
    visitor_id: ClientId
    session_id: ClientId
    url: str | None = None
    referrer: str | None = None
    started_at: Timestamp = None
    user_agent: str | None = None
    ip: str | None = None
    user_id: UserId | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_term: str | None = None
    device_fingerprint: str | None = Field(default=None, description="accepted and ignored (FP-2)")
    fbp: str | None = None
    fbc: str | None = None
    country: str | None = None
    postal_code: str | None = None


class SessionWrapped(_In):
    session: SessionIn


class Identifier(_In):
    user_id: UserId | None = None
    email: str | None = None


class EventIn(_In):
    """One event of a batch (or of ``{"event": {...}}``). Events are validated one by one (API-84): an event
    without ``event_type`` does not fail the request, it is listed in ``rejected`` of the 202."""

    event_type: Name | None = Field(default=None, description="required; an event without it is rejected (API-84)")
    visitor_id: Id = None
    user_id: UserId | None = None
    identifier: Identifier | None = None
    session_id: Id = None
    timestamp: Timestamp = None
    properties: Properties = None
    funnel: Funnel | None = None
    url: str | None = None
    referrer: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    message_id: Name | int | None = None
    id: Name | int | None = None


class FlatEventIn(EventIn):
    """The flat single-event form (API-80 form 4) is recognised by its ``event_type`` key."""

    event_type: Name


EventList = Annotated[list[EventIn], Field(min_length=1, max_length=500)]


class EventsWrapped(_In):
    events: EventList | EventIn


class EventWrapped(_In):
    event: EventIn


class ConversionIn(_In):
    conversion_type: Name
    event_id: Id = None
    visitor_id: Id = None
    user_id: UserId | None = None
    identifier: Identifier | None = None
    revenue: Revenue | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$", description="active ISO 4217 code")] | None = None
    is_acquisition: bool | str | int | None = None
    inherit_acquisition: bool | str | int | None = None
    properties: Properties = None
    funnel: Funnel | None = None
    idempotency_key: Annotated[str, Field(pattern=r"^[\x20-\x7e]{1,255}$")] | None = None
    timestamp: Timestamp = None
    converted_at: Timestamp = None
    ip: str | None = None
    user_agent: str | None = None


class ConversionWrapped(_In):
    conversion: ConversionIn


class IdentifyIn(_In):
    user_id: UserId
    visitor_id: Id = None
    traits: Properties = None
    timestamp: Timestamp = None


class IdentifyWrapped(_In):
    identify: IdentifyIn


# ------------------------------------------------------------------------------------------ responses


class ErrorOut(BaseModel):
    error: str


class RateLimitedOut(BaseModel):
    error: Literal["Rate limit exceeded"]
    retry_after: int


class UnprocessableOut(BaseModel):
    success: Literal[False]
    errors: list[str]


class SessionOut(BaseModel):
    status: Literal["accepted"]
    visitor_id: str
    session_id: str
    channel: str
    warnings: list[str] | None = None


class AcceptedEvent(BaseModel):
    index: int
    id: str
    event_type: str
    visitor_id: str | None
    session_id: str | None
    status: Literal["accepted"]
    duplicate: bool
    warnings: list[str] | None = None


class RejectedEvent(BaseModel):
    index: int
    event_type: str | None
    status: Literal["rejected"]
    errors: list[str]


class EventsOut(BaseModel):
    accepted: int
    rejected: list[RejectedEvent]
    events: list[AcceptedEvent]


class Credit(BaseModel):
    channel: str
    credit: float
    revenue_credit: str | None
    session_id: str
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None


class AttributionOut(BaseModel):
    status: Literal["complete", "pending"]
    lookback_days: int
    sessions_analyzed: int | None
    models: dict[str, list[Credit]]
    fallbacks: dict[str, str] | None = None
    inherited_from: str | None = None


class ConversionCore(BaseModel):
    id: str
    conversion_type: str
    revenue: str | None
    currency: str
    converted_at: str
    visitor_id: str | None


class ConversionObject(BaseModel):
    """The API-94 conversion object: one shape for ``POST /conversions`` and the data API (API-124, API-125)."""

    id: str
    conversion_type: str
    revenue: str | None
    currency: str
    converted_at: str
    funnel: str | None
    is_acquisition: bool
    visitor_id: str | None
    user_id: str | None
    conversion: ConversionCore
    attribution: AttributionOut


class ConversionOut(ConversionObject):
    duplicate: bool
    warnings: list[str] | None = None


class IdentifyOut(BaseModel):
    success: Literal[True]
    identity_id: str | None
    user_id: str
    visitor_id: str | None
    visitor_linked: bool | None
    reattribution: dict[str, int] | None = None
    status: Literal["pending"] | None = None
    warnings: list[str] | None = None


class AccountOut(BaseModel):
    id: str
    name: str


class ValidateOut(BaseModel):
    valid: Literal[True]
    account: AccountOut
    environment: Literal["test", "live"]
    key_prefix: str


class HealthOut(BaseModel):
    status: str
    version: str
    mode: Literal["queued", "inline", "degraded"]
    checks: dict[str, str] | None = None
    warnings: list[str] | None = None  # deep=1: e.g. a Shopify API version past its support (shopify.md SHP-6)


# ------------------------------------------------------------------------------------------ data API (§8.6)
# Every field the views write is required (nullable where the value may be absent), so schemathesis' response
# check notices a field that goes missing; times are API-6 strings, money API-7 strings.


class PageMeta(BaseModel):
    """API-120/API-121: the resolved dates and the page."""

    start_date: str
    end_date: str
    limit: int
    count: int
    next_cursor: str | None


class DataConversionOut(ConversionObject):
    """API-124/API-125: the API-94 object without ``duplicate``/``warnings``, plus ``status`` (API-124-D1)."""

    status: Literal["active", "cancelled"]


class DataConversionsOut(BaseModel):
    data: list[DataConversionOut]
    meta: PageMeta


class DataEventOut(BaseModel):
    """API-126: ``channel`` is the session's (null without a session, API-126-D1)."""

    id: str
    occurred_at: str
    received_at: str
    event_type: str
    funnel: str | None
    visitor_id: str | None
    user_id: str | None
    session_id: str | None
    channel: str | None
    url: str | None
    properties: dict[str, Any]


class DataEventsOut(BaseModel):
    data: list[DataEventOut]
    meta: PageMeta


class DataSessionOut(BaseModel):
    """API-127: ``click_ids`` maps a click-id name to its value; ``client_session_ids`` the 10 latest."""

    id: str
    visitor_id: str | None
    user_id: str | None
    started_at: str
    last_activity_at: str
    channel: str
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_content: str | None
    utm_term: str | None
    referrer_host: str | None
    landing_url: str | None
    click_ids: dict[str, Any]
    touches: int
    events: int
    device_type: str | None
    country: str | None
    excluded: bool
    exclusion_reason: str | None
    client_session_ids: list[str]


class DataSessionsOut(BaseModel):
    data: list[DataSessionOut]
    meta: PageMeta


class AttributionRowOut(BaseModel):
    """API-128: one (model, channel, currency); credits and shares are numbers (API-7), revenue a string."""

    model: str
    channel: str
    currency: str
    conversions: float
    revenue: str
    conversion_share: float
    revenue_share: float
    touchpoints: int


class AttributionMeta(BaseModel):
    """API-128: no pagination; the totals are per currency."""

    start_date: str
    end_date: str
    models: list[str]
    total_conversions: int
    total_revenue: dict[str, str]
    unattributed_conversions: int
    unattributed_revenue: dict[str, str]


class DataAttributionOut(BaseModel):
    data: list[AttributionRowOut]
    meta: AttributionMeta
