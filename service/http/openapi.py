"""The OpenAPI 3.1 document of every endpoint and error, built once at import."""

from __future__ import annotations

from typing import Any

from service.base.errors import error_codes
from service.callers.attestation import HEADER as APP_CHECK_HEADER
from service.tokens.format import MAX_ROOM_LENGTH, MIN_TTL, TWILIO_MAX_TTL
from service.tokens.request import GRANT_NAMES, MAX_BODY_BYTES

ERROR_CODES = error_codes()

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_STRICT_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": False}
_PUSH = {"type": "string", "description": "Name of a configured push credential, e.g. apns."}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before asking again (RFC 9110): until the budget has "
        "room (429); 60 while issuance is paused, 5 while a dependency is down (503).",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _problem_response(status: int) -> dict[str, Any]:
    codes = ", ".join(f"`{code}`" for code in ERROR_CODES[status])
    response: dict[str, Any] = {
        "description": f"Problem details; code is one of {codes}.",
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def _call_webhook(operation_id: str, summary: str, description: str) -> dict[str, Any]:
    """A Twilio Voice webhook: a signed form in, TwiML out."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "description": description,
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {"From": {"type": "string"}, "To": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "TwiML.",
                    "content": {"application/xml": {"schema": {"type": "string"}}},
                },
                **{str(status): _problem_response(status) for status in (403, 408, 413, 500, 503)},
            },
        }
    }


def _ops_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


OPENAPI_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Token Broker",
        "version": "1",
        "description": "Short-lived, narrowly scoped Twilio Access Tokens for authenticated "
        "callers. Every refusal is RFC 9457 problem details with a stable code.",
    },
    "paths": {
        "/v1/tokens": {
            "options": {
                "operationId": "tokensPreflight",
                "summary": "CORS preflight: allowed only for BROKER_CORS_ORIGINS, POST, and the "
                "Authorization and Content-Type headers; otherwise no CORS header.",
                "responses": {"204": {"description": "Preflight answer."}},
            },
            "post": {
                "operationId": "createToken",
                "summary": "Issue a Twilio Access Token for the authenticated caller.",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": APP_CHECK_HEADER,
                        "in": "header",
                        "required": False,
                        "description": "A Firebase App Check token: needed for grants whose "
                        "policy rule requires attestation (else 403 `attestation_required`; a "
                        "limited-use one presented again: 403 `attestation_replayed`).",
                        "schema": {"type": "string", "maxLength": 8192},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "description": f"At most {MAX_BODY_BYTES} bytes of strict JSON.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/TokenRequest"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The token; never cached.",
                        "headers": {
                            "Cache-Control": {"schema": {"type": "string", "const": "no-store"}}
                        },
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/TokenResponse"}
                            }
                        },
                    },
                    **{
                        str(status): _problem_response(status)
                        for status in (400, 401, 403, 405, 408, 409, 413, 415, 429, 500, 503)
                    },
                },
            },
        },
        "/v1/twilio/voice": _call_webhook(
            "voiceWebhook",
            "The TwiML app's Voice URL: Twilio asks where a client's call may go.",
            "Signed by Twilio (X-Twilio-Signature over BROKER_PUBLIC_URL and the form). From "
            "must be client:IDENTITY; To a number or client:IDENTITY. Answers TwiML: <Dial> "
            "when the dial policy allows, else a short refusal.",
        ),
        "/v1/twilio/voice/incoming": _call_webhook(
            "voiceIncomingWebhook",
            "An inbound call on one of our numbers: rings the identities the policy's "
            "[incoming] table names for it (never whoever fetched a token last).",
            "Signed by Twilio like every webhook. Answers TwiML: <Dial> of those clients, or "
            "a short refusal.",
        ),
        "/v1/twilio/usage-alert": {
            "post": {
                "operationId": "usageAlertWebhook",
                "summary": "A Twilio Usage Trigger's callback: pauses issuance until resumed.",
                "description": "Signed by Twilio like every webhook. Pauses all issuance, or "
                "only Voice tokens that can place calls, as the policy's [usage_alert] says.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": {"type": "object"}}
                    },
                },
                "responses": {
                    "204": {"description": "Paused."},
                    **{
                        str(status): _problem_response(status)
                        for status in (403, 408, 413, 500, 503)
                    },
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: always cheap.",
                "responses": {"200": _ops_response("Alive.")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: settings valid, signing key loaded, state store answers; "
                "also shows an operator pause.",
                "responses": {
                    "200": _ops_response("Ready; every check is ok."),
                    "503": _ops_response("Not ready; the failed check is named."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of all workers; bearer BROKER_METRICS_TOKEN if set.",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _problem_response(401),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": _ops_response("The OpenAPI document.")},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An access token from the app's identity provider, or a "
                "client key (tbk_...) for a server-to-server caller.",
            }
        },
        "schemas": {
            "TokenRequest": {
                **_STRICT_OBJECT,
                "required": ["grants"],
                "properties": {
                    "grants": {
                        **_STRICT_OBJECT,
                        "minProperties": 1,
                        "properties": {
                            "video": {
                                **_STRICT_OBJECT,
                                "description": "A room the policy allows. A rule with "
                                "provision makes sure the room is in progress with its limits "
                                "before the token (409 room_conflict: it is in progress with "
                                "other settings; 503 unavailable: Twilio cannot say).",
                                "required": ["room"],
                                "properties": {
                                    "room": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": MAX_ROOM_LENGTH,
                                    }
                                },
                            },
                            "voice": {
                                **_STRICT_OBJECT,
                                "properties": {
                                    "incoming": {"type": "boolean"},
                                    "outgoing": {"type": "boolean"},
                                    "push": _PUSH,
                                },
                            },
                            "chat": {**_STRICT_OBJECT, "properties": {"push": _PUSH}},
                            "sync": {**_STRICT_OBJECT, "properties": {}},
                            "task_router": {
                                **_STRICT_OBJECT,
                                "properties": {},
                                "description": "A TaskRouter Worker token: the policy's "
                                "workspace and the caller's own Worker (from a claim, or the "
                                "Worker named as the caller's identity), role worker. Nothing "
                                "here names a Worker: 403 worker_not_found when the caller "
                                "has none.",
                            },
                        },
                    },
                    "ttl": {"type": "integer", "minimum": MIN_TTL, "maximum": TWILIO_MAX_TTL},
                    "identity": {
                        "type": "string",
                        "description": "Only from a server-to-server caller (a client key): "
                        "the identity it acts for, within its policy rule's patterns. An app "
                        "user's identity is always its verified claim; naming one is refused.",
                    },
                },
            },
            "TokenResponse": {
                **_STRICT_OBJECT,
                "required": ["token", "identity", "expires_at", "ttl", "grants"],
                "properties": {
                    "token": {"type": "string", "description": "The Twilio Access Token (JWT)."},
                    "identity": {"type": "string"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "ttl": {"type": "integer"},
                    "grants": {
                        "type": "array",
                        "items": {"enum": list(GRANT_NAMES)},
                    },
                },
            },
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "code", "request_id"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "code": {"enum": sorted({c for codes in ERROR_CODES.values() for c in codes})},
                    "detail": {"type": "string"},
                    "request_id": {"type": "string"},
                },
            },
        },
    },
}
