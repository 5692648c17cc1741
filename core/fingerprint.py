"""The device fingerprint (sessions.md FP-1, FP-2; api.md API-44, API-45): the masked address, the cleaned user agent
and their hash. A privacy rule, so it lives in the core: every edge (REST API, sGTM, Shopify pixel) computes the same
fingerprint from the same inputs, and no raw address goes further than :func:`mask_ip`.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv6Address

__all__ = ["USER_AGENT_MAX", "WARN_IP_IGNORED", "clean_user_agent", "fingerprint", "mask_ip"]

USER_AGENT_MAX = 1024
WARN_IP_IGNORED = "ip ignored: not an IP address"

_V4_MASK = 0xFFFFFF00  # /24
_V6_MASK = ((1 << 48) - 1) << 80  # /48


def mask_ip(v: object, warnings: list[str]) -> str | None:
    """FP-1 / API-44: the only place the raw address is seen. Nothing is cached, so it is not kept either.

    A zone id (``fe80::1%eth0``) is accepted and dropped with the host bits. ``""`` is absent (no warning).
    """
    if v is None:
        return None
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        try:
            if ":" in s:
                a6 = IPv6Address(s)
                a4 = a6.ipv4_mapped
                if a4 is None:
                    return str(IPv6Address(int(a6) & _V6_MASK))
            else:
                a4 = IPv4Address(s)
            return str(IPv4Address(int(a4) & _V4_MASK))
        except ValueError:
            pass
    warnings.append(WARN_IP_IGNORED)
    return None


def clean_user_agent(v: object) -> str | None:
    """API-45. The value is otherwise kept byte-for-byte (no trimming), since FP-2 hashes it and every
    path computing a fingerprint must arrive at the same string. Non-strings are treated as absent."""
    if not isinstance(v, str):
        return None
    s = v.strip()
    if not s or s.lower() == "unknown":
        return None
    return v[:USER_AGENT_MAX]


def fingerprint(masked_ip: str | None, user_agent: str | None) -> str | None:
    """FP-2; takes the outputs of :func:`mask_ip` and :func:`clean_user_agent`, never raw values."""
    if not masked_ip or not user_agent:
        return None
    data = f"{masked_ip}|{user_agent}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:32]
