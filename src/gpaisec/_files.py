"""Writing files whole or not at all (every file gpaisec writes for a user goes through here), and
reading the secret files only their owner may read."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from gpaisec.errors import ConfigError, GpaisecError, InputError

__all__ = ["read_private_file", "write_atomically"]


def read_private_file(
    path: Path,
    what: str,
    *,
    error: type[GpaisecError] = ConfigError,
    unreadable_hint: str = "run gpaisec as the file's owner and check its permissions",
    limit: int = -1,
) -> bytes:
    """The bytes of a secret file (``what``, e.g. "the audit signing key"), at most ``limit``: it must
    be a regular file (a symbolic link is refused), with no permission for group or others, owned by
    this user. Checked on the open descriptor, so nothing can swap the file between check and read;
    every refusal is ``error`` with advice."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{what} {path} is not a regular file", hint="symbolic links are refused") from None
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}", hint=unreadable_hint) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # (a directory opens too, but cannot be read as a file)
        os.close(fd)
        raise error(f"{what} {path} is not a regular file", hint="replace it with the file itself")
    with os.fdopen(fd, "rb") as fh:
        if st.st_mode & 0o077:
            raise error(
                f"{what} {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o})",
                hint=f"chmod 600 {path}, and consider what it protects exposed",
            )
        if st.st_uid != os.geteuid():
            raise error(
                f"{what} {path} belongs to another user (uid {st.st_uid})",
                hint="run gpaisec as the file's owner",
            )
        try:
            return fh.read(limit)
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror or exc}", hint=unreadable_hint) from None


def _default_mode() -> int:
    """The mode a new file would get from ``open()``: 0o666 less the umask (mkstemp uses 0o600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomically(
    path: Path,
    data: bytes | str,
    *,
    what: str = "",
    mode: int | None = None,
    exclusive: bool = False,
    error: type[GpaisecError] = InputError,
) -> bool:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part.

    Steps: 1. create a temporary file in the same directory (same file system, so the rename is
    atomic); 2. write, flush and fsync it; 3. rename it over ``path`` (``exclusive``: link it to
    ``path``, which fails if anything is there, even a file created a moment ago, so of two writers
    exactly one wins); 4. fsync the directory so the rename itself survives a crash. On any failure
    the temporary file is removed and ``error`` raised. Returns True, or (``exclusive``) False if
    ``path`` existed: nothing was written.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    label = f"{what} to {path}" if what else str(path)
    directory = path.absolute().parent
    if not directory.is_dir():
        raise error(f"cannot write {label}: directory {directory} does not exist", hint="create it first")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)  # step 1
    except OSError as exc:
        raise error(
            f"cannot write {label}: {exc.strerror or exc}", hint="choose a path in a directory you may write"
        ) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), _default_mode() if mode is None else mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # step 2
        if exclusive:
            try:
                os.link(tmp, path)  # step 3
            except FileExistsError:
                return False
            finally:
                Path(tmp).unlink(missing_ok=True)
        else:
            os.replace(tmp, path)  # step 3
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise error(
            f"cannot write {label}: {exc.strerror or exc}", hint="choose a file path you may write"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return True  # no directory handles on this platform: the rename is as durable as it gets
    try:
        os.fsync(dir_fd)  # step 4
    finally:
        os.close(dir_fd)
    return True
