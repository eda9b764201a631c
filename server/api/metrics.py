"""`GET /metrics` (Prometheus' text format) and the hooks that count each request.

Who may scrape: a client on loopback always (the machine's own Prometheus, or a
TLS proxy in front of the server); a client beyond loopback only when
`POLLAMA_METRICS=1`, because model names and load tell an outsider what the
machine runs. With `POLLAMA_API_KEYS` set, a scrape needs a key like any other
request (Prometheus' `authorization` scrape setting sends it).
"""

from __future__ import annotations

import ipaddress
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Quart, Response, g, request

from server.api.context import services
from server.api.http import json_response
from server.metrics import Metrics, RequestFacts, current_request

bp = Blueprint("metrics", __name__)

NOT_EXPOSED = "metrics are served to loopback clients only; set POLLAMA_METRICS=1 to serve them to the network"


def client_is_loopback(remote_addr: str | None) -> bool:
    if not remote_addr:
        return False
    try:
        return ipaddress.ip_address(remote_addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def may_scrape(remote_addr: str | None, *, exposed: bool) -> bool:
    return exposed or client_is_loopback(remote_addr)


@bp.route("/metrics", methods=["GET"])
async def scrape() -> Response:
    svc = services()
    if not may_scrape(request.remote_addr, exposed=svc.config.metrics):
        return json_response({"error": NOT_EXPOSED}, 403)
    body = generate_latest(svc.metrics.registry)
    return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)


def count_requests(app: Quart, metrics: Metrics) -> None:
    """Count every request once, when its response is ready; to be installed before any hook that may refuse."""

    @app.before_request
    async def begin_request_facts() -> None:
        current_request.set(RequestFacts())

    @app.after_request
    async def count_request(response: Response) -> Response:
        facts = current_request.get()
        rule = request.url_rule.rule if request.url_rule is not None else ""
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe_request(rule, request.method, response.status_code, facts.model if facts else "", elapsed)
        return response
