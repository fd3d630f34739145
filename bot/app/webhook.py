"""RunPod's job webhook: authenticate, validate, store a failure, answer fast; the Slack work happens after."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.core.alerts import BadJobBody
from bot.core.ids import is_valid_id
from bot.store import StoreUnavailable
from bot.work.runtime import Runtime

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
ROUTE = "/runpod/webhook/{endpoint}"


def handler(rt: Runtime) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def runpod_webhook(request: web.Request) -> web.Response:
        secret = rt.settings.webhook_secret
        if not secret:
            return web.json_response({"ok": False, "error": "webhook disabled: RUNPOD_WEBHOOK_SECRET is not set"},
                                     status=404)
        token = request.query.get("token", "")
        if not token:
            rt.metrics.webhooks.labels(result="unauthenticated").inc()
            return web.json_response({"ok": False, "error": "missing token"}, status=401)
        if not hmac.compare_digest(token.encode(), secret.encode()):
            rt.metrics.webhooks.labels(result="forbidden").inc()
            log.warning("RunPod webhook with a wrong token from %s", request.remote)
            return web.json_response({"ok": False, "error": "wrong token"}, status=403)
        if not rt.background.accepting:
            # Shutting down: a non-2xx makes RunPod deliver it again, to the next instance.
            return web.json_response({"ok": False, "error": "restarting, send again"}, status=503)
        endpoint = request.match_info["endpoint"]
        if not is_valid_id(endpoint):
            return _bad("the endpoint ID in the URL is not valid")
        if (request.content_length or 0) > MAX_BODY:
            return _bad("body too large", 413)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return _bad("body too large", 413)
        try:
            body = json.loads(raw)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            rt.metrics.webhooks.labels(result="malformed").inc()
            return _bad("body is not JSON")
        try:
            result = await rt.job_event(endpoint, body)
        except BadJobBody as exc:
            rt.metrics.webhooks.labels(result="malformed").inc()
            return _bad(f"not a RunPod job: {exc}")
        except StoreUnavailable as exc:
            # Not stored, so not answered 200: RunPod sends it again (twice, 10 s apart).
            log.warning("could not accept a RunPod webhook: %s", exc)
            rt.metrics.webhooks.labels(result="unstored").inc()
            return web.json_response({"ok": False, "error": "could not record the event, send again"}, status=503)
        except Exception:
            # Not stored, so not answered 200: RunPod sends it again (twice, 10 s apart).
            log.exception("could not accept a RunPod webhook")
            rt.metrics.webhooks.labels(result="unstored").inc()
            return web.json_response({"ok": False, "error": "could not record the event, send again"}, status=503)
        return web.json_response({"ok": True, "result": result})

    return runpod_webhook


def _bad(reason: str, status: int = 400) -> web.Response:
    return web.json_response({"ok": False, "error": reason}, status=status)
