"""The shape every monitoring component shares, so ``instrument()`` can wire them uniformly."""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter


class Component(Protocol):
    async def initialize(self) -> None:
        """Start background work (idempotent)."""

    async def shutdown(self) -> None:
        """Stop background work and flush (idempotent)."""

    def router(self) -> APIRouter:
        """HTTP routes this component serves (may be empty)."""
