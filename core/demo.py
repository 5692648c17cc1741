"""A realistic demo dataset, pushed through the real command path (README, ``mbuzz seed-demo``).

``seed_demo`` invents a shop's traffic: visitors arriving over the last ``days`` through every kind of channel
(UTM tags, click ids, search, social, AI and e-mail referrers, direct), browsing, filling carts, signing up
(identify with a hashed e-mail, an acquisition conversion), sometimes on a second device, and buying, some of
them again later. Nothing is written to tables directly: the invented traffic becomes the same core commands
the API builds (touches, events, identify, conversions) and is appended to the tenant's command log in
chronological batches, so sessions, channels, identities, reattribution and the eight models are computed
exactly as for real traffic.

Deterministic: the plan comes from ``random.Random(seed)`` and times relative to ``now``. Idempotent: every
command carries an idempotency key ``demo:<plan>:…``. A tenant whose demo is complete (the last command's key
is claimed) or that holds another demo is left alone; an interrupted run is completed by running it again,
the commands already processed answering as duplicates.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.attribution import DATA_DRIVEN, FIT_INSUFFICIENT_DATA
from core.channels import email_sha256
from core.commands import Command, ConversionCommand, EventCommand, IdentifyCommand, TouchCommand
from core.fitting.service import current_fits, run_fit
from core.ids import new_id
from core.log import CommandLog
from core.money import currency_exponent
from core.reattribution.service import create_batch
from core.reattribution.tasks import run_inline
from core.settings import load_config
from core.storage.models import Conversion, DashboardUser, Event, IdempotencyKey, User, Visitor
from core.storage.models import Session as VisitSession
from core.tenant import Tenant

__all__ = ["DEFAULT_DAYS", "DEFAULT_VISITORS", "DEMO_EMAIL", "MIN_DAYS", "DemoSummary", "demo_account_id", "seed_demo"]

DEMO_EMAIL = "demo@example.com"  # the dashboard login bootstrap-demo creates
DEFAULT_VISITORS = 3000
DEFAULT_DAYS = 60
MIN_DAYS = 7  # shorter spans would crowd journeys into visits less than 30 minutes apart
BATCH = 250  # commands per append, like a busy drain batch
KEY_PREFIX = "demo:"
SHOP = "https://www.northwind-outfitters.com"

# ------------------------------------------------------------------------------------------------- the shop

PRODUCTS = [  # (slug, price in hundredths of the account currency's major unit)
    ("trail-runner-shoe", 12900), ("merino-base-layer", 7900), ("rain-shell-jacket", 19900),
    ("hiking-socks-3-pack", 2400), ("daypack-22l", 8900), ("insulated-bottle", 3400), ("down-vest", 14900),
    ("trekking-poles", 9900), ("beanie", 1900), ("camp-mug", 1500), ("headlamp", 4900), ("fleece-hoodie", 6900),
]
CONTENT = ["/blog/how-to-layer-for-winter-hikes", "/blog/best-trail-runners-2026", "/blog/packing-list-weekend",
           "/guides/waterproof-ratings-explained", "/guides/sizing"]
COLLECTIONS = ["/collections/new", "/collections/sale", "/collections/jackets", "/collections/footwear"]
FIRST_NAMES = ["Jane", "Omar", "Li", "Sofia", "Noah", "Amara", "Lukas", "Priya", "Mateo", "Hannah", "Kenji",
               "Chloe", "Ethan", "Fatima", "Jonas", "Maya"]
LAST_NAMES = ["Smith", "Haddad", "Wang", "Rossi", "Müller", "Okafor", "Novak", "Patel", "García", "Brown",
              "Tanaka", "Martin", "Jensen", "Silva"]

DESKTOP_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
]
MOBILE_AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile "
    "Safari/537.36",
]
TABLET_AGENT = ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                "Version/17.5 Mobile/15E148 Safari/604.1")
BOT_AGENTS = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
              "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"]
COUNTRIES = (["US"] * 8) + (["GB"] * 3) + (["DE"] * 2) + ["CA", "CA", "AU", "FR", "NL", "SE", "IE"]

# Channel mixes (sessions.md CH-1 names): how people find the shop first, and how they come back. The two
# differ on purpose, so first-touch, last-touch and the spreading models disagree visibly on the dashboard.
DISCOVERY = {"paid_search": 22, "organic_search": 20, "paid_social": 15, "organic_social": 7, "display": 7,
             "affiliate": 5, "referral": 6, "video": 4, "ai": 4, "direct": 8, "other": 2}
RETURN = {"email": 24, "direct": 24, "paid_search": 15, "organic_search": 14, "paid_social": 6,
          "organic_social": 4, "affiliate": 5, "display": 4, "referral": 2, "ai": 2}
HOURS = [1, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 7, 8, 8, 7, 7, 7, 8, 9, 10, 10, 9, 6, 3]  # visits by hour of day (UTC)


@dataclass(frozen=True)
class DemoSummary:
    """What the demo holds. ``created`` is False when the tenant already had it (nothing was appended); the
    counts are then the tenant's stored totals."""

    created: bool
    visitors: int
    sessions: int
    events: int
    conversions: int
    purchases: int
    identities: int
    revenue_minor: int
    currency: str
    seconds: float = 0.0

    def describe(self) -> str:
        exponent = currency_exponent(self.currency)
        revenue = f"{self.revenue_minor / 10**exponent:,.{exponent}f} {self.currency}"
        what = "seeded" if self.created else "already seeded, nothing appended"
        took = f" in {self.seconds:.1f} s" if self.created else ""
        return (f"demo data {what}{took}: {self.visitors:,} visitors, {self.sessions:,} sessions, "
                f"{self.events:,} events, {self.conversions:,} conversions ({self.purchases:,} purchases, "
                f"revenue {revenue}), {self.identities:,} identities")


def demo_account_id(db: Session) -> str | None:
    """The account whose dashboard user is the demo login (created by ``bootstrap-demo``), if any."""
    return db.scalar(sa.select(DashboardUser.account_id).where(DashboardUser.email == DEMO_EMAIL)
                     .order_by(DashboardUser.created_at).limit(1))


# ------------------------------------------------------------------------------------------------ the plan


@dataclass
class _Device:
    key: str
    user_agent: str
    fingerprint: str
    country: str


@dataclass
class _Visit:
    device: _Device
    at: datetime
    channel: str
    pages: int
    cart: bool = False
    checkout: bool = False
    signup: bool = False
    login: bool = False  # an identify on this device (a returning user signing in)
    purchase: bool = False


@dataclass
class _Person:
    devices: list[_Device]
    visits: list[_Visit] = field(default_factory=list)
    user_key: str | None = None
    name: str = ""
    email: str = ""
    bot: bool = False


@dataclass
class _Plan:
    commands: list[tuple[datetime, int, Command]] = field(default_factory=list)
    visitors: int = 0
    sessions: int = 0
    events: int = 0
    conversions: int = 0
    purchases: int = 0
    identities: int = 0
    revenue_minor: int = 0


class _Generator:
    def __init__(self, rng: random.Random, now: datetime, days: int, currency: str, tag: str) -> None:
        self.rng = rng
        self.now = now
        self.days = days
        self.currency = currency
        self.exponent = currency_exponent(currency)
        self.tag = tag
        self.plan = _Plan()
        self._serial = 0
        self._users: set[str] = set()

    # ---------------------------------------------------------------------------------------- helpers

    def _key(self, kind: str) -> str:
        self._serial += 1
        return f"{KEY_PREFIX}{self.tag}:{kind}{self._serial:07d}"

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def _token(self, length: int) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
        return "".join(self.rng.choice(alphabet) for _ in range(length))

    def _pick(self, weights: dict[str, int]) -> str:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def _add(self, at: datetime, command: Command) -> None:
        self.plan.commands.append((at, len(self.plan.commands), command))

    def _minor(self, hundredths: int) -> int:
        """A price in the account currency's minor units (¥4,999 rather than ¥49 for a zero-decimal currency)."""
        return int(hundredths * 10 ** max(self.exponent - 2, 0))

    def device(self, kind: str) -> _Device:
        rng = self.rng
        if kind == "desktop":
            agent = rng.choice(DESKTOP_AGENTS)
        elif kind == "mobile":
            agent = rng.choice(MOBILE_AGENTS) if rng.random() < 0.92 else TABLET_AGENT
        else:
            agent = rng.choice(BOT_AGENTS)
        masked_ip = f"{rng.choice([198, 203, 192])}.{rng.randrange(256)}.{rng.randrange(256)}.0"  # FP-1: /24
        fingerprint = hashlib.sha256(f"{masked_ip}|{agent}".encode()).hexdigest()[:32]  # FP-2
        self.plan.visitors += 1
        return _Device(self._hex(64), agent, fingerprint, rng.choice(COUNTRIES))

    # ---------------------------------------------------------------------------------------- arrivals

    def arrival(self, channel: str, landing: str, at: datetime) -> tuple[str, str | None]:
        """The landing URL and referrer of a visit that sessions.md CH-2 classifies as ``channel``."""
        url = SHOP + landing
        by_channel = _ARRIVALS.get(channel)
        return by_channel(self, url, at) if by_channel is not None else (url, None)  # direct

    def _paid_search(self, url: str, _at: datetime) -> tuple[str, str | None]:
        if self.rng.random() < 0.8:
            campaign = self.rng.choice(["brand", "brand", "generic_footwear", "generic_jackets", "shopping"])
            return (_tagged(url, utm_source="google", utm_medium="cpc", utm_campaign=campaign,
                            gclid=self._token(32)), "https://www.google.com/")
        return (_tagged(url, utm_source="bing", utm_medium="cpc", utm_campaign="brand", msclkid=self._hex(32)),
                "https://www.bing.com/")

    def _organic_search(self, url: str, _at: datetime) -> tuple[str, str | None]:
        return url, self.rng.choice(["https://www.google.com/", "https://www.google.com/", "https://www.google.co.uk/",
                                     "https://www.bing.com/", "https://duckduckgo.com/", "https://www.ecosia.org/"])

    def _paid_social(self, url: str, _at: datetime) -> tuple[str, str | None]:
        source = self.rng.choice(["facebook", "facebook", "instagram", "tiktok"])
        campaign = self.rng.choice(["spring_launch", "retargeting_cart", "lookalike_buyers"])
        if source == "tiktok":
            return _tagged(url, utm_source="tiktok", utm_medium="paid_social", utm_campaign=campaign,
                           ttclid=self._token(24)), "https://www.tiktok.com/"
        referrer = "https://l.facebook.com/" if source == "facebook" else "https://l.instagram.com/"
        return (_tagged(url, utm_source=source, utm_medium="paid_social", utm_campaign=campaign,
                        fbclid=self._token(30)), referrer)

    def _organic_social(self, url: str, _at: datetime) -> tuple[str, str | None]:
        choice = self.rng.randrange(5)
        if choice == 0:
            return _tagged(url, fbclid=self._token(30)), "https://l.facebook.com/"
        return url, ["https://www.instagram.com/", "https://t.co/", "https://www.reddit.com/r/hiking/",
                     "https://www.pinterest.com/"][choice - 1]

    def _email(self, url: str, at: datetime) -> tuple[str, str | None]:
        source = self.rng.choice(["newsletter", "klaviyo"])
        week = at.isocalendar()
        campaign = self.rng.choice([f"weekly_{week.year}w{week.week:02d}", "abandoned_cart", "back_in_stock"])
        webmail = self.rng.choice([None, None, "https://mail.google.com/"])
        return _tagged(url, utm_source=source, utm_medium="email", utm_campaign=campaign), webmail

    def _display(self, url: str, _at: datetime) -> tuple[str, str | None]:
        if self.rng.random() < 0.7:
            return _tagged(url, utm_source="dv360", utm_medium="cpm", utm_campaign="prospecting_outdoor"), None
        return _tagged(url, dclid=self._token(24)), "https://www.outsideonline.com/"

    def _affiliate(self, url: str, _at: datetime) -> tuple[str, str | None]:
        if self.rng.random() < 0.6:
            return _tagged(url, irclickid=self._token(22)), "https://www.outdoorgearlab.com/"
        return _tagged(url, utm_source="awin", utm_medium="affiliate", awc=self._hex(20)), None

    def _referral(self, url: str, _at: datetime) -> tuple[str, str | None]:
        return url, self.rng.choice(["https://www.treehugger.com/best-rain-jackets", "https://blog.trailtalk.org/p/42",
                                     "https://www.switchbacktravel.com/gear"])

    def _video(self, url: str, _at: datetime) -> tuple[str, str | None]:
        return url, f"https://www.youtube.com/watch?v={self._token(11)}"

    def _ai(self, url: str, _at: datetime) -> tuple[str, str | None]:
        if self.rng.random() < 0.3:
            return _tagged(url, utm_source="chatgpt.com"), None
        return url, self.rng.choice(["https://chatgpt.com/", "https://www.perplexity.ai/", "https://claude.ai/"])

    def _other(self, url: str, _at: datetime) -> tuple[str, str | None]:
        if self.rng.random() < 0.5:
            return _tagged(url, utm_medium="sms", utm_campaign="flash_sale"), None
        return _tagged(url, utm_source="spring_promo_flyer"), None

    def landing(self, channel: str) -> str:
        rng = self.rng
        if channel in ("organic_search", "ai", "referral", "video") and rng.random() < 0.5:
            return rng.choice(CONTENT)
        if channel in ("paid_search", "paid_social", "display", "affiliate") and rng.random() < 0.7:
            return f"/products/{rng.choice(PRODUCTS)[0]}"
        if channel == "email" and rng.random() < 0.6:
            return rng.choice(COLLECTIONS)
        return "/"

    # ---------------------------------------------------------------------------------------- people

    def person(self, index: int, budget: int) -> _Person:
        """One person's devices and visits, placed inside ``[now - days, now)``; uses at most ``budget`` devices."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.02:
            return self._bot()
        buyer = roll >= 0.77
        browser = not buyer and roll >= 0.52
        primary = self.device("mobile" if rng.random() < 0.45 else "desktop")
        person = _Person([primary])
        visits, signs_up = self._intent(buyer, browser)
        if signs_up:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            person.user_key = f"cust_{100000 + index}"
            person.name = f"{first} {last}"
            person.email = f"{first.lower()}.{index}@example.com"
        second = (signs_up and budget >= 2 and rng.random() < 0.3)
        if second:
            person.devices.append(self.device("desktop" if primary.user_agent in MOBILE_AGENTS else "mobile"))
        plan = self._visits(person, visits, second, engaged=buyer or browser)
        if buyer:
            self._buys(plan, primary, second, signs_up)
        else:
            self._browses(plan, browser, signs_up)
        if signs_up:
            self._after_signup(plan, person, second, buyer)
        self._place(plan)
        person.visits = plan
        return person

    def _intent(self, buyer: bool, browser: bool) -> tuple[int, bool]:
        """How many visits a person makes and whether they sign up."""
        rng = self.rng
        if buyer:
            return rng.choice([2, 3, 3, 4, 4, 5, 6]), rng.random() < 0.75
        if browser:
            return rng.choice([1, 2, 2, 3, 4]), rng.random() < 0.15
        return 1, False

    def _visits(self, person: _Person, count: int, second: bool, engaged: bool) -> list[_Visit]:
        rng = self.rng
        primary = person.devices[0]
        channels = [self._pick(DISCOVERY)] + [self._pick(RETURN) for _ in range(count - 1)]
        plan: list[_Visit] = []
        for i, channel in enumerate(channels):
            device = person.devices[-1] if second and i > 0 and rng.random() < 0.4 else primary
            pages = rng.randint(2, 7) if engaged else rng.choice([1, 1, 2, 3])
            plan.append(_Visit(device, self.now, channel, pages))
        return plan

    def _buys(self, plan: list[_Visit], primary: _Device, second: bool, signs_up: bool) -> None:
        rng = self.rng
        buy = plan[-1]
        buy.cart = buy.checkout = buy.purchase = True
        buy.device = primary if not second or rng.random() < 0.6 else buy.device
        if signs_up:
            plan[rng.randrange(len(plan) - 1) if rng.random() < 0.4 else -1].signup = True

    def _browses(self, plan: list[_Visit], browser: bool, signs_up: bool) -> None:
        rng = self.rng
        for visit in plan:
            visit.cart = browser and rng.random() < 0.3
            visit.checkout = visit.cart and rng.random() < 0.35
        if signs_up:
            plan[rng.randrange(len(plan))].signup = True

    def _after_signup(self, plan: list[_Visit], person: _Person, second: bool, buyer: bool) -> None:
        rng = self.rng
        primary = person.devices[0]
        signup_at = next(i for i, v in enumerate(plan) if v.signup)
        for visit in plan[:signup_at + 1]:
            visit.device = primary if visit.signup else visit.device  # the account is created on the main device
        if second:  # the person later signs in on the other device: that links it (sessions.md ID-3, ID-13)
            plan.append(_Visit(person.devices[-1], self.now, self._pick({"email": 3, "direct": 2}),
                               rng.randint(1, 3), login=True))
        if buyer and rng.random() < 0.4:  # repeat purchases, mostly after e-mails and direct visits
            for _ in range(rng.choice([1, 1, 2])):
                for _ in range(rng.choice([1, 1, 2])):
                    plan.append(_Visit(rng.choice(person.devices), self.now, self._pick(RETURN),
                                       rng.randint(2, 5)))
                repeat = plan[-1]
                repeat.cart = repeat.checkout = repeat.purchase = True

    def _bot(self) -> _Person:
        device = self.device("bot")
        visits = [_Visit(device, self.now, "bot", self.rng.randint(1, 4))]
        self._place(visits)
        return _Person([device], visits, bot=True)

    def _place(self, visits: list[_Visit]) -> None:
        """Gaps of hours to days between visits, at plausible hours of the day; the journey ends before ``now``.

        Gaps stay over 30 minutes (3.6 h at least, days >= 7), so every planned visit is one session (SES-1)."""
        rng = self.rng
        window = self.days - 0.05
        longest = min(12.0, window * 0.9 / max(len(visits) - 1, 1))
        gaps = [min(max(rng.expovariate(1 / 2.5), 0.15), longest) for _ in visits[1:]]  # days
        earliest, latest = self.now - timedelta(days=self.days), self.now - timedelta(hours=1)
        base = [earliest + timedelta(days=rng.uniform(0, window - sum(gaps)))]
        for gap in gaps:
            base.append(base[-1] + timedelta(days=gap))
        low = earliest
        for i, visit in enumerate(visits):
            hour = rng.choices(range(24), weights=HOURS)[0]
            nudged = base[i].replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60))
            high = latest if i == len(visits) - 1 else base[i + 1] - timedelta(hours=2)
            visit.at = nudged if low <= nudged <= high else base[i]
            low = visit.at + timedelta(hours=2)

    # ---------------------------------------------------------------------------------------- commands

    def render(self, person: _Person) -> None:
        identified: set[str] = set()  # devices the person has signed in on
        for visit in person.visits:
            self.plan.sessions += 1
            if person.bot:
                self._bot_visit(visit)
                continue
            known = person.user_key if visit.device.key in identified else None
            if self._visit(visit, person, known) is not None:
                identified.add(visit.device.key)

    def _received(self, at: datetime) -> datetime:
        return at + timedelta(milliseconds=self.rng.randint(30, 900))  # ingest lag

    def _event(self, device: _Device, at: datetime, event_type: str, url: str, referrer: str | None,
               funnel: str | None = None, properties: dict[str, object] | None = None) -> EventCommand:
        command = EventCommand(
            id=new_id("evt", at), event_type=event_type, occurred_at=at, received_at=self._received(at),
            visitor_key=device.key, funnel=funnel, url=url, referrer=referrer, user_agent=device.user_agent,
            fingerprint=device.fingerprint, properties=dict(properties or {}), idempotency_key=self._key("e"),
            sdk_name="mbuzz-demo", sdk_version="1",
        )
        self._add(at, command)
        self.plan.events += 1
        return command

    def _bot_visit(self, visit: _Visit) -> None:
        at, device = visit.at, visit.device
        for _ in range(visit.pages):
            path = self.rng.choice(["/", "/sitemap.xml", *COLLECTIONS, *CONTENT])
            self._event(device, at, "page_view", SHOP + path, None)
            at += timedelta(seconds=self.rng.uniform(1, 20))

    def _visit(self, visit: _Visit, person: _Person, user_key: str | None) -> str | None:
        """One visit's commands; ``user_key`` is set when the person is signed in on this device already.
        Returns the user key the visit ends signed in with."""
        rng, device = self.rng, visit.device
        at = visit.at.replace(microsecond=rng.randrange(1_000_000))
        landing = self.landing(visit.channel)
        url, referrer = self.arrival(visit.channel, landing, at)
        # The SDK's two calls for a landing: the touch (POST /sessions) and the page's event, same URL.
        self._add(at, TouchCommand(
            id=new_id("cmd", at), visitor_key=device.key, client_session_id=self._hex(32), occurred_at=at,
            received_at=self._received(at), url=url, referrer=referrer, user_agent=device.user_agent,
            fingerprint=device.fingerprint, country=device.country, idempotency_key=self._key("t"),
        ))
        at += timedelta(milliseconds=rng.randint(200, 1500))
        product = rng.choice(PRODUCTS)
        if landing.startswith("/products/"):
            product = next(p for p in PRODUCTS if landing.endswith(p[0]))
            self._event(device, at, "product_viewed", url, referrer, "checkout",
                        {"sku": product[0], "price": self._minor(product[1])})
        else:
            self._event(device, at, "page_view", url, referrer)
        previous = SHOP + landing
        # A returning customer signs in: on a new device (login visit) or to buy (ID-3, ID-13 cross-device).
        signs_in = visit.login or (visit.purchase and not visit.signup)
        if signs_in and user_key is None and person.user_key is not None:
            at += timedelta(seconds=rng.uniform(5, 40))
            self._identify(person, device, at)
            user_key = person.user_key
        cart: list[tuple[str, int]] = []
        for page in range(visit.pages - 1):
            at += timedelta(seconds=rng.uniform(12, 150))
            if rng.random() < 0.6 or visit.cart and page == visit.pages - 2:
                product = rng.choice(PRODUCTS)
                page_url = f"{SHOP}/products/{product[0]}"
                self._event(device, at, "product_viewed", page_url, previous, "checkout",
                            {"sku": product[0], "price": self._minor(product[1])})
            else:
                page_url = SHOP + rng.choice(COLLECTIONS + CONTENT[:2])
                self._event(device, at, "page_view", page_url, previous)
            previous = page_url
        if visit.cart:
            for item in [product] + [rng.choice(PRODUCTS) for _ in range(rng.choice([0, 0, 0, 1, 1, 2]))]:
                at += timedelta(seconds=rng.uniform(8, 60))
                cart.append((item[0], item[1]))
                self._event(device, at, "add_to_cart", f"{SHOP}/products/{item[0]}", previous, "checkout",
                            {"sku": item[0], "price": self._minor(item[1]), "quantity": 1})
        if visit.signup and person.user_key is not None:
            at += timedelta(seconds=rng.uniform(20, 90))
            self._event(device, at, "signup_started", f"{SHOP}/account/register", previous, "signup")
            at += timedelta(seconds=rng.uniform(30, 120))
            self._identify(person, device, at)
            self._add(at + timedelta(milliseconds=5), ConversionCommand(
                id=new_id("conv", at), conversion_type="signup", received_at=self._received(at), converted_at=at,
                visitor_key=device.key, user_key=person.user_key, is_acquisition=True, funnel="signup",
                properties={"plan": "free"}, idempotency_key=self._key("c"), fingerprint=device.fingerprint,
            ))
            self.plan.conversions += 1
            user_key = person.user_key
        if visit.checkout:
            at += timedelta(seconds=rng.uniform(15, 90))
            self._event(device, at, "checkout_started", f"{SHOP}/checkout", f"{SHOP}/cart", "checkout",
                        {"items": len(cart), "value": sum(self._minor(p) for _, p in cart)})
        if visit.purchase:
            at += timedelta(seconds=rng.uniform(40, 240))
            revenue = sum(self._minor(p) for _, p in cart)
            order = f"NW-{rng.randrange(10**6, 10**7)}"
            event = self._event(device, at, "order_completed", f"{SHOP}/checkout/thank-you", f"{SHOP}/checkout",
                                "checkout", {"order_id": order, "value": revenue, "currency": self.currency})
            self._add(at + timedelta(milliseconds=5), ConversionCommand(
                id=new_id("conv", at), conversion_type="purchase", received_at=self._received(at),
                converted_at=None, event_id=event.id, visitor_key=device.key, user_key=user_key,
                revenue_minor=revenue, currency=self.currency, funnel="checkout",
                properties={"order_id": order, "items": len(cart)}, idempotency_key=self._key("c"),
                fingerprint=device.fingerprint,
            ))
            self.plan.conversions += 1
            self.plan.purchases += 1
            self.plan.revenue_minor += revenue
        return user_key

    def _identify(self, person: _Person, device: _Device, at: datetime) -> None:
        assert person.user_key is not None
        self._add(at, IdentifyCommand(
            id=new_id("cmd", at), user_key=person.user_key, occurred_at=at, received_at=self._received(at),
            visitor_key=device.key, traits={"name": person.name, "marketing_opt_in": self.rng.random() < 0.6},
            email_sha256=email_sha256(person.email), idempotency_key=self._key("i"),
        ))
        if person.user_key not in self._users:
            self._users.add(person.user_key)
            self.plan.identities += 1

    def build(self, visitors: int) -> _Plan:
        index = 0
        while self.plan.visitors < visitors:
            person = self.person(index, visitors - self.plan.visitors)
            self.render(person)
            index += 1
        self.plan.commands.sort(key=lambda item: (item[0], item[1]))
        return self.plan


# ------------------------------------------------------------------------------------------------ seeding


def _tagged(url: str, **params: str) -> str:
    return f"{url}?{urlencode(params)}"


_Arrival = Callable[[_Generator, str, datetime], tuple[str, str | None]]
# sessions.md CH-2: how a visit of each channel lands (direct: the bare URL, no referrer)
_ARRIVALS: dict[str, _Arrival] = {
    "paid_search": _Generator._paid_search, "organic_search": _Generator._organic_search,
    "paid_social": _Generator._paid_social, "organic_social": _Generator._organic_social,
    "email": _Generator._email, "display": _Generator._display, "affiliate": _Generator._affiliate,
    "referral": _Generator._referral, "video": _Generator._video, "ai": _Generator._ai, "other": _Generator._other,
}


def _plan_tag(seed: int, visitors: int, days: int) -> str:
    return f"{seed}.{visitors}.{days}"


_SCOPES = {"touch": "session", "event": "event", "conversion": "conversion", "identify": "identify"}


def _claimed(db: Session, tenant: Tenant, command: Command) -> bool:
    key = getattr(command, "idempotency_key", None)
    return key is not None and db.get(IdempotencyKey, (tenant.account_id, tenant.environment,
                                                       _SCOPES[command.kind], key)) is not None


def _other_demo(db: Session, tenant: Tenant, tag: str) -> bool:
    """Demo conversions of another plan (other seed or size): the tenant has its demo already."""
    mine = f"{KEY_PREFIX}{tag}:"
    found = db.scalar(sa.select(IdempotencyKey.key).where(
        IdempotencyKey.account_id == tenant.account_id, IdempotencyKey.environment == tenant.environment,
        IdempotencyKey.scope == "conversion", IdempotencyKey.key >= KEY_PREFIX, IdempotencyKey.key < "demo;",
        sa.not_(sa.and_(IdempotencyKey.key >= mine, IdempotencyKey.key < mine[:-1] + ";")),
    ).limit(1))
    return found is not None


def stored_summary(db: Session, tenant: Tenant, currency: str) -> DemoSummary:
    """The tenant's stored totals, in the shape of a summary (``created`` False)."""
    def count(model: Any, *where: sa.ColumnElement[bool]) -> int:
        return int(db.scalar(sa.select(sa.func.count()).select_from(model).where(
            model.account_id == tenant.account_id, model.environment == tenant.environment, *where)) or 0)

    revenue = db.scalar(sa.select(sa.func.coalesce(sa.func.sum(Conversion.revenue_minor), 0)).where(
        Conversion.account_id == tenant.account_id, Conversion.environment == tenant.environment))
    return DemoSummary(
        created=False, visitors=count(Visitor), sessions=count(VisitSession), events=count(Event),
        conversions=count(Conversion), purchases=count(Conversion, Conversion.conversion_type == "purchase"),
        identities=count(User), revenue_minor=int(revenue or 0), currency=currency,
    )


def _batches(commands: list[tuple[datetime, int, Command]]) -> Iterator[list[Command]]:
    for start in range(0, len(commands), BATCH):
        yield [command for _, _, command in commands[start:start + BATCH]]


def seed_demo(
    log: CommandLog,
    tenant: Tenant,
    now: datetime,
    visitors: int = DEFAULT_VISITORS,
    days: int = DEFAULT_DAYS,
    seed: int = 42,
    *,
    sessions: sessionmaker[Session],
    progress: Callable[[int, int], object] | None = None,
) -> DemoSummary:
    """Generate the demo for ``tenant`` and append it to ``log`` (the services' command log).

    ``progress(done, total)`` is called after each appended batch with the commands processed so far and the
    plan's total (the CLI's progress bar).

    ``sessions`` reads the tenant's currency and whether the demo is there already. With an inline log the
    data-driven models are then fitted on the new data and its conversions recalculated with that fit (what
    the settings page's "Recalculate" does); a queued log's workers process the commands and fit later.
    """
    if now.tzinfo is None or now.utcoffset() != timedelta(0):
        raise ValueError("now must be an aware UTC datetime")
    if visitors < 1 or not MIN_DAYS <= days <= 365:
        raise ValueError(f"visitors must be >= 1 and days within {MIN_DAYS}..365")
    began = time.perf_counter()
    with sessions() as db:
        currency = load_config(db, tenant.account_id).currency
        tag = _plan_tag(seed, visitors, days)
        plan = _Generator(random.Random(seed), now.astimezone(UTC), days, currency, tag).build(visitors)
        if _other_demo(db, tenant, tag) or (plan.commands and _claimed(db, tenant, plan.commands[-1][2])):
            return stored_summary(db, tenant, currency)
    fitter = _Fitter(sessions, tenant) if log.mode == "inline" else None
    done = 0
    for batch in _batches(plan.commands):
        log.append(tenant, batch, wait=False)
        done += len(batch)
        if progress is not None:
            progress(done, len(plan.commands))
        if fitter is not None:
            fitter.appended(batch)
    if fitter is not None:
        fitter.recalculate()
    return DemoSummary(
        created=True, visitors=plan.visitors, sessions=plan.sessions, events=plan.events,
        conversions=plan.conversions, purchases=plan.purchases, identities=plan.identities,
        revenue_minor=plan.revenue_minor, currency=currency, seconds=time.perf_counter() - began,
    )


class _Fitter:
    """The data-driven fits of an inline seed (ATT-24, ATT-31, ATT-51).

    A real tenant's traffic takes 60 days, so its fit is ready long before most conversions; the demo's takes a
    minute, and the fit made at its first conversion saw almost nothing (``insufficient_data`` is retried after
    an hour). So the seed fits as soon as the data appended so far may suffice; the conversions attributed
    before that, with the linear fallback (ATT-32), are then recalculated with the fit, as the settings page's
    "Recalculate" does. Later conversions use the fit as they arrive."""

    def __init__(self, sessions: sessionmaker[Session], tenant: Tenant) -> None:
        self.sessions = sessions
        self.tenant = tenant
        with sessions() as db:
            config = load_config(db, tenant.account_id)
        self.models = [m for m in DATA_DRIVEN if m in config.attribution.enabled_models]
        self.needed = (config.attribution.min_conversions, config.attribution.min_journeys)
        self.ready = not self.models
        self.before: list[str] = []  # conversions attributed before the fit was ready
        self.visitors: set[str] = set()
        self.tried_at = 0  # conversions seen at the last try

    def appended(self, batch: list[Command]) -> None:
        if self.ready:
            return
        self.before += [c.id for c in batch if isinstance(c, ConversionCommand)]
        self.visitors.update(c.visitor_key for c in batch if c.visitor_key is not None)
        # Visitors bound the journeys from above (a user's visitors make one); retry after 25% more data.
        if len(self.before) >= max(self.needed[0], self.tried_at * 5 // 4) and len(self.visitors) >= self.needed[1]:
            self.tried_at = len(self.before)
            self._fit()

    def _fit(self) -> None:
        with self.sessions.begin() as db:
            run_fit(db, self.tenant)
            self.ready = any(fit.status != FIT_INSUFFICIENT_DATA for fit in current_fits(db, self.tenant).values())

    def recalculate(self) -> None:
        if not self.models or not self.before:
            return
        if not self.ready:
            self._fit()  # the end of the demo: one last try with all of it
            if not self.ready:
                return  # too little data for a fit: the data-driven models keep the linear fallback
        with self.sessions.begin() as db:
            batch_id = create_batch(db, self.tenant, "recalculate", self.models, {"ids": sorted(self.before)}).id
        run_inline(self.sessions, self.tenant, batch_id)
