"""Channel classification, bot detection and scrubbing (sessions.md §6-§11): pure functions, no I/O."""

from core.channels.bots import device_type, is_bot
from core.channels.classify import CHANNELS, SiteConfig, Traffic, traffic_for
from core.channels.referrers import registrable_domain
from core.channels.scrub import email_sha256, hash_emails, normalize_email, scrub_url

__all__ = [
    "CHANNELS",
    "SiteConfig",
    "Traffic",
    "device_type",
    "email_sha256",
    "hash_emails",
    "is_bot",
    "normalize_email",
    "registrable_domain",
    "scrub_url",
    "traffic_for",
]
