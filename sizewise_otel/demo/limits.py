"""Request body limit: answer 413 before a large body is read into memory."""

from __future__ import annotations

import json
from typing import Any

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB


async def _send_413(send: Any) -> None:
    body = json.dumps({"detail": f"request body exceeds {MAX_BODY_BYTES} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_413(send)
                    return
        received = 0
        state = {"started": False, "rejected": False}

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            if state["rejected"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and tell the app the client went away: frameworks turn an
                    # exception raised here into a 400, which would hide the real reason.
                    state["rejected"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _send_413(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["rejected"]:
                return  # the 413 was already sent
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
