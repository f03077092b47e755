"""``GET /api/v1/message/{id}/link-check``: the HTTP status of each link in a message, as Mailpit's
``internal/linkcheck`` gives it (``{"Errors": n, "Links": [{"URL", "StatusCode", "Status"}]}``).

Links are collected as Mailpit does (the HTML's ``a[href]``, stylesheet ``link[href]`` and
``img[src]``, then URLs in the text; unique, in order, at most :data:`MAX_LINKS`). Each is asked with
``HEAD``, and with ``GET`` when the server refuses ``HEAD`` (405, 501) or breaks the answer; redirects
are followed (at most :data:`MAX_REDIRECTS`) only when asked. :data:`CONCURRENCY` links at a time,
two per host, each within the configured timeout.

Server-side request forgery: unless ``[checks] allow_internal`` is set, no request reaches a
loopback, private, link-local or otherwise internal address (:mod:`.internal`). The check is made
on the address a name RESOLVES to, in the resolver the connection then uses (so a name cannot
change its answer in between), on address literals, and again on every redirect hop.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .. import __version__
from .dom import attributes, tokens
from .internal import is_internal

MAX_LINKS = 100  # unique links checked in one message (Mailpit's cap)
MAX_REDIRECTS = 3  # hops followed with follow=true (Mailpit's)
CONCURRENCY = 20  # links checked at once
PER_HOST = 2  # connections to one host at once
BLOCKED = (451, "Blocked private/reserved address")  # Mailpit's answer for an internal address
_REFUSED_HEAD = (405, 501)
_REDIRECTS = (301, 302, 303, 307, 308)
_LINK_RE = re.compile(r"\b(http|https)://([\-\w@:%_+'!.~#?,&/=;]+)", re.I | re.A)
_TEXT_LINK_RE = re.compile(r"([^<]\b)((http|https)://([\-\w@:%_+'!.~#?,&/=;]+))", re.I | re.A)
_BRACKET_LINK_RE = re.compile(r"<((http|https)://([\-\w@:%_+'!.~#?,&/=;][^>]{1,4000}))>", re.I | re.A)
_HTML_SOURCES = (("a", "href", None), ("link", "href", "stylesheet"), ("img", "src", None))


class Blocked(OSError):
    """A request would reach an internal address."""


def collect(html: str, text: str) -> list[str]:
    """Mailpit's links of a message: unique, in order of discovery, at most :data:`MAX_LINKS`."""
    found: dict[str, None] = {}
    for link in _html_links(html):
        found.setdefault(link)
        if len(found) >= MAX_LINKS:
            return list(found)
    limit = MAX_LINKS * 3
    for count, match in enumerate(_TEXT_LINK_RE.finditer(text)):
        if count >= limit or len(found) >= MAX_LINKS:
            break
        found.setdefault(match.group(2))
    for count, match in enumerate(_BRACKET_LINK_RE.finditer(text)):
        if count >= limit or len(found) >= MAX_LINKS:
            break
        found.setdefault(match.group(1).replace("\n", ""))
    return list(found)[:MAX_LINKS]


def _html_links(html: str) -> list[str]:
    """``a[href]``, then ``link[rel=stylesheet][href]``, then ``img[src]`` values that contain a URL."""
    groups: list[list[str]] = [[] for _ in _HTML_SOURCES]
    for kind, tag, rest in tokens(html):
        if kind != "start" or tag not in ("a", "link", "img", "image"):
            continue
        attrs = attributes(rest)
        for group, (wanted, name, rel) in zip(groups, _HTML_SOURCES, strict=True):
            value = attrs.get(name)
            if (wanted == tag or (wanted, tag) == ("img", "image")) and value is not None and len(group) < MAX_LINKS \
                    and (rel is None or attrs.get("rel") == rel) and _LINK_RE.search(value):
                group.append(value)
    return [link for group in groups for link in group]


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to an address ``blocked`` says is internal."""

    def __init__(self, blocked: Callable[[str], bool] = is_internal) -> None:
        self._resolver = aiohttp.ThreadedResolver()
        self._blocked = blocked

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        for result in found:
            if self._blocked(result["host"]):
                raise Blocked(f"blocked request to {host} ({result['host']}): private/reserved address")
        return found

    async def close(self) -> None:
        await self._resolver.close()


class LinkChecker:
    """One link check's HTTP client (``allow_internal``: reach internal addresses; ``timeout``:
    seconds for each link, redirects included; ``blocked``: what an internal address is)."""

    def __init__(self, *, allow_internal: bool, timeout: float, blocked: Callable[[str], bool] = is_internal
                 ) -> None:
        self.allow_internal = allow_internal
        self.timeout = timeout
        self.blocked = blocked

    async def check(self, links: Iterable[str], follow: bool) -> dict[str, Any]:
        """Mailpit's ``LinkCheckResponse`` for ``links``."""
        connector = aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=PER_HOST, force_close=True,
                                         resolver=None if self.allow_internal else GuardedResolver(self.blocked))
        gate = asyncio.Semaphore(CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector, headers={"User-Agent": f"smtp-sink/{__version__}"},
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            async def one(link: str) -> dict[str, Any]:
                async with gate:
                    code, status = await self._status(session, link, follow)
                return {"URL": link, "StatusCode": code, "Status": status}

            results = await asyncio.gather(*(one(link) for link in links))
        return {"Errors": sum(r["StatusCode"] >= 400 or r["StatusCode"] == 0 for r in results), "Links": results}

    async def _status(self, session: aiohttp.ClientSession, link: str, follow: bool) -> tuple[int, str]:
        """``(status code, status text)`` of one link, or Mailpit's 0 / 451 with the reason."""
        try:
            code = await asyncio.wait_for(self._follow(session, link, follow), self.timeout)
        except Blocked:
            return BLOCKED
        except (TimeoutError, asyncio.TimeoutError):
            return 0, f"timeout (no answer within {self.timeout:g} s)"
        except aiohttp.ClientConnectorError as exc:
            if _blocked(exc):
                return BLOCKED
            return 0, _reason(exc)
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            return 0, _reason(exc)
        return code, _phrase(code)

    async def _follow(self, session: aiohttp.ClientSession, link: str, follow: bool) -> int:
        url = _valid(link)
        for hop in range(MAX_REDIRECTS + 1):
            code, location = await self._ask(session, url)
            if not (follow and code in _REDIRECTS and location):
                return code
            if hop == MAX_REDIRECTS:
                raise ValueError("too many redirects")
            url = _valid(str(url.join(URL(location))))
        raise AssertionError("unreachable")

    async def _ask(self, session: aiohttp.ClientSession, url: URL) -> tuple[int, str]:
        """HEAD (then GET if HEAD is refused or broken): ``(status, Location)``."""
        if not self.allow_internal and url.host is not None and _is_address(url.host) \
                and self.blocked(url.host.strip("[]")):
            raise Blocked(f"blocked request to {url.host}: private/reserved address")
        try:
            code, location = await self._request(session, "HEAD", url)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError, aiohttp.ClientPayloadError):
            return await self._request(session, "GET", url)
        if code in _REFUSED_HEAD:
            return await self._request(session, "GET", url)
        return code, location

    @staticmethod
    async def _request(session: aiohttp.ClientSession, method: str, url: URL) -> tuple[int, str]:
        async with session.request(method, url, allow_redirects=False) as response:
            return response.status, response.headers.get("Location", "")


def _valid(link: str) -> URL:
    """The link as a URL: http or https with a host, else ValueError (Mailpit: invalid URL)."""
    try:
        url = URL(link)
    except (ValueError, TypeError):
        raise ValueError(f"invalid URL: {link[:200]}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"invalid URL: {link[:200]}")
    return url


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _blocked(exc: BaseException) -> bool:
    """Whether an aiohttp error was caused by :class:`Blocked`."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, Blocked) or isinstance(getattr(seen, "os_error", None), Blocked):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    """A short reason, as Mailpit gives the end of Go's error text."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if isinstance(error, socket.gaierror):
            return "no such host"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        return (error.strerror or str(error)) if isinstance(error, OSError) else str(exc)
    text = str(exc) or type(exc).__name__
    return text.rsplit(": ", 1)[-1][:200]


def _phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""
