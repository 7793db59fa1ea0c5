"""The gateway's in-memory snapshot of every active route config, and matching against it.

The snapshot is loaded over RPC at start, then kept current from `config.route.changed`
events, with a periodic full resync as a safety net: never a remote call per request.
Overlapping templates: the most specific wins, comparing segments left to right with literals
before parameters (docs/api.md section 6.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.messages import RouteChanged, RouteConfigData


@dataclass(frozen=True)
class RouteConfig:
    id: str
    project_id: str
    method: str
    path: str
    segments: tuple[str | None, ...]  # None for a :param segment
    service: str | None
    upstream_url: str | None
    rate_limit: int | None
    cache_ttl: int | None
    auth_required: bool
    owner_id: str | None
    updated_at: str | None

    @classmethod
    def of(cls, data: RouteConfigData) -> RouteConfig:
        return cls(
            id=data.id, project_id=data.project_id, method=data.method, path=data.path,
            segments=_segments(data.path), service=data.service,
            upstream_url=data.upstream_url, rate_limit=data.rate_limit,
            cache_ttl=data.cache_ttl, auth_required=data.auth_required,
            owner_id=data.owner_id, updated_at=data.updated_at,
        )

    @property
    def specificity(self) -> tuple[int, ...]:
        return tuple(1 if segment is None else 0 for segment in self.segments)

    def matches(self, parts: list[str]) -> bool:
        return len(parts) == len(self.segments) and all(
            segment is None or segment == part for segment, part in zip(
                self.segments, parts, strict=True))


def _segments(path: str) -> tuple[str | None, ...]:
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []
    return tuple(None if p.startswith(":") else p for p in parts)


def _split(path: str) -> list[str]:
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


class RouteConfigTable:
    """Configs indexed by (method, segment count); replaced or patched from events."""

    def __init__(self) -> None:
        self._by_id: dict[str, RouteConfig] = {}
        self._index: dict[tuple[str, int], list[RouteConfig]] = {}
        # bumped on every change: what was derived from the old snapshot (the pipeline's
        # plans) is derived again
        self.version = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def replace_all(self, configs: list[RouteConfigData]) -> None:
        self._by_id = {c.id: RouteConfig.of(c) for c in configs if c.active}
        self._reindex()

    def apply(self, event: RouteChanged) -> None:
        if event.action == "deleted" or not event.route.active:
            self._by_id.pop(event.route.id, None)
        else:
            self._by_id[event.route.id] = RouteConfig.of(event.route)
        self._reindex()

    def remove(self, config_ids: list[str]) -> None:
        for config_id in config_ids:
            self._by_id.pop(config_id, None)
        self._reindex()

    def match(self, method: str, path: str) -> RouteConfig | None:
        parts = _split(path)
        candidates = self._index.get((method, len(parts)))
        if not candidates:
            return None
        for config in candidates:  # sorted most specific first
            if config.matches(parts):
                return config
        return None

    def _reindex(self) -> None:
        index: dict[tuple[str, int], list[RouteConfig]] = {}
        for config in self._by_id.values():
            index.setdefault((config.method, len(config.segments)), []).append(config)
        for configs in index.values():
            configs.sort(key=lambda c: c.specificity)
        self._index = index
        self.version += 1
