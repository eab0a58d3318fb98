"""Weights served over the API (appendix 4.3(3): hardened, rate-limited interfaces).

``GET /weights/{model}/{version}/files/{name}`` streams one file's plaintext from its sealed copy:

1. Authenticate (session cookie or service token) and check the file name: one file directly in the
   sealed directory, no '/' (such a path matches no route: 404), no '..', no leading dot (400).
2. Decide: :func:`~gpaisec.access.decide.check_access` must allow ``read`` of ``model:version``; a
   denial is a 403 problem naming the determining policies and the reasons.
3. Configuration: the version must be served here (``serving.json``) with both output limits.
4. Open the sealed file (header verified; every chunk is verified as it is read) and audit the start
   (``weights.serve.start``).
5. Stream chunk by chunk, decrypted into memory only, never the whole file and never to disk. Every
   piece asks the limiter (:mod:`gpaisec.api.ratelimit_stream`: byte rate per principal and per grant,
   total per grant) first. A refusal CUTS the stream: nothing more is sent and the response ends short
   of its Content-Length, so the client sees a truncated body; the cut opens a high finding
   (``rate_limit_exceeded``, which raises an alert) and is audited (``weights.serve.cut``).
6. A finished stream is audited with the bytes served (``weights.serve.end``), as is a stream the
   client abandoned (``complete: false``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import select
from starlette.responses import StreamingResponse
from starlette.types import Send

from gpaisec.access.accounts import get_account
from gpaisec.access.decide import check_access
from gpaisec.access.grants import account_grants, effective_state
from gpaisec.api.deps import CurrentCaller
from gpaisec.api.problems import problem_response
from gpaisec.api.ratelimit_stream import LimitExceeded, Limits, StreamLimiter
from gpaisec.audit.models import AuditEntry
from gpaisec.audit.service import record
from gpaisec.crypto.config import provider_for
from gpaisec.crypto.files import SealedReader, open_file
from gpaisec.crypto.serving import ServedVersion, check_file_name, served_version
from gpaisec.errors import GpaisecError
from gpaisec.store.base import utcnow
from gpaisec.weights.registry import get_version, open_finding
from gpaisec.workspace import Workspace

__all__ = ["PIECE_BYTES", "limiter_for", "router"]

router = APIRouter(tags=["weights"])
log = logging.getLogger("gpaisec.api")

# The most the limiter is asked for at once: a cut lands within this many bytes of the limit's edge.
PIECE_BYTES = 64 << 10
NamePart = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
FileName = Annotated[str, Path(min_length=1, max_length=255)]
END_ACTIONS = ("weights.serve.end", "weights.serve.cut")
_limiter_lock = threading.Lock()


def limiter_for(request: Request) -> StreamLimiter:
    """The server's limiter (``app.state.weights_limiter``; tests may put their own there first)."""
    state = request.app.state
    with _limiter_lock:
        limiter = getattr(state, "weights_limiter", None)
        if limiter is None:
            limiter = state.weights_limiter = StreamLimiter()
    assert isinstance(limiter, StreamLimiter)
    return limiter


def _client_ip(request: Request) -> str:
    host = request.client.host if request.client else ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "0.0.0.0"  # noqa: S104 - "unknown address", never a bind address


def _grant_key(ws: Workspace, username: str, ref: str, now: dt.datetime) -> tuple[str, str]:
    """The live grant that let ``username`` read ``ref`` (limits are per grant) and the version id."""
    with ws.reader() as s:
        account = get_account(s, username)
        version = get_version(s, ref)
        live = [
            g
            for g in account_grants(s, account)
            if g.version_id == version.id and g.action == "read" and effective_state(g, now) == "active"
        ]
        # Allowed without a grant (a released version): the principal's own allowance for the version.
        return (live[0].id if live else f"none:{username}:{ref}"), version.id


def _served_before(ws: Workspace, ref: str, grant: str) -> int:
    """Bytes the audit log says were served under ``grant`` (so a restart does not reset the total)."""
    total = 0
    with ws.reader() as s:
        rows = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action.in_(END_ACTIONS), AuditEntry.object == f"version:{ref}"
            )
        )
        for e in rows:
            d = json.loads(bytes(e.entry)).get("details") or {}
            if isinstance(d, dict) and d.get("grant") == grant and isinstance(d.get("bytes"), int):
                total += d["bytes"]
    return total


class _CuttableResponse(StreamingResponse):
    """A stream that, when cut, ends without its final message: the body stays short of Content-Length."""

    def __init__(self, stream: _Stream, size: int) -> None:
        super().__init__(
            stream.pieces(),
            media_type="application/octet-stream",
            headers={"Content-Length": str(size), "Content-Disposition": "attachment"},
        )
        self.stream = stream

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for piece in self.body_iterator:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        if not self.stream.cut:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass
class _Stream:
    ws: Workspace
    reader: SealedReader
    served: ServedVersion
    name: str
    principal: str
    grant: str
    version_id: str
    limiter: StreamLimiter
    workers: int = 1
    sent: int = 0
    cut: bool = False
    done: bool = False

    def _details(self, **extra: Any) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "file": self.name,
            "grant": self.grant,
            "bytes": self.sent,
            **extra,
        }

    def _record_end(self, complete: bool) -> None:
        with self.ws.transaction() as s:
            record(
                s,
                actor=self.ws.actor,
                action="weights.serve.end",
                object=f"version:{self.served.ref}",
                details=self._details(complete=complete, size=self.reader.size),
            )

    def _record_cut(self, exc: LimitExceeded) -> None:
        details = self._details(limit=exc.kind, key=exc.key, reason=exc.message)
        with self.ws.transaction() as s:
            open_finding(
                s,
                self.ws,
                kind="rate_limit_exceeded",
                severity="high",
                summary=f"weights stream of {self.served.ref}/{self.name} cut: {exc.message}",
                dedupe_key=f"rate_limit_exceeded:{exc.key}:{self.served.ref}",
                details={"version": self.served.ref, **details},
                version_id=self.version_id,
            )
            record(
                s,
                actor=self.ws.actor,
                action="weights.serve.cut",
                object=f"version:{self.served.ref}",
                details=details,
            )

    async def pieces(self) -> AsyncIterator[bytes]:
        # With several server processes each keeps its own buckets: each gets an equal share, so that
        # together they never serve more than the configured rate and total (a stream may get less).
        limits = Limits(
            max(1, self.served.bytes_per_second // self.workers),
            max(1, self.served.max_bytes_per_grant // self.workers),
        )
        try:
            for i in range(self.reader.chunk_count):
                chunk = await anyio.to_thread.run_sync(self.reader.read_chunk, i)
                view = memoryview(chunk)
                at = 0
                while at < len(view):
                    try:
                        allowance = self.limiter.request(
                            self.principal, self.grant, min(PIECE_BYTES, len(view) - at), limits
                        )
                    except LimitExceeded as exc:
                        self.cut = self.done = True
                        await anyio.to_thread.run_sync(self._record_cut, exc)
                        return
                    if allowance.wait > 0:
                        await anyio.sleep(allowance.wait)
                    piece = bytes(view[at : at + allowance.granted])
                    at += allowance.granted
                    self.sent += len(piece)
                    yield piece
                del view, chunk
            self.done = True
            await anyio.to_thread.run_sync(self._record_end, True)
        finally:
            self.reader.close()
            if not self.done:  # the client went away (or reading failed): record what was sent
                self.done = True
                try:
                    self._record_end(False)
                except GpaisecError as exc:  # pragma: no cover - the database went away too
                    log.error("cannot audit the end of a weights stream: %s", exc.diagnostics())


@router.get(
    "/weights/{model}/{version}/files/{name}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
    summary="Stream one file of a model version's weights, decrypted into memory, within the output limits",
)
def stream_file(
    model: NamePart, version: NamePart, name: FileName, request: Request, caller: CurrentCaller
) -> Response:
    ws = caller.workspace
    ref = f"{model}:{version}"
    # Step 1: the file name.
    check_file_name(name)
    # Step 2: the decision.
    decision = check_access(
        ws,
        caller.username,
        "read",
        ref,
        session=caller.session_token if caller.via == "session" else None,
        source_ip=_client_ip(request),
    )
    if not decision.allowed:
        return problem_response(
            403,
            "access denied",
            f"{caller.username} may not read {ref} now",
            type_="urn:gpaisec:problem:access-denied",
            determining_policies=list(decision.determining_policies),
            reasons=list(decision.reasons),
        )
    # Step 3: the configuration.
    served = served_version(ws, ref)
    path = served.path_of(name)
    grant, version_id = _grant_key(ws, caller.username, ref, utcnow())
    limiter = limiter_for(request)
    workers = request.app.state.gpaisec.settings.workers
    if limiter.served(grant) is None:
        already = _served_before(ws, ref, grant)
        if workers > 1:
            # This process's cap is total // workers; it may add an equal share of what is left over
            # all processes, so that together they never pass the total whoever served what before.
            total = served.max_bytes_per_grant
            share_left = max(0, total - already) // workers
            already = total // workers - share_left
        limiter.remember(grant, already)
    # Step 4: open and audit the start.
    reader = open_file(path, provider_for(ws, served.key))
    try:
        with ws.transaction() as s:
            record(
                s,
                actor=ws.actor,
                action="weights.serve.start",
                object=f"version:{ref}",
                details={
                    "principal": caller.username,
                    "file": name,
                    "grant": grant,
                    "size": reader.size,
                    "policies": list(decision.determining_policies),
                    "bytes_per_second": served.bytes_per_second,
                    "max_bytes_per_grant": served.max_bytes_per_grant,
                },
            )
    except BaseException:
        reader.close()
        raise
    # Steps 5-6: stream.
    stream = _Stream(ws, reader, served, name, caller.username, grant, version_id, limiter, workers)
    return _CuttableResponse(stream, reader.size)
