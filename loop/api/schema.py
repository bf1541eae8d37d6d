"""OpenAPI additions: the API key scheme, and the one error shape documented on every operation."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

ERROR_COMPONENT = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": "The one shape of every error; `fields` names each bad field (`[i].field` in a batch).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["field", "message"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["status", "code", "message", "fields"],
            "additionalProperties": False,
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}
ERROR_DESCRIPTIONS = {
    "400": "Invalid input (body, query or URL); `error.fields` names each bad field.",
    "401": "No API key, or an invalid or revoked one.",
    "403": "The API key may not write to this model, or a session that may not do this.",
    "404": "No such object (or page cursor).",
    "413": "Body or batch too large.",
    "415": "The body is not JSON.",
    "429": "This API key sent more writes than FEEDBACKHUB_WRITE_RATE allows: try again after `Retry-After` seconds.",
    "503": "The database is unreachable: nothing was written; try again after `Retry-After` seconds.",
}
RETRY_AFTER_HEADER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}
}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "loop.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `python manage.py create_api_key NAME`.",
        }


# Every write of an API key counts towards its FEEDBACKHUB_WRITE_RATE (loop/api/throttling.py).
_WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})


def _error_statuses(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    """The error statuses an operation can answer, besides those its view declares itself."""
    statuses = ["400", "401", "403", "503"]
    parameters = {parameter["name"] for parameter in operation.get("parameters", [])}
    if "{" in path or "cursor" in parameters:
        statuses.append("404")
    if method == "post":
        statuses += ["413", "415"]
    if method in _WRITE_METHODS:
        statuses.append("429")
    return statuses


def document_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: every error response of every operation carries the one error shape, and every
    operation lists the errors any request can meet (bad input, keys, the write rate, an unreachable database)."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(method, path, operation):
                responses.setdefault(status, {"description": ERROR_DESCRIPTIONS[status]})
            for status, response in responses.items():
                if status >= "400":
                    response["content"] = body
            for status in ("429", "503"):
                if status in responses:
                    responses[status]["headers"] = RETRY_AFTER_HEADER
    return result
