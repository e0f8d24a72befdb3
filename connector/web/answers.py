"""HTTP answers both web blueprints give (the push path's and the operator pages')."""

from __future__ import annotations

from flask import Response

JSON = "application/json"


def redis_unavailable(retry_after_s: int, body: str, mimetype: str = JSON) -> Response:
    """503 with ``Retry-After``: Redis is down, so the client should come back later."""
    response = Response(body, 503, mimetype=mimetype)
    response.headers["Retry-After"] = str(retry_after_s)
    return response
