"""The catalog: the EU GPAI Code of Practice as versioned data files inside the package.

The data files (``data/*.yaml``, in gpaisec's own words; ids follow the Code) hold the Safety and
Security chapter's 10 commitments and 32 measures, the security appendix's 5 areas and 25
objectives, the Transparency and Copyright chapters at measure level, the AI Act provisions they
serve, the threat-actor, serious-incident and oversight vocabularies, and crosswalks (RAND SL1-SL5).

Use::

    from gpaisec.catalog import load_catalog

    catalog = load_catalog()                      # packaged, validated once, cached
    item = catalog.get("4.2(1)")                  # -> CatalogItem A4.2(1)
    for item in catalog.assessable():             # the 57 Safety and Security items, stable order
        ...
    catalog.digest                                # SHA-256 of the data files, to record in reports

Every file is validated on load; anything wrong raises :class:`gpaisec.errors.CatalogError` naming the
file, the place in it and what to do. ``docs/catalog.md`` describes the files and how to update them.
"""

from gpaisec.catalog._ids import to_oscal_id
from gpaisec.catalog._loader import MANIFEST, load_catalog, packaged_data_dir
from gpaisec.catalog._model import (
    AIActFacts,
    Article,
    Catalog,
    CatalogGroup,
    CatalogItem,
    Chapter,
    Crosswalk,
    CrosswalkLevel,
    CrosswalkMapping,
    Framework,
    GroupKind,
    IncidentReporting,
    IncidentType,
    ItemKind,
    OversightLevel,
    ThreatActor,
)
from gpaisec.catalog._oscal import OSCAL_NS, OSCAL_VERSION, to_oscal_catalog

__all__ = [
    "MANIFEST",
    "OSCAL_NS",
    "OSCAL_VERSION",
    "AIActFacts",
    "Article",
    "Catalog",
    "CatalogGroup",
    "CatalogItem",
    "Chapter",
    "Crosswalk",
    "CrosswalkLevel",
    "CrosswalkMapping",
    "Framework",
    "GroupKind",
    "IncidentReporting",
    "IncidentType",
    "ItemKind",
    "OversightLevel",
    "ThreatActor",
    "load_catalog",
    "packaged_data_dir",
    "to_oscal_catalog",
    "to_oscal_id",
]
