"""The HTTP side: a Starlette app served by uvicorn, one endpoint (`/`) for every action.

A request is read with a size bound, authenticated (SigV4) before its form
is even parsed, dispatched on `Action`, and answered in XML. The log gets
one line per request (user, action, status), never a parameter, a header
or a signature.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudinitd.errors import CloudinitdError, one_line
from cloudinitd.service import query, sigv4
from cloudinitd.service.actions import ACTIONS, Api
from cloudinitd.service.query import ApiError
from cloudinitd.service.users import UserDirectory

_log = logging.getLogger("cloudinitd.service")


def _internal() -> ApiError:
    return ApiError("InternalFailure", "The request processing has failed because of an"
                    " unknown error, exception or failure.", 500, "Receiver")


def handle(api: Api, users: UserDirectory, method: str, path: str, raw_query: str,
           headers: Sequence[tuple[str, str]], body: bytes,
           request_id: str) -> tuple[int, bytes]:
    """One request, start to end: (HTTP status, XML body)."""
    user, action = "-", "-"
    try:
        access_key = sigv4.verify(method, path, raw_query, headers, body, users.secret_for)
        found = users.user_for(access_key)
        if found is None:  # removed between the two look-ups
            raise ApiError("InvalidClientTokenId",
                           "The security token included in the request is invalid.", 403)
        user = found
        params = query.parse_form(body) if method == "POST" else {}
        action = params.get("Action", "")
        if not action:
            raise ApiError("MissingAction", "The request must contain the parameter Action")
        if action not in ACTIONS:
            action = "(unknown)"
            raise ApiError("InvalidAction", "The action or operation requested is invalid."
                           " Verify that the action is typed correctly.")
        version = params.get("Version", query.VERSION)
        if version != query.VERSION:
            raise ApiError("NoSuchVersion", f"This service speaks Version {query.VERSION}")
        result = ACTIONS[action](api, user, params)
        status, out = 200, query.success(action, request_id, result)
    except ApiError as err:
        status, out = err.status, query.error_body(err, request_id)
    except CloudinitdError as exc:  # e.g. a broken catalog: the operator's to see, not the caller's
        _log.warning("request %s (%s by %s): %s", request_id, action, user, one_line(str(exc)))
        status, out = 500, query.error_body(_internal(), request_id)
    except Exception:
        _log.exception("request %s (%s by %s) failed", request_id, action, user)
        status, out = 500, query.error_body(_internal(), request_id)
    _log.info("%s %s %s -> %d", request_id, user, action, status)
    return status, out


async def _body(request: Request) -> bytes:
    """The body, refused past MAX_BODY whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > query.MAX_BODY):
        raise ApiError("RequestEntityTooLarge", f"the body is at most {query.MAX_BODY} bytes",
                       413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > query.MAX_BODY:
            raise ApiError("RequestEntityTooLarge", f"the body is at most {query.MAX_BODY}"
                           " bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(api: Api, users: UserDirectory) -> Starlette:
    async def endpoint(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            if request.method != "POST":
                raise ApiError("UnsupportedProtocol", "send actions as form-encoded POST", 405)
            body = await _body(request)
        except ApiError as err:
            return Response(query.error_body(err, request_id), err.status,
                            media_type="text/xml", headers={"x-amzn-RequestId": request_id})
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        status, out = await run_in_threadpool(
            handle, api, users, request.method, raw_path.decode("latin-1"),
            request.scope.get("query_string", b"").decode("latin-1"),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
            body, request_id)
        return Response(out, status, media_type="text/xml",
                        headers={"x-amzn-RequestId": request_id})

    return Starlette(routes=[Route("/", endpoint, methods=["GET", "POST", "PUT", "DELETE"])])
