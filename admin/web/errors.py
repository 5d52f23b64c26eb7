"""Error pages: HTML for people, ``{"error": ...}`` for the API and for the upload script."""

from __future__ import annotations

from flask import Flask, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException, InternalServerError

_TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Upload too large",
    429: "Too many requests",
    500: "Something went wrong",
}


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _message(error: HTTPException) -> str:
    code = error.code or 500
    if code == 413:
        limit = int(current_app.config.get("MAX_CONTENT_LENGTH") or 0)
        return (
            f"The upload is larger than the limit of {limit:,} bytes "
            f"({limit / 1024**2:,.1f} MiB, set by MAMORU_MAX_ARCHIVE_BYTES). Split it into "
            "smaller uploads, or ask an administrator to raise the limit."
        )
    if code == 404:
        return "There is nothing here, or it is not yours to see."
    if code == 403:
        return "Your role does not give access to this page."
    if code == 500:
        return "The error was logged. Try again, or tell an administrator."
    return error.description or _TITLES.get(code, "Error")


def _render(error: HTTPException) -> ResponseReturnValue:
    code = error.code or 500
    message = _message(error)
    if _wants_json():
        return jsonify(error=message), code
    title = _TITLES.get(code, "Error")
    return render_template("error.html", code=code, title=title, message=message), code


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> ResponseReturnValue:
        if _wants_json():
            return jsonify(error=f"CSRF check failed: {error.description}"), 400
        message = (
            "The form had expired or was not sent by this site (CSRF check failed: "
            f"{error.description}). Go back, reload the page and try again."
        )
        return render_template("error.html", code=400, title="Form expired", message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        return _render(error)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> ResponseReturnValue:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _render(InternalServerError())
