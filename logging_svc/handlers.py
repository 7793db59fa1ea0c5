"""The logging service's RPC operations (docs/api.md section 7.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.errors import Conflict, NotFound, ValidationError
from contracts.logging import get_logger
from contracts.messages import RpcRequest
from contracts.rpc import Reply, RpcClient, operation
from contracts.tenancy import ensure_project_visible
from contracts.timeutil import parse_iso
from logging_svc.consumer import LOG_ENTRIES_STORED
from logging_svc.entries import DuplicateRequestId, LogFilter, LogRecord, LogStore
from logging_svc.paging import Cursors, page_of

log = get_logger(__name__)

NOT_FOUND = "Log entry not found"
# how far ahead of the service's clock an external entry may be stamped
FUTURE_LEEWAY = timedelta(days=1)


class LogHandlers:
    def __init__(self, store: LogStore, rpc: RpcClient, cursors: Cursors, *,
                 retention_days: int) -> None:
        self._store = store
        self._rpc = rpc
        self._cursors = cursors
        self._retention = timedelta(days=retention_days)

    # --- operations ----------------------------------------------------------------------------

    @operation("log.ingest")
    async def ingest(self, request: RpcRequest) -> Reply:
        await self._store_external([request.body])
        LOG_ENTRIES_STORED.labels("external", "new").inc()
        return Reply({"message": "Log ingested"}, status=201)

    @operation("log.ingest_batch")
    async def ingest_batch(self, request: RpcRequest) -> Reply:
        entries = list(request.body or [])
        if entries:
            await self._store_external(entries)
        LOG_ENTRIES_STORED.labels("external", "new").inc(len(entries))
        return Reply({"message": f"{len(entries)} logs ingested"}, status=201)

    @operation("log.list")
    async def list_entries(self, request: RpcRequest) -> dict:
        return await self._page(request, errors_only=False)

    @operation("log.errors")
    async def list_errors(self, request: RpcRequest) -> dict:
        return await self._page(request, errors_only=True)

    @operation("log.get")
    async def get_entry(self, request: RpcRequest) -> dict:
        entry = await self._store.by_request_id(request.authenticated,
                                                str(request.params["requestId"]))
        if entry is None:
            raise NotFound(NOT_FOUND)
        return entry

    # --- helpers -------------------------------------------------------------------------------

    async def _store_external(self, entries: list[dict]) -> None:
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

    async def _page(self, request: RpcRequest, *, errors_only: bool) -> dict:
        caller = request.authenticated
        query = request.query
        project_id = query.get("projectId")
        if project_id is not None:
            # 404 "Project not found" when the caller cannot see it (docs/api.md section 7.2)
            await ensure_project_visible(self._rpc, caller, str(project_id), request.request_id)
        where = LogFilter(
            user_id=query.get("userId"), status_code=query.get("statusCode"),
            method=query.get("method"), since=_moment(query.get("from")),
            until=_moment(query.get("to")),
            source=query.get("source"),
            project_id=str(project_id) if project_id is not None else None,
            errors_only=errors_only)
        return await page_of(self._store, self._cursors, caller, where,
                             page=query.get("page"), limit=query["limit"],
                             cursor=query.get("cursor"))


def _moment(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None
