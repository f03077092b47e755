"""``POST /api/v1/send``: a message made from Mailpit's JSON, stored as SMTP mail is (:mod:`smtp_sink.compose`)."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from ..compose import compose
from ..jsonbody import BodyError
from ..trace import Envelope
from .common import AUTH_KEY, APIError, decode_json, off_loop, sink

READ_CHUNK = 1 << 16


async def send(request: web.Request) -> web.Response:
    """Build the message in a reader thread, store it with trace headers saying it came from the
    HTTP API, answer ``{"ID": id}``. 400 names what is wrong; 413 beyond ``[smtp] max_message_size``."""
    the_sink = sink(request)
    smtp = the_sink.config.smtp
    raw = await _body(request, smtp.max_message_size)
    body = await off_loop(request, lambda: decode_json(raw))
    try:
        made = await off_loop(request, lambda: compose(body, smtp.hostname, smtp.max_message_size,
                                                        smtp.max_recipients))
    except BodyError as exc:
        raise APIError(exc.status, str(exc)) from None
    envelope = Envelope(mail_from=made.sender, rcpt_to=made.recipients, smtputf8=made.smtputf8,
                        peer=request.remote or "", auth_user=_user(request), api=True)
    stored = await off_loop(request, lambda: the_sink.save(envelope, made.data))
    return web.json_response({"ID": stored.id})


async def _body(request: web.Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (0: no limit): 413 beyond, before reading it all."""
    too_large = APIError(413, f"request body too large (at most {limit} bytes: [smtp] max_message_size)")
    if limit and (request.content_length or 0) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if limit and size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _user(request: web.Request) -> str | None:
    """The HTTP basic-auth user, when ``[http] auth`` is set (the guard checked the password)."""
    if not request.app[AUTH_KEY]:
        return None
    try:
        given = base64.b64decode(request.headers.get("Authorization", "").partition(" ")[2].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return given.partition(b":")[0].decode("utf-8", "replace")


ROUTES = [web.post("/api/v1/send", send)]
