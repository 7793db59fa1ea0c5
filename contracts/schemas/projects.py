"""Projects, API keys and route configs: requests and answers (docs/api.md sections 4, 5, 6)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import MISSING, Field

from contracts.messages import RouteConfigData
from contracts.names import SERVICES
from contracts.schemas.common import Answer, Id, Limit, Moment, Page
from contracts.validation import (
    RequestModel,
    StrictBoolean,
    Trimmed,
    WholeNumber,
    between,
    checks,
    failure,
    length,
    one_of,
    pattern,
)

SERVICE_NAMES = tuple(info.public_name for info in SERVICES.values())
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

ProjectName = Annotated[str, Trimmed, checks(length("Name", min=2, max=100))]
Description = Annotated[str, Trimmed, checks(length("Description", max=500))]


class ProjectBody(RequestModel):
    name: ProjectName
    description: Description | MISSING | None = MISSING


class ProjectPatch(RequestModel):
    name: ProjectName | MISSING = MISSING
    description: Description | MISSING | None = MISSING


class ProjectListQuery(RequestModel):
    page: Page = 1
    limit: Limit = 20
    sort: Annotated[str, checks(one_of(
        "sort", ("name", "createdAt", "updatedAt"),
        "sort must be one of name, createdAt, updatedAt"))] = "createdAt"
    order: Annotated[str, checks(one_of(
        "order", ("asc", "desc"), "order must be asc or desc"))] = "desc"


class KeyBody(RequestModel):
    name: Annotated[str, Trimmed, checks(length("Name", min=1, max=100))]
    expires_in_days: Annotated[WholeNumber, checks(
        between("expiresInDays", 1, 365))] | MISSING | None = MISSING


class KeyVerifyQuery(RequestModel):
    hash: Annotated[str, checks(pattern(
        r"^[0-9a-f]{64}$", "hash must be 64 lowercase hex characters"))]


Method = Annotated[str, checks(one_of(
    "method", METHODS, "method must be one of GET, POST, PUT, PATCH, DELETE"))]
Path = Annotated[str, Trimmed, checks(
    length("Path", min=1, max=200),
    pattern(r"^/", "Path must start with /"),
    pattern(r"^[^?#*\s]*$", "Path must not contain ?, #, * or whitespace"),
    pattern(r"^(?!.*//)", "Path must not contain empty segments (//)"),
    pattern(r"^(/(:[A-Za-z_][A-Za-z0-9_]*|[^/:]*))*$",
            "A path parameter is :name (a letter or _ then letters, digits or _)"),
)]
ServiceName = Annotated[str, checks(one_of(
    "service", SERVICE_NAMES, "service must be one of " + ", ".join(SERVICE_NAMES)))]
UpstreamUrl = Annotated[str, checks(
    length("upstreamUrl", min=1, max=2048),
    pattern(r"^\S+$", "upstreamUrl must not contain whitespace"))]
RateLimit = Annotated[WholeNumber, checks(between("rateLimit", 1, 10000))]
CacheTtl = Annotated[WholeNumber, checks(between("cacheTTL", 0, 86400))]
ONE_TARGET = "Exactly one of service and upstreamUrl is required"


class RouteBody(RequestModel):
    path: Path
    method: Method
    service: ServiceName | MISSING | None = MISSING
    upstream_url: UpstreamUrl | MISSING | None = MISSING
    rate_limit: RateLimit | MISSING | None = MISSING
    cache_ttl: CacheTtl | MISSING | None = Field(MISSING, alias="cacheTTL")
    auth_required: StrictBoolean | MISSING = MISSING

    def model_post_init(self, _context: object) -> None:
        if self.given(self.service) == self.given(self.upstream_url):
            raise failure("custom", ONE_TARGET, "service")


class RoutePatch(RequestModel):
    """Every field optional; `null` clears rateLimit and cacheTTL; `active` only here."""

    path: Path | MISSING = MISSING
    method: Method | MISSING = MISSING
    service: ServiceName | MISSING | None = MISSING
    upstream_url: UpstreamUrl | MISSING | None = MISSING
    rate_limit: RateLimit | MISSING | None = MISSING
    cache_ttl: CacheTtl | MISSING | None = Field(MISSING, alias="cacheTTL")
    auth_required: StrictBoolean | MISSING = MISSING
    active: StrictBoolean | MISSING = MISSING

    def model_post_init(self, _context: object) -> None:
        if self.given(self.service) and self.given(self.upstream_url):
            raise failure("custom", ONE_TARGET, "service")


# --- answers ---------------------------------------------------------------------------------


class Project(Answer):
    id: Id
    name: str
    description: str | None
    user_id: str
    active: bool
    created_at: Moment
    updated_at: Moment


class ProjectPage(Answer):
    projects: list[Project]
    total: int
    page: int
    limit: int
    total_pages: int


class ApiKey(Answer):
    """A key as listed: never the key itself nor its hash, only the prefix that names it."""

    id: Id
    prefix: str
    name: str
    active: bool
    last_used_at: Moment | None
    expires_at: Moment | None
    created_at: Moment
    revoked_at: Moment | None


class IssuedKey(Answer):
    """The answer that shows a raw key, once (`key` and `rawKey` are the same value)."""

    id: Id
    key: str
    raw_key: str
    prefix: str
    name: str
    project_id: Id
    expires_at: Moment | None
    created_at: Moment


class VerifiedKey(Answer):
    """What a gateway caches of a valid key: whose it is and until when."""

    id: Id
    project_id: Id
    user_id: str
    owner_id: str | None
    expires_at: Moment | None


class KeyVerdict(Answer):
    valid: bool
    reason: str | MISSING = MISSING
    key: VerifiedKey | MISSING = MISSING


class RouteConfig(Answer):
    """A route config as its project's members see it; `RouteConfigData` (contracts.messages)
    is the same config with its project's owner, as gateways receive it."""

    id: Id
    path: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    service: str | None
    upstream_url: str | None
    project_id: Id
    rate_limit: int | None
    cache_ttl: int | None = Field(alias="cacheTTL")
    auth_required: bool
    active: bool
    created_at: Moment
    updated_at: Moment


class ActiveRouteConfig(Answer):
    """A route config in the admins' list of every active one."""

    id: Id
    project_id: Id
    path: str
    method: str
    service: str | None
    upstream_url: str | None
    rate_limit: int | None
    cache_ttl: int | None = Field(alias="cacheTTL")
    auth_required: bool


class ActiveRouteSet(Answer):
    """Every active route config with its owner, at a moment: a gateway's snapshot."""

    routes: list[RouteConfigData]
    at: str
