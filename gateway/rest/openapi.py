"""The OpenAPI 3.1 description of the bridge, served at ``GET /v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from gateway import __version__


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(max_payload_bytes: int, max_user_properties: int) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mqttgate REST publish bridge",
            "version": __version__,
            "description": (
                "Publish to MQTT over HTTPS under the same topic policy as an MQTT client. "
                "See docs/rest.md."
            ),
        },
        "paths": {
            "/v1/publish": {
                "post": {
                    "operationId": "publish",
                    "summary": "Publish one message upstream",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PublishRequest"}
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted: QoS 0 written, QoS 1/2 acknowledged",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Accepted"}
                                }
                            },
                        },
                        "400": _error("The body is not a valid publish request"),
                        "401": _error("No token, or a token that does not verify"),
                        "403": _error("The policy refuses the publish"),
                        "413": _error("The payload or body is over the limit"),
                        "415": _error("The body is not application/json"),
                        "502": _error("The broker refused the publish"),
                        "503": _error("The broker is unreachable or did not acknowledge"),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {
                "PublishRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["topic"],
                    "properties": {
                        "topic": {
                            "type": "string",
                            "minLength": 1,
                            "description": "A topic name (no wildcards), as a client names it",
                        },
                        "payload": {"type": "string", "description": "UTF-8 text payload"},
                        "payload_base64": {
                            "type": "string",
                            "contentEncoding": "base64",
                            "description": f"Binary payload, at most {max_payload_bytes} bytes",
                        },
                        "qos": {"type": "integer", "enum": [0, 1, 2], "default": 0},
                        "retain": {"type": "boolean", "default": False},
                        "user_properties": {
                            "type": "object",
                            "maxProperties": max_user_properties,
                            "additionalProperties": {"type": "string"},
                            "description": "MQTT v5 user properties; mqttgate-* is reserved",
                        },
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["message_id", "topic", "qos", "retain", "policy_version"],
                    "properties": {
                        "message_id": {"type": "string"},
                        "topic": {"type": "string"},
                        "qos": {"type": "integer"},
                        "retain": {"type": "boolean"},
                        "policy_version": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "reason"],
                    "properties": {
                        "error": {"type": "string"},
                        "reason": {"type": "string"},
                        "detail": {"type": "string"},
                        "rule_id": {"type": ["string", "null"]},
                    },
                },
            },
        },
    }
