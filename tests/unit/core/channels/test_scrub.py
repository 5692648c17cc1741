"""Email hashing and URL scrubbing: sessions.md ID-6, ID-11, ID-12."""

from __future__ import annotations

import hashlib

import pytest

from core.channels import email_sha256, hash_emails, normalize_email, scrub_url
from core.channels.sources import REDACTED_QUERY_PARAMS

JANE_HEX = "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d"
JANE = "sha256:" + JANE_HEX


def test_ID6_known_vector() -> None:
    assert hashlib.sha256(b"jane@example.com").hexdigest() == JANE_HEX
    assert email_sha256("  Jane@Example.COM ") == JANE_HEX


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("jane@example.com", "jane@example.com"),
        ("  Jane.Doe+Promo@Gmail.COM\n", "jane.doe+promo@gmail.com"),  # no dot or plus folding
        ("a@b.co", "a@b.co"),
        ("j@sub.example.co.uk", "j@sub.example.co.uk"),
        ("jane@example", None),
        ("jane example@x.com", None),
        ("jane@@example.com", None),
        ("@example.com", None),
        ("jane@.com", None),
        ("j@x.y.z", "j@x.y.z"),  # the ID-6 pattern is deliberately loose; implemented exactly
        ("jane@example.com\nx", None),
        ("", None),
        ("not an email", None),
    ],
    ids=lambda v: repr(v),
)
def test_ID6_normalize_email(raw: str, normalized: str | None) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (JANE_HEX, JANE_HEX),
        (JANE_HEX.upper(), JANE_HEX),
        (" " + JANE_HEX + " ", JANE_HEX),
        ("jane@example.com", JANE_HEX),
        ("nope", None),
        ("a" * 63, None),
        ("g" * 64, None),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_ID6_email_sha256(raw: str, expected: str | None) -> None:
    assert email_sha256(raw) == expected


def test_ID11_hash_emails_deep() -> None:
    value = {
        "email": "Jane@Example.com",
        "jane@example.com": "key untouched",
        "nested": {"list": ["x", " jane@example.com ", {"deeper": ["jane@example.com"]}], "n": 3},
        "text": "write to jane@example.com please",
        "flags": [True, None, 1.5],
        "tuple": ("jane@example.com",),
    }
    assert hash_emails(value) == {
        "email": JANE,
        "jane@example.com": "key untouched",
        "nested": {"list": ["x", JANE, {"deeper": [JANE]}], "n": 3},
        "text": "write to jane@example.com please",
        "flags": [True, None, 1.5],
        "tuple": [JANE],
    }
    # the input is not mutated
    assert value["email"] == "Jane@Example.com"


@pytest.mark.parametrize("scalar", [None, 1, 2.5, True, "plain", "jane@example"])
def test_ID11_scalars(scalar: object) -> None:
    assert hash_emails(scalar) == scalar


def test_ID11_top_level_string() -> None:
    assert hash_emails("jane@example.com") == JANE


def test_ID11_deep_nesting_does_not_recurse() -> None:
    deep: object = "jane@example.com"
    for _ in range(20000):
        deep = [deep]
    out = hash_emails(deep)
    for _ in range(20000):
        assert isinstance(out, list)
        out = out[0]
    assert out == JANE


def test_ID11_cycles_terminate() -> None:
    a: list[object] = ["jane@example.com"]
    a.append(a)
    out = hash_emails(a)
    assert isinstance(out, list)
    assert out[0] == JANE
    assert out[1] is out


@pytest.mark.parametrize("name", sorted(REDACTED_QUERY_PARAMS))
def test_ID12_redacted_params(name: str) -> None:
    assert scrub_url(f"https://a.com/p?{name}=s3cr3t&x=1") == f"https://a.com/p?{name}=[redacted]&x=1"
    upper = name.upper()
    assert scrub_url(f"https://a.com/p?{upper}=s3cr3t") == f"https://a.com/p?{upper}=[redacted]"


@pytest.mark.parametrize(
    ("raw", "scrubbed"),
    [
        (None, None),
        ("", None),
        ("https://a.com/p#section", "https://a.com/p"),
        ("https://a.com/p?x=1#frag?token=1", "https://a.com/p?x=1"),
        ("https://a.com/?email=jane%40example.com", "https://a.com/?email=" + JANE),
        ("https://a.com/?e=Jane@Example.com&utm_source=x", "https://a.com/?e=" + JANE + "&utm_source=x"),
        ("https://a.com/?jane@example.com", "https://a.com/?" + JANE),
        ("https://a.com/?q=mail+jane@example.com", "https://a.com/?q=mail+jane@example.com"),
        ("https://bob:hunter2@a.com/p", "https://a.com/p"),
        ("/pricing?session=abc&plan=pro", "/pricing?session=[redacted]&plan=pro"),
        ("https://a.com/?code=&pwd", "https://a.com/?code=[redacted]&pwd"),
        ("https://a.com/?tokens=1&my_token=2", "https://a.com/?tokens=1&my_token=2"),
        ("https://a.com/?%74oken=1", "https://a.com/?%74oken=[redacted]"),
        ("https://a.com/?a=1&&b=2", "https://a.com/?a=1&&b=2"),
    ],
    ids=lambda v: repr(v)[:50],
)
def test_ID12_scrub_url(raw: str | None, scrubbed: str | None) -> None:
    assert scrub_url(raw) == scrubbed


def test_ID12_max_len() -> None:
    url = "https://a.com/?q=" + "b" * 5000
    out = scrub_url(url)
    assert out is not None and len(out) == 2048
    assert scrub_url(url, max_len=20) == url[:20]
    # a cut never leaves half a percent-escape
    cut = scrub_url("https://a.com/?q=%41%42%43", max_len=22)
    assert cut is not None and not cut.endswith("%") and not cut[-2:].startswith("%")
