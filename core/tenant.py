"""The tenant every read and write is scoped by (spec README, Storage)."""

from __future__ import annotations

from dataclasses import dataclass

ENVIRONMENTS = ("test", "live")


@dataclass(frozen=True, slots=True)
class Tenant:
    account_id: str
    environment: str

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise ValueError(f"environment must be test or live, got {self.environment!r}")
