"""Step 1: the OpenAPI document, derived from the route table, and Swagger UI served from the
swagger-ui-bundle package (no CDN; works offline).

Swagger UI 4.15 renders OpenAPI 3.0, not 3.1, hence `openapi: 3.0.3`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields
from swagger_ui_bundle import swagger_ui_path

from contracts.routes import Access, Route
from gateway.responses import json_response

STATUS_TEXT = {
    400: "Bad request or validation error", 401: "Missing, invalid or expired token",
    403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Body too large",
    429: "Rate limit exceeded", 500: "Unexpected error", 502: "Upstream failed",
    503: "Service unavailable", 504: "Upstream timed out",
    508: "Request loop: its Via names this gateway",
}

INDEX_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Gateway platform API</title>
<link rel="stylesheet" href="swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="swagger-ui-bundle.js"></script>
<script src="swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "BaseLayout"});
</script></body></html>
"""


class ErrorDetail(Schema):
    field = fields.String()
    location = fields.String()
    message = fields.String()
    code = fields.String()


class ErrorEnvelope(Schema):
    error = fields.String(required=True)
    message = fields.String(required=True)
    statusCode = fields.Integer(required=True)
    timestamp = fields.String(required=True)
    requestId = fields.String(required=True)
    details = fields.List(fields.Nested(ErrorDetail))
    retryAfter = fields.Integer()


def build_openapi(routes: tuple[Route, ...]) -> dict[str, Any]:
    spec = APISpec(
        title="Gateway platform API", version="1.0.0", openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Every public route of the gateway, generated from the route "
                             "table in contracts/routes.py."},
    )
    spec.components.schema("Error", schema=ErrorEnvelope)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"})
    spec.components.security_scheme("alertSecret", {"type": "apiKey", "in": "header",
                                                    "name": "X-Alert-Secret"})
    operations: dict[str, dict[str, Any]] = {}
    for route in routes:
        operations.setdefault(route.openapi_path, {})[route.method.lower()] = _operation(route)
    for path, ops in operations.items():
        spec.path(path=path, operations=ops)
    return spec.to_dict()


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary, "operationId": f"{route.operation}.{route.method.lower()}",
        "tags": list(route.tags),
    }
    parameters: list[dict[str, Any]] = []
    if route.params is not None:
        parameters.append({"in": "path", "schema": route.params})
    else:
        parameters += [{"in": "path", "name": name, "required": True,
                        "schema": {"type": "string"}} for name in route.path_params]
    if route.query is not None:
        parameters.append({"in": "query", "schema": route.query})
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema: Any = route.body
        if route.body_max_items is not None:
            schema = {"type": "array", "items": route.body, "maxItems": route.body_max_items}
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": schema}}}
    success: dict[str, Any] = {"description": "Success"}
    if route.response is not None:
        success["content"] = {"application/json": {"schema": route.response}}
    responses: dict[str, Any] = {str(route.success_status): success}
    errors = set(route.errors) | {429, 500, 508}  # any request may come round (loop guard)
    if route.body is not None or route.query is not None or route.params is not None:
        errors.add(400)
    if route.access is Access.ALERT_SECRET:
        errors.add(401)
        operation["security"] = [{"alertSecret": []}]
    elif route.access is not Access.PUBLIC:
        errors |= {401, 403}
        operation["security"] = [{"bearer": []}]
    if route.service is not None:
        errors |= {502, 503, 504}
    for status in sorted(errors):
        responses[str(status)] = {"description": STATUS_TEXT[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation["responses"] = responses
    return operation


def add_docs(app: web.Application, routes: tuple[Route, ...]) -> None:
    document = build_openapi(routes)

    async def openapi_json(_request: web.Request) -> web.Response:
        return json_response(document)

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=INDEX_HTML, content_type="text/html")

    async def to_index(_request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/api-docs/")

    app.router.add_get("/api-docs", to_index)
    app.router.add_get("/api-docs/", index)
    app.router.add_get("/api-docs/openapi.json", openapi_json)
    app.router.add_static("/api-docs/", Path(swagger_ui_path), show_index=False)
