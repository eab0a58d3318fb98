"""TPM 2.0 key provider: data keys are sealed by the TPM under a per-version storage key.

Through ``tpm2-tools`` (subprocesses; ``TPM2TOOLS_TCTI`` or ``tcti=`` selects the TPM, e.g.
``swtpm:host=127.0.0.1,port=2321`` or ``device:/dev/tpmrm0``). Layout:

* the owner-hierarchy primary is re-derived on each use from a fixed template
  (``ecc256:aes256cfb``), so nothing about it is stored;
* each KEK version is a restricted decryption (storage) key created inside the TPM under that
  primary (``fixedtpm|fixedparent|sensitivedataorigin``); only its TPM-encrypted blobs are kept,
  as ``<state_dir>/<key_id>/v<version>.pub|.priv``, useless without this TPM;
* wrapping a data key seals it as a keyed-hash object under the version's storage key (the TPM
  encrypts and integrity-protects it with AES-256-CFB + HMAC keyed from the parent's seed); the
  wrapped key is that object's public and private blobs. Unwrapping loads and unseals it.

Data keys pass through pipes only, never files. Without a resource manager every loaded object
stays in the TPM, so all transient objects are flushed after each command.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from gpaisec.crypto.keys import AuditHook, KeyUnavailableError, WrappedKey, check_data_key, check_key_id, emit
from gpaisec.errors import ConfigError, ConflictError, IntegrityError

__all__ = ["ALGORITHM", "TpmError", "TpmKeyProvider"]

ALGORITHM: Final = "tpm2-seal-ecc256-aes256cfb"
_PRIMARY = ["-C", "o", "-g", "sha256", "-G", "ecc256:aes256cfb"]
_STORAGE_ATTRS = "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth"


class TpmError(ConfigError):
    """A tpm2-tools command failed for a reason other than a bad blob."""

    title = "TPM error"


class TpmKeyProvider:
    """KEK versions as TPM storage keys; blobs kept under ``state_dir``."""

    kind = "tpm2"

    def __init__(
        self, state_dir: str | os.PathLike[str], *, tcti: str | None = None, audit: AuditHook | None = None
    ) -> None:
        self.state_dir = Path(state_dir)
        self._env = dict(os.environ)
        if tcti is not None:
            self._env["TPM2TOOLS_TCTI"] = tcti
        self._audit = audit
        self._lock = threading.Lock()
        if shutil.which("tpm2_createprimary") is None:
            raise ConfigError("tpm2-tools is not installed", hint="apt-get install tpm2-tools")

    # -- tpm2-tools -------------------------------------------------------------------------
    def _tool(self, name: str) -> str:
        path = shutil.which(name, path=self._env.get("PATH"))
        if path is None:
            raise ConfigError(f"{name} (tpm2-tools) is not installed", hint="apt-get install tpm2-tools")
        return path

    def _run(self, args: Sequence[str], *, stdin: bytes | None = None, what: str) -> bytes:
        try:
            proc = subprocess.run(  # noqa: S603 - fixed tool names, arguments built here
                [self._tool(args[0]), *args[1:]],
                input=stdin,
                capture_output=True,
                env=self._env,
                check=False,
                timeout=60,
            )
        finally:
            subprocess.run(  # noqa: S603
                [self._tool("tpm2_flushcontext"), "-t"],
                capture_output=True,
                env=self._env,
                check=False,
                timeout=60,
            )
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise TpmError(f"TPM: {what} failed: {err[-1] if err else proc.returncode}")
        return proc.stdout

    def _primary(self, work: Path) -> Path:
        ctx = work / "primary.ctx"
        self._run(["tpm2_createprimary", "-Q", *_PRIMARY, "-c", str(ctx)], what="creating the primary key")
        return ctx

    def _load_version(self, work: Path, key_id: str, version: int) -> Path:
        pub, priv = self._blobs(key_id, version)
        if not pub.exists() or not priv.exists():
            raise KeyUnavailableError(f"TPM key {key_id!r} has no version {version} in {self.state_dir}")
        ctx = work / "kek.ctx"
        self._run(
            [
                "tpm2_load",
                "-Q",
                "-C",
                str(self._primary(work)),
                "-u",
                str(pub),
                "-r",
                str(priv),
                "-c",
                str(ctx),
            ],
            what=f"loading {key_id!r} v{version} (is this the TPM it was created on?)",
        )
        return ctx

    def _blobs(self, key_id: str, version: int) -> tuple[Path, Path]:
        d = self.state_dir / check_key_id(key_id)
        return d / f"v{version}.pub", d / f"v{version}.priv"

    def _workdir(self) -> tempfile.TemporaryDirectory[str]:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None  # noqa: S108
        return tempfile.TemporaryDirectory(prefix="gpaisec-tpm-", dir=base)

    def _generate(self, key_id: str, version: int) -> int:
        pub, priv = self._blobs(key_id, version)
        pub.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock, self._workdir() as w:
            work = Path(w)
            self._run(
                [
                    "tpm2_create",
                    "-Q",
                    "-C",
                    str(self._primary(work)),
                    "-G",
                    "ecc256:aes256cfb",
                    "-a",
                    _STORAGE_ATTRS,
                    "-u",
                    str(work / "k.pub"),
                    "-r",
                    str(work / "k.priv"),
                ],
                what=f"creating {key_id!r} v{version}",
            )
            shutil.copyfile(work / "k.priv", priv)
            shutil.copyfile(work / "k.pub", pub)  # the .pub last: its presence marks a complete version
        return version

    # -- KeyProvider ------------------------------------------------------------------------
    def versions(self, key_id: str) -> list[int]:
        d = self.state_dir / check_key_id(key_id)
        found = (
            sorted(
                int(p.stem[1:])
                for p in d.glob("v*.pub")
                if p.stem[1:].isdigit() and p.with_suffix(".priv").exists()
            )
            if d.is_dir()
            else []
        )
        if not found:
            raise KeyUnavailableError(f"no TPM key {key_id!r} in {self.state_dir}")
        return found

    def current_version(self, key_id: str) -> int:
        return self.versions(key_id)[-1]

    def create(self, key_id: str) -> int:
        try:
            self.versions(key_id)
        except KeyUnavailableError:
            emit(self._audit, "key.create", provider=self.kind, key_id=key_id, version=1)
            return self._generate(key_id, 1)
        raise ConflictError(f"TPM key {key_id!r} already exists", hint="rotate it instead")

    def rotate(self, key_id: str) -> int:
        version = self.current_version(key_id) + 1
        emit(self._audit, "key.rotate", provider=self.kind, key_id=key_id, version=version)
        return self._generate(key_id, version)

    def retire(self, key_id: str, version: int) -> None:
        if version == self.current_version(key_id):
            raise ConflictError(
                f"version {version} is the current version of {key_id!r}", hint="rotate first"
            )
        pub, priv = self._blobs(key_id, version)
        if not pub.exists():
            raise KeyUnavailableError(f"TPM key {key_id!r} has no version {version}")
        emit(self._audit, "key.retire", provider=self.kind, key_id=key_id, version=version)
        pub.unlink()
        priv.unlink(missing_ok=True)

    def wrap(self, key_id: str, data_key: bytes, *, version: int | None = None) -> WrappedKey:
        check_data_key(data_key)
        v = self.current_version(key_id) if version is None else version
        with self._lock, self._workdir() as w:
            work = Path(w)
            kek = self._load_version(work, key_id, v)
            emit(self._audit, "key.wrap", provider=self.kind, key_id=key_id, version=v)
            self._run(
                [
                    "tpm2_create",
                    "-Q",
                    "-C",
                    str(kek),
                    "-i",
                    "-",
                    "-u",
                    str(work / "dk.pub"),
                    "-r",
                    str(work / "dk.priv"),
                ],
                stdin=bytes(data_key),
                what="sealing a data key",
            )
            pub, priv = (work / "dk.pub").read_bytes(), (work / "dk.priv").read_bytes()
        blob = struct.pack(">H", len(pub)) + pub + struct.pack(">H", len(priv)) + priv
        return WrappedKey(key_id, v, ALGORITHM, blob)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.algorithm != ALGORITHM:
            raise KeyUnavailableError(f"the TPM provider cannot unwrap {wrapped.algorithm!r} keys")
        try:
            blob = wrapped.blob
            (plen,) = struct.unpack_from(">H", blob, 0)
            pub = blob[2 : 2 + plen]
            (rlen,) = struct.unpack_from(">H", blob, 2 + plen)
            priv = blob[4 + plen : 4 + plen + rlen]
            if len(priv) != rlen or 4 + plen + rlen != len(blob):
                raise struct.error("length mismatch")
        except struct.error:
            raise IntegrityError(
                f"the TPM-wrapped key for {wrapped.key_id!r} v{wrapped.version} is malformed"
            ) from None
        with self._lock, self._workdir() as w:
            work = Path(w)
            kek = self._load_version(work, wrapped.key_id, wrapped.version)
            emit(
                self._audit, "key.unwrap", provider=self.kind, key_id=wrapped.key_id, version=wrapped.version
            )
            (work / "dk.pub").write_bytes(pub)
            (work / "dk.priv").write_bytes(priv)
            try:
                self._run(
                    [
                        "tpm2_load",
                        "-Q",
                        "-C",
                        str(kek),
                        "-u",
                        str(work / "dk.pub"),
                        "-r",
                        str(work / "dk.priv"),
                        "-c",
                        str(work / "dk.ctx"),
                    ],
                    what="loading a wrapped data key",
                )
                key = self._run(["tpm2_unseal", "-c", str(work / "dk.ctx")], what="unsealing a data key")
            except TpmError as exc:
                raise IntegrityError(
                    f"the key wrapped under {wrapped.key_id!r} v{wrapped.version} does not unwrap: {exc}"
                ) from None
        return key
