"""The OpenAPI 3.1 description of ``/api/v1``, written by hand from one table of operations.

A test checks that every API route of the app is described here and every path described here
is a route, so the document cannot drift from the code unnoticed.
"""

from __future__ import annotations

from typing import Any, Final

_ERROR: Final = {"$ref": "#/components/responses/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path_id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }


_PAGING: Final = [
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
        "Most rows returned.",
    ),
    _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "Rows skipped."),
]
_MATCH_STATES: Final = ["pending", "approved", "rejected", "licensed", "all"]
_NOTICE_STATES: Final = [
    "drafted",
    "approved",
    "queued",
    "sent",
    "delivery_failed",
    "acknowledged",
    "removed",
    "still_up",
    "escalated",
    "closed",
]

PATHS: Final[dict[str, dict[str, Any]]] = {
    "/healthz": {
        "get": {
            "operationId": "health",
            "summary": "Whether this web process can reach its database (no token needed).",
            "description": "For load balancers and container health checks. The body names "
            "no host, error or version.",
            "security": [],
            "responses": {
                "200": _json(_ref("Health"), "Serving"),
                "503": _json(_ref("Health"), "The database cannot be reached"),
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "security": [],
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/api/v1/works": {
        "get": {
            "operationId": "listWorks",
            "summary": "Works of the publishers the token's user may see.",
            "parameters": [_query("publisher_id", {"type": "integer"}, "Only this publisher.")],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["works"],
                        "properties": {"works": {"type": "array", "items": _ref("Work")}},
                    }
                ),
                "400": _ERROR,
                "401": _ERROR,
            },
        },
        "post": {
            "operationId": "registerWork",
            "summary": "Register a work (or add pages to it) from uploaded images, CBZ/ZIP or PDF.",
            "description": "Every file is checked before anything is written; one bad file "
            "registers nothing. Pages already in the work are skipped and reported.",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["title", "pages"],
                            "properties": {
                                "publisher": {
                                    "type": "string",
                                    "description": "Publisher name (optional when only one).",
                                },
                                "title": {"type": "string"},
                                "kind": {
                                    "type": "string",
                                    "enum": ["volume", "chapter", "illustration", "photo", "other"],
                                },
                                "isbn": {"type": "string"},
                                "official_url": {"type": "string", "format": "uri"},
                                "identifiers": {
                                    "type": "string",
                                    "description": "JSON object of further ids.",
                                },
                                "pages": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_ref("Registration"), "Work created"),
                "200": _json(_ref("Registration"), "Pages added to an existing work"),
                "400": _ERROR,
                "401": _ERROR,
                "404": _ERROR,
                "413": _ERROR,
            },
        },
    },
    "/api/v1/works/{work_id}": {
        "get": {
            "operationId": "getWork",
            "summary": "One work with its pages.",
            "parameters": [_path_id("work_id")],
            "responses": {
                "200": _json({"type": "object", "properties": {"work": _ref("Work")}}),
                "401": _ERROR,
                "404": _ERROR,
            },
        }
    },
    "/api/v1/matches": {
        "get": {
            "operationId": "listMatches",
            "summary": "Matches of the user's works, newest first unless sorted otherwise.",
            "parameters": [
                _query(
                    "state",
                    {"type": "string", "enum": _MATCH_STATES, "default": "all"},
                    "Review state.",
                ),
                _query("site_id", {"type": "integer"}, "Only this site."),
                _query("work_id", {"type": "integer"}, "Only this work."),
                _query(
                    "decision",
                    {"type": "string", "enum": ["confident", "review"]},
                    "The matcher's decision.",
                ),
                _query(
                    "min_confidence",
                    {"type": "number", "minimum": 0, "maximum": 1},
                    "Lowest confidence.",
                ),
                _query(
                    "sort", {"type": "string", "enum": ["newest", "oldest", "confidence"]}, "Order."
                ),
                *_PAGING,
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["matches", "total"],
                        "properties": {
                            "matches": {"type": "array", "items": _ref("Match")},
                            "total": {"type": "integer"},
                        },
                    }
                ),
                "400": _ERROR,
                "401": _ERROR,
            },
        }
    },
    "/api/v1/matches/{match_id}": {
        "get": {
            "operationId": "getMatch",
            "summary": "One match, as the list shows it.",
            "parameters": [_path_id("match_id")],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["match"],
                        "properties": {"match": _ref("Match")},
                    }
                ),
                "401": _ERROR,
                "404": _ERROR,
            },
        }
    },
    "/api/v1/matches/{match_id}/decision": {
        "post": {
            "operationId": "decideMatch",
            "summary": "Review a pending match: approve, reject, or licensed (operators, admins).",
            "description": "The same decision as the review page: it applies only while the "
            "match is pending, and writes an event and an audit row. `licensed` rejects the "
            "match and allowlists its page's domain for the work. Answers the match as "
            "`GET /api/v1/matches` shows it.",
            "parameters": [_path_id("match_id")],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["decision"],
                            "properties": {
                                "decision": {
                                    "type": "string",
                                    "enum": ["approve", "reject", "licensed"],
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_ref("Match"), "Decided"),
                "400": _ERROR,
                "401": _ERROR,
                "403": _ERROR,
                "404": _ERROR,
                "409": {
                    "description": "The match is no longer pending; nothing changed.",
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
            },
        }
    },
    "/api/v1/notices": {
        "get": {
            "operationId": "listNotices",
            "summary": "Notices about the user's works, most recently changed first.",
            "parameters": [
                _query("state", {"type": "string", "enum": _NOTICE_STATES}, "Notice state."),
                _query("recipient_id", {"type": "integer"}, "Only this recipient."),
                *_PAGING,
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"notices": {"type": "array", "items": _ref("Notice")}},
                    }
                ),
                "400": _ERROR,
                "401": _ERROR,
            },
        }
    },
    "/api/v1/notices/{notice_id}": {
        "get": {
            "operationId": "getNotice",
            "summary": "One notice with its text, items and timeline.",
            "parameters": [_path_id("notice_id")],
            "responses": {
                "200": _json({"type": "object", "properties": {"notice": _ref("Notice")}}),
                "401": _ERROR,
                "404": _ERROR,
            },
        }
    },
    "/api/v1/notices/{notice_id}/actions": {
        "post": {
            "operationId": "noticeAction",
            "summary": "Release, resend, recheck, escalate or close a notice (operators, admins).",
            "description": "`release`: a drafted notice held by the flood guard is validated, "
            "approved and its send enqueued. `resend`: a notice whose delivery failed is queued "
            "and its send enqueued. `recheck`: a sent, acknowledged or still-up notice is "
            "rechecked by a worker at once, whether or not a scheduled round is due. "
            "`escalate`: a still-up or undeliverable notice goes to the next party. "
            "`close`: any notice but a closed one is closed. "
            "`GET /api/v1/notices/{notice_id}` lists the actions a notice offers now.",
            "parameters": [_path_id("notice_id")],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["action"],
                            "properties": {
                                "action": {
                                    "type": "string",
                                    "enum": ["release", "resend", "recheck", "escalate", "close"],
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["notice", "action", "message", "enqueued"],
                        "properties": {
                            "notice": _ref("Notice"),
                            "action": {"type": "string"},
                            "message": {"type": "string"},
                            "enqueued": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "Worker jobs enqueued (actor names).",
                            },
                        },
                    },
                    "Done",
                ),
                "400": _ERROR,
                "401": _ERROR,
                "403": _ERROR,
                "404": _ERROR,
                "409": {
                    "description": "Not possible in the notice's state now; nothing changed.",
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
                "422": {
                    "description": "Released, but the validator refused the notice: it stays "
                    "drafted, with the reasons.",
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
                "503": {
                    "description": "The job queue could not be reached; nothing was enqueued.",
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
            },
        }
    },
    "/api/v1/lookup": {
        "post": {
            "operationId": "lookupImage",
            "summary": "Which registered works an image copies (rights lookup).",
            "description": "Send the image as multipart field 'image', or JSON {\"url\": ...} "
            "for an http(s) image URL; private, loopback and link-local addresses are refused. "
            "Only works of publishers the user may see are returned.",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"image": {"type": "string", "format": "binary"}},
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["url"],
                            "properties": {"url": {"type": "string", "format": "uri"}},
                        }
                    },
                },
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"matches": {"type": "array", "items": _ref("LookupHit")}},
                    }
                ),
                "400": _ERROR,
                "401": _ERROR,
                "413": _ERROR,
                "422": _ERROR,
            },
        }
    },
}

_SCHEMAS: Final[dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Health": {
        "type": "object",
        "required": ["status", "database"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "database": {
                "type": "string",
                "description": "`ok`, or what failed (`unreachable`).",
            },
        },
    },
    "Work": {
        "type": "object",
        "required": ["id", "publisher_id", "publisher", "title", "kind"],
        "properties": {
            "id": {"type": "integer"},
            "publisher_id": {"type": "integer"},
            "publisher": {"type": "string"},
            "title": {"type": "string"},
            "kind": {"type": "string"},
            "isbn": {"type": ["string", "null"]},
            "official_url": {"type": ["string", "null"]},
            "identifiers": {"type": "object", "additionalProperties": {"type": "string"}},
            "pages": {"type": "integer"},
            "fingerprints": {"type": "integer"},
            "matches": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "pages_list": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Registration": {
        "type": "object",
        "required": ["work", "created", "pages_added", "pages_skipped", "fingerprints_added"],
        "properties": {
            "work": _ref("Work"),
            "created": {"type": "boolean"},
            "pages_added": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "page_number": {"type": "integer"},
                        "source_name": {"type": "string"},
                    },
                },
            },
            "pages_skipped": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"source": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
            "fingerprints_added": {"type": "integer"},
        },
    },
    "Match": {
        "type": "object",
        "required": ["id", "review_state", "decision", "confidence"],
        "properties": {
            "id": {"type": "integer"},
            "review_state": {"type": "string", "enum": _MATCH_STATES[:-1]},
            "decision": {"type": "string", "enum": ["confident", "review"]},
            "confidence": {"type": "number"},
            "scores": {"type": "object"},
            "explanation": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "reviewed_at": {"type": ["string", "null"], "format": "date-time"},
            "work": {"type": "object"},
            "publisher": {"type": "object"},
            "site": {"type": "object"},
            "page_url": {"type": "string"},
            "image_url": {"type": "string"},
        },
    },
    "Notice": {
        "type": "object",
        "required": ["id", "state", "format"],
        "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string", "enum": _NOTICE_STATES},
            "format": {"type": "string", "enum": ["dmca", "jp_provider", "eu_dsa"]},
            "subject": {"type": ["string", "null"]},
            "publisher": {"type": "object"},
            "recipient": {"type": "object"},
            "items": {"type": "integer"},
            "removed_items": {"type": "integer"},
            "held_reason": {
                "type": ["string", "null"],
                "description": "Why the notice is held (flood guard, allowlisted since drafted).",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "state_changed_at": {"type": "string", "format": "date-time"},
            "body_text": {"type": ["string", "null"]},
            "items_list": {"type": "array", "items": {"type": "object"}},
            "timeline": {"type": "array", "items": {"type": "object"}},
            "actions": {
                "type": "array",
                "description": "One notice, operators and admins only: the actions it offers "
                "now; `available` false with the `reason` when one cannot run yet.",
                "items": {
                    "type": "object",
                    "properties": {
                        "action": {"type": "string"},
                        "available": {"type": "boolean"},
                        "reason": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "LookupHit": {
        "type": "object",
        "properties": {
            "work_id": {"type": "integer"},
            "work_title": {"type": "string"},
            "publisher_id": {"type": "integer"},
            "publisher": {"type": "string"},
            "page_id": {"type": "integer"},
            "page_number": {"type": "integer"},
            "decision": {"type": "string"},
            "confidence": {"type": "number"},
            "explanation": {"type": "string"},
        },
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mamoru API",
            "version": "1",
            "description": "Register works, follow and review matches, follow and act on "
            "notices, look up who owns an image. Authenticate with `Authorization: Bearer "
            "<token>` (`mamoru users token`). Errors are JSON objects with an `error` message.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
            "responses": {"Error": _json(_ref("Error"), "Error")},
        },
    }
