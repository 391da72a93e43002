"""The OpenAPI description of MVSep's routes as this server reads them.

MVSep's routes take loose forms (multipart or urlencoded, with query parameters filling what the body lacks),
so they read them by hand (forms.py) and FastAPI cannot see their fields. This module says what each route
reads — the same names and kinds the handlers use — and merges it into FastAPI's generated document, so
`/openapi.json` is a faithful description: Swagger UI offers the real fields, and the fuzz test
(tests/test_fuzz_api.py) generates requests from it. Every error answer has MVSep's shape (responses.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

STRING: dict[str, Any] = {"type": "string"}
INTEGER_TEXT: dict[str, Any] = {"type": "string", "pattern": "^-?[0-9]{1,30}$"}  # clients send numbers as text
TOKEN: dict[str, Any] = {"type": "string", "description": "the user's api_token"}
FILE: dict[str, Any] = {"type": "string", "format": "binary"}
IDEMPOTENCY_KEY: dict[str, Any] = {
    "type": "string",
    "maxLength": 255,
    "description": "ours (docs/api-extensions.md): the same request sent again with this key, from the same "
    "account within a day, gets the first answer and creates and charges nothing",
}
# The header form of the key (the field `idempotency_key` is the same key in the form).
IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": IDEMPOTENCY_KEY}

ERROR = {
    "description": "An error in MVSep's shape: the message in `message`, `errors[0]` and `data.message`.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["success", "message"],
                "properties": {
                    "success": {"type": "boolean", "enum": [False]},
                    "message": {},  # a text, or a field -> messages map for login/register validation
                    "errors": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "object"},
                },
            }
        }
    },
}
ANSWER = {"description": "MVSep's answer", "content": {"application/json": {"schema": {"type": "object"}}}}
FILE_ANSWER = {"description": "The stored file", "content": {"application/octet-stream": {"schema": FILE}}}


def _query(**fields: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in fields.items()]


def _form(*required: str, **fields: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": list(required)}
    has_files = any(s.get("format") == "binary" for s in fields.values())
    content: dict[str, Any] = {"multipart/form-data": {"schema": schema}}
    if not has_files:
        content["application/x-www-form-urlencoded"] = {"schema": schema}
    return {"required": True, "content": content}


SEPARATION_FIELDS = {
    "api_token": TOKEN,
    "sep_type": INTEGER_TEXT,
    "add_opt1": STRING,
    "add_opt2": STRING,
    "add_opt3": STRING,
    "output_format": INTEGER_TEXT,
    "is_demo": STRING,
    "webhook_url": STRING,
    "url": STRING,
    "remote_type": {"type": "string", "enum": ["direct", "google_drive", "dropbox", "mega"]},
    "audiofile": FILE,
    "target_audiofile": FILE,
    "reference_audiofile": FILE,
    "idempotency_key": IDEMPOTENCY_KEY,
}

# (method, path) -> what the route reads: query parameters, headers and/or a form body.
ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/separation/create"): {"body": _form(**SEPARATION_FIELDS), "headers": [IDEMPOTENCY_HEADER]},
    ("get", "/api/separation/get"): {"query": _query(hash=STRING)},
    ("post", "/api/separation/cancel"): {"body": _form(api_token=TOKEN, hash=STRING)},
    ("post", "/api/separation/delete"): {"body": _form(api_token=TOKEN, hash=STRING)},
    ("get", "/api/app/queue"): {"query": _query(api_token=TOKEN)},
    ("get", "/api/app/queue/summary"): {"query": _query(api_token=TOKEN)},
    ("post", "/api/app/login"): {"body": _form(email=STRING, password=STRING)},
    ("post", "/api/app/register"): {
        "body": _form(name=STRING, email=STRING, password=STRING, password_confirmation=STRING)
    },
    ("get", "/api/app/user"): {"query": _query(api_token=TOKEN)},
    ("get", "/api/app/separation_history"): {"query": _query(api_token=TOKEN)},
    ("post", "/api/app/enable_premium"): {"body": _form(api_token=TOKEN)},
    ("post", "/api/app/disable_premium"): {"body": _form(api_token=TOKEN)},
    ("post", "/api/app/enable_long_filenames"): {"body": _form(api_token=TOKEN)},
    ("post", "/api/app/disable_long_filenames"): {"body": _form(api_token=TOKEN)},
    ("get", "/api/purchases"): {"query": _query(api_token=TOKEN)},
    ("get", "/api/credit_alert"): {"query": _query(api_token=TOKEN)},
    ("post", "/api/credit_alert"): {"body": _form(api_token=TOKEN, credit_threshold=INTEGER_TEXT)},
    ("get", "/api/quality_checker/queue"): {"query": _query(start=INTEGER_TEXT, limit=INTEGER_TEXT)},
    ("get", "/api/quality_checker/leaderboard"): {
        "query": _query(
            dataset_type=INTEGER_TEXT,
            start=INTEGER_TEXT,
            limit=INTEGER_TEXT,
            algo_name_filter=STRING,
            sort=STRING,
            ranking_metrics=STRING,
        )
    },
    ("get", "/api/quality_checker/entry"): {"query": _query(id=INTEGER_TEXT)},
    ("post", "/api/quality_checker/add"): {
        "body": _form(
            "zipfile",
            api_token=TOKEN,
            zipfile=FILE,
            algo_name=STRING,
            main_text=STRING,
            dataset_type=INTEGER_TEXT,
            password=STRING,
            ensemble=STRING,
            idempotency_key=IDEMPOTENCY_KEY,
        ),
        "headers": [IDEMPOTENCY_HEADER],
    },
    ("post", "/api/quality_checker/delete"): {"body": _form(api_token=TOKEN, id=INTEGER_TEXT, password=STRING)},
    ("get", "/api/quality_checker/delete"): {"query": _query(api_token=TOKEN, id=INTEGER_TEXT, password=STRING)},
    # Ours, beside MVSep's: signed webhook endpoints (docs/webhooks.md).
    ("get", "/api/app/webhooks"): {"query": _query(api_token=TOKEN)},
    ("post", "/api/app/webhooks"): {"body": _form(api_token=TOKEN, url=STRING, event_types=STRING)},
    ("post", "/api/app/webhooks/update"): {
        "body": _form(api_token=TOKEN, id=INTEGER_TEXT, url=STRING, event_types=STRING, disabled=STRING)
    },
    ("post", "/api/app/webhooks/delete"): {"body": _form(api_token=TOKEN, id=INTEGER_TEXT)},
    ("post", "/api/app/webhooks/rotate"): {
        "body": _form(api_token=TOKEN, id={"type": "string", "description": "an endpoint's id, or `account`"})
    },
    ("post", "/api/app/webhooks/test"): {"body": _form(api_token=TOKEN, id=INTEGER_TEXT)},
    ("post", "/api/app/webhooks/redeliver"): {"body": _form(api_token=TOKEN, event_id=STRING)},
    ("get", "/api/app/webhooks/secret"): {"query": _query(api_token=TOKEN)},
    ("get", "/api/app/webhooks/deliveries"): {
        "query": _query(
            api_token=TOKEN, event_id=STRING, endpoint_id=INTEGER_TEXT, start=INTEGER_TEXT, limit=INTEGER_TEXT
        )
    },
}

# `separation/get` is a bare Starlette route (app.py says why), so FastAPI leaves it out of its document.
UNLISTED = {("get", "/api/separation/get"): "Status of a separation"}


def describe(app: FastAPI) -> None:
    """Replace `app.openapi` with FastAPI's document completed by ROUTES (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        paths = document.setdefault("paths", {})
        for (method, path), summary in UNLISTED.items():
            paths.setdefault(path, {})[method] = {"summary": summary, "operationId": path.strip("/").replace("/", "_")}
        for (method, path), reads in ROUTES.items():
            operation = paths.get(path, {}).get(method)
            if operation is None:
                raise RuntimeError(f"openapi.ROUTES names {method.upper()} {path}, which the app does not have")
            known = {p["name"] for p in operation.get("parameters", [])}
            operation["parameters"] = operation.get("parameters", []) + [
                p for p in reads.get("query", []) + reads.get("headers", []) if p["name"] not in known
            ]
            if "body" in reads:
                operation["requestBody"] = reads["body"]
        for path, operations in paths.items():
            for operation in operations.values():
                operation["responses"] = {"200": FILE_ANSWER if path.startswith("/storage/") else ANSWER, "4XX": ERROR}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
