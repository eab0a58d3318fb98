"""Tables of the weights registry: models, versions, artifacts, sites, devices, locations,
scans, sightings and findings."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gpaisec.store.base import Base, UTCDateTime


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    released: Mapped[bool] = mapped_column(Boolean, default=False)  # default for its new versions
    training_flop: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", order_by="ModelVersion.created_at"
    )


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "name", name="model_version_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    released: Mapped[bool] = mapped_column(Boolean, default=False)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    training_flop: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    model: Mapped[Model] = relationship(back_populates="versions")
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="version", order_by="Artifact.registered_at"
    )

    @property
    def ref(self) -> str:
        return f"{self.model.name}:{self.name}"


class Artifact(Base):
    """A registered set of files that is a version's weights: its manifest and digests."""

    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True)
    manifest_digest: Mapped[str] = mapped_column(String(160), index=True)
    algorithm: Mapped[str] = mapped_column(String(40))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    file_count: Mapped[int] = mapped_column(Integer)
    total_size: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    registered_by: Mapped[str] = mapped_column(String(200))
    version: Mapped[ModelVersion] = relationship(back_populates="artifacts")
    files: Mapped[list[ArtifactFile]] = relationship(
        back_populates="artifact", cascade="all, delete-orphan", order_by="ArtifactFile.path"
    )


class ArtifactFile(Base):
    __tablename__ = "artifact_files"
    __table_args__ = (Index("ix_artifact_files_size", "size"),)

    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(160))
    format: Mapped[str | None] = mapped_column(String(40), nullable=True)
    fingerprint: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    artifact: Mapped[Artifact] = relationship(back_populates="files")


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(40))  # datacenter | office | cloud-region | other
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id"), nullable=True, index=True)
    managed: Mapped[bool] = mapped_column(Boolean)
    owner: Mapped[str] = mapped_column(String(200), default="")
    disk_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    edr: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    site: Mapped[Site | None] = relationship()


class Location(Base):
    """A place weights may be stored: a directory on a device, or a bucket URI."""

    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("device_id", "path", name="location_device_path"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), nullable=True, index=True)
    path: Mapped[str] = mapped_column(String(1000))  # a directory on the device, or a URI such as s3://b/p
    storage: Mapped[str] = mapped_column(String(30))  # sealed | encrypted-volume | plaintext
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_scan_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    device: Mapped[Device | None] = relationship()
    approvals: Mapped[list[LocationApproval]] = relationship(
        back_populates="location", cascade="all, delete-orphan"
    )

    @property
    def label(self) -> str:
        return f"{self.device.name}:{self.path}" if self.device else self.path


class LocationApproval(Base):
    __tablename__ = "location_approvals"

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    approved_by: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    location: Mapped[Location] = relationship(back_populates="approvals")
    version: Mapped[ModelVersion] = relationship()


class Scan(Base):
    __tablename__ = "scans"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), nullable=True, index=True)
    roots: Mapped[list[str]] = mapped_column(JSON)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    files_seen: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[int] = mapped_column(Integer)
    matches: Mapped[int] = mapped_column(Integer)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class Sighting(Base):
    """A weight file seen at a path by a scan, and what it matched."""

    __tablename__ = "sightings"
    __table_args__ = (
        Index("ix_sightings_version_seen", "version_id", "seen_at"),
        # Covers "the latest scan of each location, and what it saw" (the registry view) without the table.
        Index("ix_sightings_location_scan_version", "location_id", "scan_id", "version_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), nullable=True, index=True)
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"), nullable=True, index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(40))
    version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    match: Mapped[str] = mapped_column(String(40))  # exact | renamed | resharded | unmatched
    coverage: Mapped[float] = mapped_column(Float, default=0.0)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    seen_by: Mapped[str] = mapped_column(String(200))


class Finding(Base):
    """Something wrong in the registry's world, with a lifecycle: open -> acknowledged -> resolved."""

    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_state_kind", "state", "kind"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))  # critical | high | medium | low
    state: Mapped[str] = mapped_column(String(20))  # open | acknowledged | resolved
    summary: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(300), index=True)
    version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), nullable=True)
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"), nullable=True)
    sighting_id: Mapped[str | None] = mapped_column(ForeignKey("sightings.id"), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)
