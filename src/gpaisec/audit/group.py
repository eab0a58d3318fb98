"""Group commit of audit events that have no transaction of their own (access decisions).

A decision changes no state, so it has no transaction to record its event in; giving each one its
own transaction costs a commit, a signed checkpoint and (on SQLite) an fsync per decision. Here many
threads hand their events to one writer thread, which commits them in batches::

    writer = ws.audit_writer()                  # one per workspace, started on first use
    seqs = writer.append([AuditEvent(...)])     # returns once the events are durably committed

The writer, step by step:

1. Wait for the first event; then take every event already queued, up to ``max_batch`` records, and
   (if ``linger`` is set) wait at most ``linger`` seconds for more. Under load the batch is whatever
   arrived while the previous batch was being committed: no added latency when idle.
2. Record them all in one transaction of their own (:func:`~gpaisec.audit.service.append_committed`:
   the same statements as :func:`~gpaisec.audit.service.seal`, on the driver's connection, without an
   ORM session; SQLite writers queue on the workspace's write gate first): one pass hashes them into
   the Merkle tree, and one signed checkpoint covers the whole batch.
3. Commit; only then resolve each submitter's future with its sequence numbers.
4. If anything fails (the database, the signer), every submitter of the batch gets
   :class:`AuditWriteError` and nothing of the batch is committed: a caller that needs its event
   logged (an access decision) must not act on it, so decisions fail closed.

:meth:`AuditWriter.append` waits at most ``timeout`` seconds for its commit and raises
:class:`AuditWriteError` after that (the event may still be committed later: the log then holds a
decision whose answer the caller never received, which errs on the side of recording).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Final

from gpaisec.audit._entry import EntryError, check_fields, encode_details
from gpaisec.audit.service import AuditEvent, PreparedAppend, append_committed, prepare_append
from gpaisec.errors import GpaisecError, InputError, StoreError
from gpaisec.store.engine import HeldGate, WriteGateBusy

if TYPE_CHECKING:
    from gpaisec.workspace import Workspace

__all__ = ["DEFAULT_MAX_BATCH", "AuditWriteError", "AuditWriter"]

_log = logging.getLogger(__name__)

#: Most records committed (and covered by one checkpoint) in one transaction.
DEFAULT_MAX_BATCH: Final = 256
#: How long a caller waits for its batch to commit before it gives up (and fails closed).
DEFAULT_TIMEOUT: Final = 15.0


class AuditWriteError(StoreError):
    """An audit event could not be committed; whatever it was to record must not take effect."""

    title = "audit log unavailable"


class _Item:
    __slots__ = ("encoded", "events", "future", "handed_over")

    def __init__(
        self,
        events: Sequence[AuditEvent],
        future: Future[range] | asyncio.Future[range] | None = None,
        encoded: list[str] | None = None,
    ) -> None:
        self.events = events
        self.encoded = encoded  # each event's details, encoded by _check
        # A thread's future (the writer thread resolves it) or the loop's (committed on the loop).
        self.future: Future[range] | asyncio.Future[range] = future if future is not None else Future()
        self.handed_over = False  # an inline item given to the writer thread (it resolves it)


_STOP: Final = object()


#: How long the event loop waits for SQLite's write gate before handing a batch to the writer thread.
INLINE_GATE_WAIT: Final = 0.005


def _chunks(batch: list[_Item], max_records: int) -> Iterator[list[_Item]]:
    """Consecutive runs of items of at most ``max_records`` records (an item is never split)."""
    chunk: list[_Item] = []
    count = 0
    for item in batch:
        if chunk and count + len(item.events) > max_records:
            yield chunk
            chunk, count = [], 0
        chunk.append(item)
        count += len(item.events)
    if chunk:
        yield chunk


def _timed_out(timeout: float) -> AuditWriteError:
    return AuditWriteError(
        f"the audit log did not commit within {timeout:g} s",
        hint="the database may be locked or down; nothing was allowed",
    )


def _fail_unresolved(batch: list[_Item], detail: str) -> None:
    """Fail closed every future of ``batch`` nobody has resolved yet."""
    error = AuditWriteError(
        f"the audit log could not record this: {detail}",
        hint="nothing was allowed; check the database and run gpaisec audit verify",
    )
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)


def _copy_outcome(source: Future[range], target: asyncio.Future[range]) -> None:
    if target.done():
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def _consume(future: asyncio.Future[range]) -> None:
    """Retrieve the outcome nobody waits for any more (asyncio would log it as never retrieved)."""
    if not future.cancelled():
        future.exception()


IDLE_EXIT = 1.0  # seconds a writer waits for work before its thread ends


class AuditWriter:
    """One writer thread committing queued audit events in batches (see the module docstring)."""

    def __init__(self, ws: Workspace, *, max_batch: int = DEFAULT_MAX_BATCH, linger: float = 0.0) -> None:
        if max_batch < 1:
            raise InputError(f"max_batch must be at least 1, not {max_batch}")
        if not 0 <= linger <= 1:
            raise InputError(f"linger must be between 0 and 1 second, not {linger}")
        self._ws = ws
        self._max_batch = max_batch
        self._linger = linger
        self._writer = _OnDemandThread("gpaisec-audit-writer", self._run)
        # Events appended on an event loop, waiting for that loop's next flush (SQLite only).
        self._inline: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        # Loops with a commit in flight on the committer thread (at most one each).
        self._committing: set[asyncio.AbstractEventLoop] = set()
        self._committer = _OnDemandThread("gpaisec-audit-commit", self._run_commits)
        self.batches = 0  # committed batches (for tests and benchmarks)
        self.records = 0  # committed records

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, events: Sequence[AuditEvent]) -> Future[range]:
        """Queue ``events`` (kept together, in order); the future gives their sequence numbers."""
        encoded = self._check(events)
        future: Future[range] = Future()
        self._writer.put(_Item(events, future, encoded))
        return future

    @staticmethod
    def _check(events: Sequence[AuditEvent]) -> list[str]:
        """Each event's encoded details; InputError for an event that cannot be recorded.

        Refused here, alone, so that it cannot fail the others' batch; the encoding is kept for the
        commit (the details are the bulk of an entry's encoding)."""
        if not events:
            raise InputError("nothing to record")
        encoded = []
        for ev in events:
            try:
                details_json = encode_details(ev.details)
                check_fields(ev.actor, ev.action, ev.object)
            except EntryError as exc:
                raise InputError(f"audit event {ev.action!r} cannot be recorded: {exc}") from None
            encoded.append(details_json)
        return encoded

    def append(self, events: Sequence[AuditEvent], *, timeout: float = DEFAULT_TIMEOUT) -> range:
        """Queue ``events`` and wait until they are committed; their sequence numbers.

        Raises :class:`AuditWriteError` if the batch failed or did not commit within ``timeout``.
        """
        future = self.submit(events)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise _timed_out(timeout) from None

    async def append_async(self, events: Sequence[AuditEvent], *, timeout: float = DEFAULT_TIMEOUT) -> range:
        """:meth:`append` for an event loop: waits for the commit without holding a thread.

        On SQLite the loop's own thread writes the batch: every event appended while the loop was
        busy, one callback after the first of them. Only the commit itself (the fsync) runs on a
        committer thread, so the loop serves requests meanwhile, and what they append is the next
        batch, written once this commit is done (one commit in flight per loop). A writer thread doing
        all of it would have to win the GIL back from the busy loop after each of its database calls,
        which measured 10-30 ms per batch. On PostgreSQL (network round trips) the writer thread
        commits and the loop only awaits it.
        """
        if self._ws.sqlite_write_gate is None:  # PostgreSQL (or an in-memory SQLite database)
            return await self._append_threaded(events, timeout)
        encoded = self._check(events)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[range] = loop.create_future()
        state = self._inline.get(loop)
        if state is None:
            state = self._inline[loop] = []
        state.append(_Item(events, future, encoded))
        if len(state) == 1 and loop not in self._committing:
            loop.call_soon(self._flush_inline, loop)
        return await _wait(future, timeout)

    def _flush_inline(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write what the loop's callers appended (at most ``max_batch`` records) and hand its commit
        to the committer thread; the rest waits for that commit (see :meth:`_committed`).

        The loop waits for SQLite's write gate at most INLINE_GATE_WAIT: if another writer (another
        server process, a CLI command, a thread here) holds it longer, the chunk goes to the writer
        thread instead, and the loop serves requests meanwhile. Every caller's future is resolved
        whatever happens (an unexpected error fails the chunk closed).
        """
        if loop in self._committing:  # the commit in flight flushes again when it is done
            return
        pending = self._inline.pop(loop, [])
        chunks = list(_chunks(pending, self._max_batch))
        if not chunks:
            return
        chunk, rest = chunks[0], [i for c in chunks[1:] for i in c]
        if rest:
            self._inline[loop] = rest
            loop.call_soon(self._flush_inline, loop)
        try:
            self._write_inline(chunk, loop)
        finally:
            _fail_unresolved([i for i in chunk if not i.handed_over], "the audit batch was interrupted")

    def _write_inline(self, chunk: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        gate = self._ws.sqlite_write_gate
        assert gate is not None  # append_async writes inline only where the gate exists
        try:
            held = gate.acquire(INLINE_GATE_WAIT)
        except WriteGateBusy:
            self._hand_over(chunk, loop)
            return
        except Exception as exc:  # the lock file cannot be opened: nothing written, fail closed
            _log_failure(chunk, exc)
            _fail_unresolved(chunk, _detail(exc))
            return
        prepared: PreparedAppend | None = None
        try:
            prepared = prepare_append(
                self._ws.engine, self._ws.audit_signer(), [(item.events, item.encoded) for item in chunk]
            )
            self._committing.add(loop)
            for item in chunk:
                item.handed_over = True  # resolved by _committed
            job = functools.partial(self._commit_prepared, prepared, held, chunk, loop)
            self._committer.put(job)
        except BaseException as exc:
            # Nothing committed (prepare failed, or no thread could take the commit): undo all of it,
            # so no writer anywhere is left waiting for this gate or this transaction.
            if prepared is not None:
                prepared.abort()
            held.release()
            self._committing.discard(loop)
            for item in chunk:
                item.handed_over = False
            _log_failure(chunk, exc)
            _fail_unresolved(chunk, _detail(exc))
            if self._inline.get(loop):
                loop.call_soon(self._flush_inline, loop)
            if not isinstance(exc, Exception):
                raise

    def _commit_prepared(
        self,
        prepared: PreparedAppend,
        held: HeldGate | None,
        chunk: list[_Item],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """On the committer thread: commit, let the next writer in, tell the loop."""
        error: BaseException | None = None
        try:
            prepared.commit()
        except BaseException as exc:
            error = exc
        finally:
            if held is not None:
                held.release()
        try:
            loop.call_soon_threadsafe(self._committed, loop, chunk, prepared.results, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self._committing.discard(loop)
            self._inline.pop(loop, None)
            if error is not None:
                _log_failure(chunk, error)

    def _committed(
        self,
        loop: asyncio.AbstractEventLoop,
        chunk: list[_Item],
        results: list[range],
        error: BaseException | None,
    ) -> None:
        """On the loop: resolve the chunk's futures, then write what arrived meanwhile."""
        self._committing.discard(loop)
        if error is None:
            self.batches += 1
            self.records += sum(len(r) for r in results)
            for item, seqs in zip(chunk, results, strict=True):
                if not item.future.done():  # a caller that gave up (cancelled) is not told
                    item.future.set_result(seqs)
        else:
            _log_failure(chunk, error)
            _fail_unresolved(chunk, _detail(error))
        if self._inline.get(loop):
            self._flush_inline(loop)

    def _hand_over(self, chunk: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        """Give a chunk to the writer thread; each caller's loop future follows its thread future."""
        for item in chunk:
            target = item.future
            assert isinstance(target, asyncio.Future)
            source = self.submit(item.events)
            item.handed_over = True

            def transfer(done: Future[range], target: asyncio.Future[range] = target) -> None:
                loop.call_soon_threadsafe(_copy_outcome, done, target)

            source.add_done_callback(transfer)

    async def _append_threaded(self, events: Sequence[AuditEvent], timeout: float) -> range:
        return await _wait(asyncio.wrap_future(self.submit(events)), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread. Later submissions start a new one."""
        self._writer.stop(timeout)

    # -- the writer ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            # Step 1: the first event, then whatever else is queued (up to max_batch records). A writer
            # idle for IDLE_EXIT seconds stops (the next submission starts another), so an idle process
            # keeps no thread of ours: workspaces that are never closed leak nothing, and code that
            # forks only when no other thread runs (hashing, discovery) can.
            first = self._writer.next_item()
            if first is None or first is _STOP:
                return
            assert isinstance(first, _Item)
            batch, stop = self._gather(first)
            self._commit(batch)
            if stop:
                return

    def _run_commits(self) -> None:
        """The committer thread: commits the loop handed over (:meth:`_commit_prepared`), in order."""
        while (job := self._committer.next_item()) is not None:
            assert callable(job)
            try:
                job()
            except BaseException:  # a job resolves its own callers; the thread must live on
                _log.exception("audit commit job failed")

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        batch = [first]
        count = len(first.events)
        deadline = time.monotonic() + self._linger
        while count < self._max_batch:
            try:
                wait = deadline - time.monotonic()
                queued = self._writer.queue
                nxt = queued.get(timeout=wait) if wait > 0 else queued.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return batch, True
            assert isinstance(nxt, _Item)
            batch.append(nxt)
            count += len(nxt.events)
        return batch, False

    def _commit(self, batch: list[_Item]) -> None:
        """On the writer thread: commit ``batch`` and resolve its futures (all of them, whatever happens)."""
        try:
            # Steps 2-3: one transaction, one checkpoint, committed before anyone hears back.
            with self._ws.write_gate():
                results = append_committed(
                    self._ws.engine, self._ws.audit_signer(), [(item.events, item.encoded) for item in batch]
                )
        except Exception as exc:  # any failure fails the whole batch closed (step 4)
            _log_failure(batch, exc)
            _fail_unresolved(batch, _detail(exc))
            return
        self.batches += 1
        self.records += sum(len(r) for r in results)
        for item, seqs in zip(batch, results, strict=True):
            if not item.future.done():  # a caller that gave up (cancelled) is not told
                item.future.set_result(seqs)


def _detail(exc: BaseException) -> str:
    if isinstance(exc, WriteGateBusy):
        return "the database stayed locked by another writer"
    return exc.message if isinstance(exc, GpaisecError) else type(exc).__name__


def _log_failure(batch: list[_Item], exc: BaseException) -> None:
    _log.error("audit batch of %d events not committed: %s", sum(len(i.events) for i in batch), _detail(exc))


async def _wait(future: asyncio.Future[range], timeout: float) -> range:
    """The future's result, waiting at most ``timeout`` without cancelling it (the writer resolves
    every future it took, and the event may still be committed)."""
    try:
        done, _ = await asyncio.wait({future}, timeout=timeout)
    except asyncio.CancelledError:
        future.add_done_callback(_consume)
        raise
    if not done:
        future.add_done_callback(_consume)
        raise _timed_out(timeout)
    return future.result()


class _OnDemandThread:
    """A queue and the thread that serves it, started on the first :meth:`put`; the thread (running
    ``target``, which takes items with :meth:`next_item`) ends after IDLE_EXIT idle seconds and the
    next put starts another, so an idle process keeps no thread of ours. A forked child starts its
    own (the parent's thread does not exist there)."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self._name = name
        self._target = target
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def put(self, item: object) -> None:
        # Under the lock, so that an idle thread cannot decide to stop between the check and the put.
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self.queue, self._thread = os.getpid(), queue.SimpleQueue(), None
            if self._thread is None or not self._thread.is_alive():
                # Started before the item is queued: a thread that cannot start leaves nothing behind.
                thread = threading.Thread(target=self._target, name=self._name, daemon=True)
                thread.start()
                self._thread = thread
            self.queue.put(item)

    def next_item(self) -> object | None:
        """On the thread: the next item, or None once it has been idle IDLE_EXIT seconds (it must end)."""
        me = threading.current_thread()
        while True:
            try:
                return self.queue.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if self.queue.empty() and self._thread is me:
                        self._thread = None
                        return None

    def stop(self, timeout: float) -> None:
        """Let the thread finish what is queued, then end it (``target`` ends on :data:`_STOP`)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None or not thread.is_alive():
                return
            self.queue.put(_STOP)
        thread.join(timeout)
