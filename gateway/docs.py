"""Step 1: the OpenAPI document, derived from the route table, and Swagger UI served from the
swagger-ui-bundle package (no CDN; works offline).

Swagger UI 4.15 renders OpenAPI 3.0, not 3.1, hence `openapi: 3.0.3`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import MISSING, BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from swagger_ui_bundle import swagger_ui_path

from contracts.operations import Redirect
from contracts.routes import Access, Route
from contracts.schemas.common import Answer
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


class ErrorDetail(Answer):
    field: str
    location: str
    message: str
    code: str


class ErrorEnvelope(Answer):
    error: str
    message: str
    status_code: int
    timestamp: str
    request_id: str
    details: list[ErrorDetail] | MISSING = MISSING
    retry_after: int | MISSING = MISSING


REF = "#/components/schemas/{model}"


class _Components:
    """The document's shared schemas: every model a route names, once, by its class name."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def schema_of(self, declared: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        """An OpenAPI 3.0 schema of a model (or e.g. `list[Model]`), as a reference when it is
        a model; the models it uses join the components."""
        schema = TypeAdapter(declared).json_schema(mode=mode, ref_template=REF)
        for name, definition in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, openapi_3_0(definition))
        if isinstance(declared, type) and issubclass(declared, BaseModel):
            self.schemas.setdefault(declared.__name__, openapi_3_0(schema))
            return {"$ref": REF.format(model=declared.__name__)}
        converted: dict[str, Any] = openapi_3_0(schema)  # an object in, an object out
        return converted

    def parameters(self, model: type[BaseModel], where: str) -> list[dict[str, Any]]:
        """A query or path model as OpenAPI parameters, one per field (wire names)."""
        schema = model.model_json_schema(mode="validation", ref_template=REF)
        required = set(schema.get("required", ()))
        return [{"in": where, "name": name, "required": where == "path" or name in required,
                 "schema": openapi_3_0(field)}
                for name, field in schema["properties"].items()]


def openapi_3_0(schema: Any) -> Any:
    """JSON Schema as pydantic writes it (2020-12) in the dialect of OpenAPI 3.0, which Swagger
    UI 4 renders: `anyOf [X, null]` is X with `nullable`, `const` an enum of one, no titles."""
    if isinstance(schema, list):
        return [openapi_3_0(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: openapi_3_0(value) for key, value in schema.items()
                 if key not in ("title", "$schema")}
    if "properties" in schema:  # property names are data, not keywords: keep them all
        converted["properties"] = {name: openapi_3_0(value)
                                   for name, value in schema["properties"].items()}
    if "const" in converted:
        converted["enum"] = [converted.pop("const")]
    options = converted.get("anyOf")
    if options is not None and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del converted["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            converted = {**rest[0], **converted}
        elif len(rest) == 1:
            converted["allOf"] = rest
        else:
            converted["anyOf"] = rest
        converted["nullable"] = True
    return converted


def build_openapi(routes: tuple[Route, ...]) -> dict[str, Any]:
    components = _Components()
    error = components.schema_of(ErrorEnvelope, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = _operation(
            route, components, error)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Gateway platform API", "version": "1.0.0",
                 "description": "Every public route of the gateway, generated from the route "
                                "table in contracts/routes.py."},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "alertSecret": {"type": "apiKey", "in": "header", "name": "X-Alert-Secret"},
            },
        },
    }


def _operation(route: Route, components: _Components, error: dict[str, Any]
               ) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary, "operationId": f"{route.operation.name}.{route.method.lower()}",
        "tags": list(route.tags),
    }
    parameters: list[dict[str, Any]] = []
    if route.params is not None:
        parameters += components.parameters(route.params, "path")
    else:
        parameters += [{"in": "path", "name": name, "required": True,
                        "schema": {"type": "string"}} for name in route.path_params]
    if route.query is not None:
        parameters += components.parameters(route.query, "query")
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = components.schema_of(route.body, "validation")
        if route.body_max_items is not None:
            schema = {"type": "array", "items": schema, "maxItems": route.body_max_items}
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": schema}}}
    success: dict[str, Any] = {"description": "Success"}
    if route.response is not None:
        success["content"] = {"application/json": {
            "schema": components.schema_of(route.response, "serialization")}}
    responses: dict[str, Any] = {str(route.success_status): success}
    if route.operation.redirects:
        responses[str(Redirect.STATUS)] = {
            "description": "Redirect to the `Location` header's URL",
            "headers": {"Location": {"schema": {"type": "string"}, "required": True}}}
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
            "application/json": {"schema": error}}}
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
