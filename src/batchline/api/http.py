"""What the REST surfaces share: custom verbs in a path segment, bounded JSON bodies, offset page tokens."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException

from batchline.api.limits import MAX_BODY_BYTES, mebibytes
from batchline.errors import InvalidArgument, NotFound, PayloadTooLarge
from batchline.problems.image.decode import MAX_IMAGE_BYTES

DEFAULT_PAGE_SIZE = 50
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class WrongMethod(HTTPException):
    """HTTP 405: the path exists, the method is not one it takes (sent as google.rpc UNIMPLEMENTED)."""

    def __init__(self, request: Request, allowed: Iterable[str], hint: str = ""):
        self.allowed = sort_methods(allowed)
        message = (
            f"{request.method} is not allowed on {request.url.path}; this path takes {', '.join(self.allowed)}{hint}"
        )
        super().__init__(405, message, headers={"Allow": ", ".join(self.allowed)})


def sort_methods(methods: Iterable[str]) -> list[str]:
    unique = set(methods)
    return sorted(unique, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))


class Verbs:
    """What one `.../{collection}/{segment}` path takes, by HTTP method: the bare resource (`models/M`) and custom
    verbs (`models/M:predict`). A method the path does not take is 405 naming those it does; an unknown verb 404."""

    def __init__(self, what: str, **methods: Iterable[str]):
        """`Verbs("model", GET=[""], POST=["predict"])`: "" is the bare resource, others its `:verb`s."""
        self.what = what  # "model", "operation" ...
        self.methods = {method: frozenset(":" + v if v else "" for v in verbs) for method, verbs in methods.items()}

    def split(self, request: Request, segment: str) -> tuple[str, str | None]:
        """(resource id, verb or None) when the request's method takes this verb; raises otherwise."""
        resource_id, sep, verb = segment.partition(":")
        key = ":" + verb if sep else ""
        if key in self.methods.get(request.method, ()):
            return resource_id, verb or None
        takes = [method for method, verbs in self.methods.items() if key in verbs]
        if takes:
            raise WrongMethod(request, takes, self._verb_hint(request.method, resource_id))
        known = sorted({v for verbs in self.methods.values() for v in verbs if v})
        takes = f"{', '.join(resource_id + v for v in known)}" if known else f"no methods; use {resource_id} itself"
        raise NotFound(f"unknown method :{verb}; a {self.what} takes {takes}")

    def _verb_hint(self, method: str, resource_id: str) -> str:
        verbs = sorted(v for v in self.methods.get(method, ()) if v)
        return f" ({method} takes a method: {', '.join(resource_id + v for v in verbs)})" if verbs else ""

    def refuse_other_methods(self, router: APIRouter, path: str) -> None:
        """Route every other method of `path` here, so that the 405 names what this path takes by verb."""

        async def wrong_method(request: Request, segment: str) -> None:
            self.split(request, segment)

        _add_refusal(router, path, wrong_method, self.methods)


def refuse_other_methods(router: APIRouter, path: str, takes: Iterable[str]) -> None:
    """Answer every other method of `path` with a 405 that names the methods it takes (the router alone would name
    only those of the first route it tried)."""
    takes = list(takes)

    async def wrong_method(request: Request) -> None:
        raise WrongMethod(request, takes)

    _add_refusal(router, path, wrong_method, takes)


def _add_refusal(router: APIRouter, path: str, endpoint: Any, takes: Iterable[str]) -> None:
    others = [m for m in METHOD_ORDER if m not in set(takes)]
    router.add_api_route(path, endpoint, methods=others, include_in_schema=False, name="wrong_method")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused with 413 once over `limit`: by its Content-Length before reading, and by the bytes that
    arrive (a chunked body has no length), holding at most limit + 1 bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidArgument(f"Content-Length {declared!r} is not a number") from None
        if length > limit:
            raise _too_large(request, limit, f"this one is {length:,} bytes (Content-Length)")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk[: limit + 1 - len(received)]
        if len(received) > limit:
            raise _too_large(request, limit, "more than that arrived")
    return bytes(received)


def _too_large(request: Request, limit: int, found: str) -> PayloadTooLarge:
    if request.url.path.endswith(":predict"):
        advice = f"send an image of at most {MAX_IMAGE_BYTES // 2**20} MB"
    else:
        advice = "a request holds the URIs of input files, not the inputs: list the inputs in files and pass their URIs"
    return PayloadTooLarge(
        f"request body too large: {request.url.path} takes at most {mebibytes(limit)} and {found}; {advice}"
    )


async def json_body(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def page(request: Request) -> tuple[int, int]:
    query = request.query_params
    try:
        size = int(query.get("pageSize") or query.get("page_size") or DEFAULT_PAGE_SIZE)
        offset = int(query.get("pageToken") or query.get("page_token") or 0)
    except ValueError:
        raise InvalidArgument("pageSize must be a number and pageToken one this API returned") from None
    if size < 1 or offset < 0:
        raise InvalidArgument("pageSize must be >= 1 and pageToken one this API returned")
    return offset, min(size, 1000)
