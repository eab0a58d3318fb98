"""gpaisec: protect unreleased model weights and prove it.

gpaisec keeps the registry of every copy of unreleased model parameters, decides every access to
them, writes every security-relevant event into a tamper-evident Merkle log, and turns the live
state into evidence for each measure of the EU GPAI Code of Practice (Safety and Security chapter).

The public surface is small: the CLI (``gpaisec``), the service functions of each area, and the
pure modules (``gpaisec.audit.merkle``, ``gpaisec.integrity``). Everything else is internal.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
