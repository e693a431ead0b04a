"""The OpenAPI 3 document of `serve`'s HTTP API, served at `/api/v1/openapi.json`.

Hand-written paths, with request schemas generated from the pydantic models that
validate them, so the document and the validation cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from orchestrator import __version__
from orchestrator.central.curtailment import CurtailmentRequest
from orchestrator.central.overrides import OverrideRequest

_JSON = "application/json"


def _response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": {"type": "object"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "invalid request",
        401: "missing or invalid token",
        403: "needs the operator role, or no operator token is configured",
        404: "not found",
        409: "refused: it would break an SLA (send force=true)",
        503: "not ready or no plan yet",
    }
    return {str(code): _response(words[code]) for code in codes}


def openapi_document() -> dict[str, Any]:
    override_schema = OverrideRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = override_schema.pop("$defs", {})
    curtailment_schema = CurtailmentRequest.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    defs.update(curtailment_schema.pop("$defs", {}))
    gpu = {"name": "gpu", "in": "path", "required": True, "schema": {"type": "string"}}
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        # 3.1: its schemas are JSON Schema 2020-12, the dialect pydantic generates (numeric
        # exclusiveMinimum, anyOf with null); under 3.0 they were invalid (schemathesis)
        "openapi": "3.1.0",
        "info": {"title": "GPU fleet orchestrator", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "OverrideRequest": override_schema,
                "CurtailmentRequest": curtailment_schema,
                **defs,
            },
        },
        "paths": {
            "/healthz": {"get": {"responses": {"200": _response("alive")}}},
            "/readyz": {
                "get": {"responses": {"200": _response("ready"), **_errors(503)}},
            },
            "/metrics": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    }
                }
            },
            "/api/v1/state": {
                "get": {
                    "security": secured,
                    "responses": {"200": _response("the fleet"), **_errors(401)},
                }
            },
            "/api/v1/plan": {
                "get": {
                    "security": secured,
                    "responses": {"200": _response("the newest plan"), **_errors(401, 503)},
                }
            },
            "/api/v1/sla": {
                "get": {
                    "security": secured,
                    "responses": {"200": _response("the SLA ledger"), **_errors(401)},
                }
            },
            "/api/v1/gpus/{gpu}/explain": {
                "get": {
                    "security": secured,
                    "parameters": [gpu],
                    "responses": {"200": _response("why"), **_errors(401, 404, 503)},
                }
            },
            "/api/v1/overrides": {
                "get": {
                    "security": secured,
                    "responses": {"200": _response("live overrides"), **_errors(401)},
                },
                "post": {
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {"schema": {"$ref": "#/components/schemas/OverrideRequest"}}
                        },
                    },
                    "responses": {"201": _response("created"), **_errors(400, 401, 403, 409)},
                },
            },
            "/api/v1/overrides/{override_id}": {
                "delete": {
                    "security": secured,
                    "parameters": [
                        {
                            "name": "override_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": _response("deleted"), **_errors(401, 403, 404)},
                }
            },
            "/api/v1/curtailments": {
                "get": {
                    "security": secured,
                    "responses": {
                        "200": _response(
                            "every curtailment window (upcoming, in force, ended, cancelled) "
                            "with its SLA forecast, and the cap in force"
                        ),
                        **_errors(401),
                    },
                },
                "post": {
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {"schema": {"$ref": "#/components/schemas/CurtailmentRequest"}}
                        },
                    },
                    "responses": {
                        "201": _response("created, with its SLA forecast"),
                        **_errors(400, 401, 403),
                    },
                },
            },
            "/api/v1/curtailments/{window_id}": {
                "delete": {
                    "security": secured,
                    "parameters": [
                        {
                            "name": "window_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": _response("cancelled"), **_errors(401, 403, 404)},
                }
            },
            "/api/v1/decisions": {
                "get": {
                    "security": secured,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        }
                    ],
                    "responses": {
                        "200": _response("overrides and plans, newest first"),
                        **_errors(400, 401),
                    },
                }
            },
        },
    }
