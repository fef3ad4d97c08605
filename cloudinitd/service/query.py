"""The AWS Query protocol: form-encoded requests in, XML answers and AWS-shaped errors out.

Requests are untrusted: the body is bounded before it is parsed, the number
of fields and of list members is bounded, and no message quotes a value the
caller sent unless it already passed a name rule.
"""

from __future__ import annotations

import time
import urllib.parse
from xml.etree import ElementTree as ET

from cloudinitd.plan import userdata

NAMESPACE = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
VERSION = "2011-01-01"
MAX_BODY = 64 * 1024  # UserData (16 KB raw, ~22 KB in base64) and the rest fit
MAX_FIELDS = 300
MAX_MEMBERS = 100  # AWS's own cap on list members in one request


class ApiError(Exception):
    """An answer in AWS's `ErrorResponse` shape; `status` is the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400, kind: str = "Sender"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.kind = kind


def validation(message: str) -> ApiError:
    return ApiError("ValidationError", message)


def parse_form(body: bytes) -> dict[str, str]:
    """`application/x-www-form-urlencoded` into one value per name (a repeated name is refused)."""
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                                       max_num_fields=MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ApiError("MalformedQueryString", "the request body is not a form of at most"
                       f" {MAX_FIELDS} UTF-8 fields") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise ApiError("MalformedQueryString", "a parameter is given twice")
        params[name] = value
    return params


def required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise ApiError("MissingParameter", f"The request must contain the parameter {name}")
    return value


def integer(params: dict[str, str], name: str, low: int, high: int,
            default: int | None = None) -> int | None:
    """An integer parameter within [low, high]; `default` when absent."""
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise validation(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise validation(f"{name} must be between {low} and {high}")
    return value


def boolean(params: dict[str, str], name: str) -> bool:
    text = params.get(name, "false").strip().lower()
    if text not in ("true", "false"):
        raise validation(f"{name} must be true or false")
    return text == "true"


def members(params: dict[str, str], prefix: str) -> list[str]:
    """`Prefix.member.1`, `Prefix.member.2`, ... in order (AWS lists are 1-based)."""
    return [params[f"{prefix}.member.{n}"] for n in _member_numbers(params, prefix)]


def _member_numbers(params: dict[str, str], prefix: str) -> list[int]:
    head = f"{prefix}.member."
    numbers = set()
    for name in params:
        if name.startswith(head):
            number = name[len(head):].split(".", 1)[0]
            if not number.isdigit() or not 1 <= int(number) <= MAX_MEMBERS:
                raise validation(f"{prefix} members are numbered 1 to {MAX_MEMBERS}")
            numbers.add(int(number))
    return sorted(numbers)


def tags(params: dict[str, str]) -> dict[str, str]:
    """`Tags.member.N.Key` / `.Value` as a mapping (ResourceId and the rest are ignored)."""
    out: dict[str, str] = {}
    for n in _member_numbers(params, "Tags"):
        key = params.get(f"Tags.member.{n}.Key")
        if not key:
            raise ApiError("MissingParameter", f"Tags.member.{n}.Key is required")
        if len(key) > 128 or key in out or not key.isprintable():
            raise validation("a tag key is printable text of at most 128 characters, given once")
        value = params.get(f"Tags.member.{n}.Value", "")
        if len(value) > 256 or not value.isprintable():
            raise validation("a tag value is printable text of at most 256 characters")
        out[key] = value
    return out


def decode_user_data(text: str, limit: int) -> bytes:
    """UserData arrives base64-encoded (boto3 encodes it): any bytes (gzip, text) of at most
    `limit`, kept exactly as sent. The message never quotes it (it may be private)."""
    try:
        raw = userdata.from_base64(text)
    except userdata.UserDataError:
        raise validation("UserData must be base64") from None
    if len(raw) > limit:
        raise validation(f"UserData is at most {limit} bytes")
    return raw


def element(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
    """A child element; `text` as AWS writes it (booleans lower case)."""
    child = ET.SubElement(parent, tag)
    if isinstance(text, bool):
        child.text = "true" if text else "false"
    elif text is not None:
        child.text = str(text)
    return child


def timestamp(seconds: float) -> str:
    """ISO 8601 in UTC, as AWS writes `CreatedTime`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{int(seconds * 1000) % 1000:03d}Z"


def success(action: str, request_id: str, result: ET.Element | None) -> bytes:
    """`<ActionResponse>` with the result (if any) and `ResponseMetadata/RequestId`."""
    root = ET.Element(f"{action}Response", xmlns=NAMESPACE)
    if result is not None:
        root.append(result)
    meta = element(root, "ResponseMetadata")
    element(meta, "RequestId", request_id)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def error_body(err: ApiError, request_id: str) -> bytes:
    """`ErrorResponse/Error/{Type,Code,Message}` + `RequestId`, as AWS answers."""
    root = ET.Element("ErrorResponse", xmlns=NAMESPACE)
    error = element(root, "Error")
    element(error, "Type", err.kind)
    element(error, "Code", err.code)
    element(error, "Message", err.message)
    element(root, "RequestId", request_id)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
