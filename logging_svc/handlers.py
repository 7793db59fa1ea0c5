"""The logging service's RPC operations (docs/api.md section 7.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import operations as op
from contracts.broker import RpcCaller
from contracts.errors import Conflict, NotFound, ValidationError
from contracts.logging import get_logger
from contracts.operations import Call
from contracts.rpc import handles
from contracts.schemas.common import Message
from contracts.schemas.logs import LogEntry, LogIngest, LogListQuery, LogPage, RequestIdParams
from contracts.tenancy import ensure_project_visible
from contracts.validation import or_none
from logging_svc.consumer import LOG_ENTRIES_STORED
from logging_svc.entries import DuplicateRequestId, LogFilter, LogRecord, LogStore
from logging_svc.paging import Cursors, page_of

log = get_logger(__name__)

NOT_FOUND = "Log entry not found"
# how far ahead of the service's clock an external entry may be stamped
FUTURE_LEEWAY = timedelta(days=1)


class LogHandlers:
    def __init__(self, store: LogStore, rpc: RpcCaller, cursors: Cursors, *,
                 retention_days: int) -> None:
        self._store = store
        self._rpc = rpc
        self._cursors = cursors
        self._retention = timedelta(days=retention_days)

    # --- operations ----------------------------------------------------------------------------

    @handles(op.LOG_INGEST)
    async def ingest(self, call: Call[LogIngest, None, None]) -> Message:
        await self._store_external([call.body])
        LOG_ENTRIES_STORED.labels("external", "new").inc()
        return Message(message="Log ingested")

    @handles(op.LOG_INGEST_BATCH)
    async def ingest_batch(self, call: Call[list[LogIngest], None, None]) -> Message:
        entries = call.body
        if entries:
            await self._store_external(entries)
        LOG_ENTRIES_STORED.labels("external", "new").inc(len(entries))
        return Message(message=f"{len(entries)} logs ingested")

    @handles(op.LOG_LIST)
    async def list_entries(self, call: Call[None, LogListQuery, None]) -> LogPage:
        return await self._page(call, errors_only=False)

    @handles(op.LOG_ERRORS)
    async def list_errors(self, call: Call[None, LogListQuery, None]) -> LogPage:
        return await self._page(call, errors_only=True)

    @handles(op.LOG_GET)
    async def get_entry(self, call: Call[None, None, RequestIdParams]) -> LogEntry:
        entry = await self._store.by_request_id(call.authenticated,
                                                str(call.params.request_id))
        if entry is None:
            raise NotFound(NOT_FOUND)
        return LogEntry.model_validate(entry)

    # --- helpers -------------------------------------------------------------------------------

    async def _store_external(self, entries: list[LogIngest]) -> None:
        now = datetime.now(UTC)
        records = [LogRecord.of_ingest(entry, now) for entry in entries]
        self._check_timestamps(records, now, batch=len(entries) > 1)
        try:
            await self._store.store_external(records)
        except DuplicateRequestId as exc:
            raise Conflict(f"A log entry with requestId {exc.request_id} already exists "
                           "(nothing of this request was stored)") from None

    def _check_timestamps(self, records: list[LogRecord], now: datetime, *,
                          batch: bool) -> None:
        """An entry stamped before the retention or more than a day ahead would escape it
        (stored where nothing ever expires it, or expired at once): refused."""
        oldest, newest = now - self._retention, now + FUTURE_LEEWAY
        details = [{"field": f"{index}.timestamp" if batch else "timestamp",
                    "location": "body", "code": "custom",
                    "message": f"timestamp must be within the last {self._retention.days} "
                               "days (the retention) and at most one day ahead"}
                   for index, record in enumerate(records)
                   if not oldest <= record.timestamp <= newest]
        if details:
            raise ValidationError(details=details[:20])

    async def _page(self, call: Call[None, LogListQuery, None], *, errors_only: bool
                    ) -> LogPage:
        caller, query = call.authenticated, call.query
        project_id = or_none(query.project_id)
        if project_id is not None:
            # 404 "Project not found" when the caller cannot see it (docs/api.md section 7.2)
            await ensure_project_visible(self._rpc, caller, str(project_id), call.request_id)
        where = LogFilter(
            user_id=or_none(query.user_id), status_code=or_none(query.status_code),
            method=or_none(query.method), since=or_none(query.since), until=or_none(query.to),
            source=or_none(query.source),
            project_id=str(project_id) if project_id is not None else None,
            errors_only=errors_only)
        return LogPage.model_validate(await page_of(
            self._store, self._cursors, caller, where, page=or_none(query.page),
            limit=query.limit, cursor=or_none(query.cursor)))
