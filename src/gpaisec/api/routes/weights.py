"""Weights served over the API (appendix 4.3(3): hardened, rate-limited interfaces)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["weights"])
