"""Imports every area's tables so that one metadata holds the whole schema (for Alembic)."""

from __future__ import annotations

import gpaisec.access.models
import gpaisec.audit.models
import gpaisec.compliance.models
import gpaisec.weights.models  # noqa: F401
from gpaisec.store.base import Base

metadata = Base.metadata

__all__ = ["metadata"]
