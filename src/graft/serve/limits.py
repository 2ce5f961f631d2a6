"""Request limits: body size (413 before the body is read), requests in flight (429)."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Args:
    max_body_bytes: the largest request body (413 above it).
    max_concurrent_requests: predict/classify requests in progress at once (429 above it).
    """

    max_body_bytes: int = 64 * 1024 * 1024
    max_concurrent_requests: int = 1024


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a declared ``Content-Length`` above the limit is refused at once (the
    body is never read); a chunked body is cut off as soon as it passes the limit."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send, message: str, status: int = 413) -> None:
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await self._refuse(
                    send, f"Content-Length must be a number. Received: {declared[:20]!r}", 400
                )
            if int(declared) > self.max_bytes:
                return await self._refuse(send, self._message(int(declared)))
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, self._message(seen))

    def _message(self, size: int) -> str:
        return (
            f"Request body too large: the limit is {self.max_bytes} bytes (--max-body-bytes). "
            f"Received: content_length={size}"
        )
