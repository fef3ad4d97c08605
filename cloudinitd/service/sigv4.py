"""AWS Signature Version 4, checked by recomputing it with botocore's own signer.

The caller's `Authorization` header names the access key, the credential
scope (date/region/service) and the headers it signed. The request is
rebuilt from exactly those headers, the body and the path, botocore's
`SigV4Auth` computes the signature with the user's secret and the request's
own `X-Amz-Date`, and the two signatures are compared in constant time.

Replay: `X-Amz-Date` must lie within 15 minutes of this machine's clock,
either way (AWS's `RequestExpired` rule for its Query APIs). Within that
window a captured request could be sent again: put TLS in front (README).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from cloudinitd.service.query import ApiError

SERVICE = "autoscaling"
MAX_SKEW = 15 * 60  # seconds, either way
AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]{1,256}),\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9;_.-]{1,1024}),\s*Signature=(?P<signature>[0-9a-f]{64})\s*")
_SCOPE = re.compile(r"(?P<key>[A-Za-z0-9]{16,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]{1,32})/"
                    r"(?P<service>[a-z0-9-]{1,32})/aws4_request")

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Signed:
    """What the `Authorization` header claims."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def _incomplete(message: str) -> ApiError:
    return ApiError("IncompleteSignature", message)


def _mismatch(message: str = "The request signature we calculated does not match the"
              " signature you provided. Check your AWS Secret Access Key and signing"
              " method.") -> ApiError:
    return ApiError("SignatureDoesNotMatch", message, status=403)


def parse_authorization(value: str | None) -> Signed:
    if not value:
        raise ApiError("MissingAuthenticationToken", "Request is missing Authentication Token",
                       status=403)
    match = _AUTH.fullmatch(value)
    if not match:
        raise _incomplete("Authorization must be AWS4-HMAC-SHA256 Credential=..., "
                          "SignedHeaders=..., Signature=...")
    scope = _SCOPE.fullmatch(match["credential"])
    if not scope:
        raise _incomplete("Credential must be KEY/YYYYMMDD/REGION/SERVICE/aws4_request")
    signed = tuple(match["signed"].split(";"))
    if list(signed) != sorted(set(signed)) or "" in signed:
        raise _incomplete("SignedHeaders must be sorted, lower case and given once each")
    return Signed(scope["key"], scope["date"], scope["region"], scope["service"], signed,
                  match["signature"])


def _header_map(headers: Headers) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return out


def verify(method: str, path: str, query: str, headers: Headers, body: bytes,
           secret_for: Callable[[str], str | None], now: float | None = None) -> str:
    """The access key of a correctly signed, fresh request; else ApiError (AWS's codes).

    `path` is the raw request path and `query` the raw query string, as sent.
    """
    by_name = _header_map(headers)
    authorization = by_name.get("authorization", [None])
    if len(authorization) != 1:
        raise _incomplete("give one Authorization header")
    signed = parse_authorization(authorization[0])
    if signed.service != SERVICE:
        raise _mismatch(f"Credential should be scoped to correct service: '{SERVICE}'.")
    for needed in ("host", "x-amz-date"):
        if needed not in signed.signed_headers:
            raise _incomplete(f"SignedHeaders must include {needed}")
    missing = [name for name in signed.signed_headers if name not in by_name]
    if missing:
        raise _incomplete("a header named in SignedHeaders is missing from the request")
    amz_date = by_name["x-amz-date"][0]
    try:
        when = calendar.timegm(time.strptime(amz_date, AMZ_DATE))
    except ValueError:
        raise _incomplete("X-Amz-Date must be YYYYMMDDTHHMMSSZ") from None
    if amz_date[:8] != signed.date:
        raise _mismatch("Credential should be scoped to a valid date matching X-Amz-Date.")
    secret = secret_for(signed.access_key)
    if secret is None:
        raise ApiError("InvalidClientTokenId",
                       "The security token included in the request is invalid.", status=403)
    content_sha = by_name.get("x-amz-content-sha256")
    # botocore takes a given body hash on trust; here it must be the body's own.
    # Compared as bytes: compare_digest raises on a str with non-ASCII characters.
    if content_sha and not hmac.compare_digest(content_sha[0].encode(errors="surrogateescape"),
                                               hashlib.sha256(body).hexdigest().encode()):
        raise _mismatch()
    try:
        expected = compute_signature(method, path, query, by_name, body, signed, secret,
                                     amz_date)
    except ValueError:  # a Host (or path) no URL can hold, e.g. `[`: nothing was signed so
        raise _mismatch() from None
    if not hmac.compare_digest(expected.encode(),
                               signed.signature.encode(errors="surrogateescape")):
        raise _mismatch()
    now = time.time() if now is None else now
    if abs(now - when) > MAX_SKEW:
        raise ApiError("RequestExpired", f"Request has expired: X-Amz-Date {amz_date} is more"
                       f" than {MAX_SKEW // 60} minutes from the server's time.")
    return signed.access_key


def compute_signature(method: str, path: str, query: str, by_name: dict[str, list[str]],
                      body: bytes, signed: Signed, secret: str, amz_date: str) -> str:
    """botocore's SigV4 signature of the request as rebuilt from its signed headers."""
    headers = HTTPHeaders()
    for name in signed.signed_headers:
        for value in by_name[name]:
            headers.add_header(name, value)
    host = by_name["host"][0]
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method.upper(), url=url, data=body, headers=headers)
    request.headers = headers  # as received: AWSRequest would not add or merge any
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(signed.access_key, secret), SERVICE, signed.region)
    if auth.signed_headers(auth.headers_to_sign(request)) != ";".join(signed.signed_headers):
        raise _mismatch()  # a header botocore never signs (user-agent, expect) was listed
    canonical = auth.canonical_request(request)
    return auth.signature(auth.string_to_sign(request, canonical), request)
