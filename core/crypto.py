"""Secrets at rest (shopify.md §1): Fernet tokens under `MultiFernet`, so keys can be rotated.

`MBUZZ_ENCRYPTION_KEYS` lists Fernet keys, newest first (new data is encrypted with the first, every key can
decrypt). Without it, one key is derived from the app's secret key so `make run` works out of the box; a
production deployment sets the variable (docs/shopify.md SHP-7-D1).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, MultiFernet

__all__ = ["cipher"]


def cipher(keys: Sequence[str], secret_key: str) -> MultiFernet:
    if not keys:
        derived = base64.urlsafe_b64encode(hashlib.sha256(b"mbuzz-encryption:" + secret_key.encode()).digest())
        return MultiFernet([Fernet(derived)])
    return MultiFernet([Fernet(k.encode()) for k in keys])
