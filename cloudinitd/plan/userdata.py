"""User data (AWS's UserData): the bytes a caller hands an instance's first boot, as data.

Pure (no I/O): the base64 forms of plans and of the Auto Scaling API, a bounded
gunzip, what a kind of cloud can apply (its declaration's `user_data`), and the
cloud-init multipart that puts the project's own parts after the caller's.

AWS takes any bytes up to 16 KB and hands them to the image untouched; common
tools send gzip (Terraform's `cloudinit_config` gzips by default), which
cloud-init recognises by its magic and inflates. So the bytes are kept exactly
as given; they are inflated only where this project must read them (a `local`
container runs the script itself; qemu's seed and ec2's lease merge parts), and
never past MAX_INFLATED: 16 KB of gzip can inflate to about 16 MB.
"""

from __future__ import annotations

import base64
import binascii
import email
import gzip
import re
import zlib
from collections.abc import Mapping
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from typing import Any

MAX_BYTES = 16384  # what is sent to a cloud, as EC2 (before its base64)
MAX_INFLATED = 1 << 20  # what a gzip UserData may inflate to where this project inflates it
GZIP_MAGIC = b"\x1f\x8b"
TEXT_KEY, BASE64_KEY = "user_data", "user_data_base64"  # in a service or cloud entry
BOTH = "give user_data (text) or user_data_base64, not both"
# Multiparts inside multiparts. Python's email parser recurses per level (and
# cloud-init's walk of the parts too): ~300 levels, 20 KB of gzip, raised
# RecursionError out of a launch. Real user data nests two or three.
MAX_MIME_DEPTH = 20

# What a kind of cloud does with user data (kinds/base.py `Declaration.user_data`).
ANY = "any"  # handed to the image as given (ec2: the image's agent decides)
CLOUD_INIT = "cloud-init"  # a cloud-init image: the formats cloud-init runs
SCRIPT = "script"  # no cloud-init: a `#!` script, run once at first boot as root
APPLIES = (ANY, CLOUD_INIT, SCRIPT)

# cloud-init's own "starts with" types (cloudinit/handlers/__init__.py), and the
# MIME subtype each gets as a part of a multipart.
_STARTS = {
    b"#!": "x-shellscript",
    b"#cloud-config-archive": "cloud-config-archive",
    b"#cloud-config-jsonp": "cloud-config-jsonp",
    b"#cloud-config": "cloud-config",
    b"#cloud-boothook": "cloud-boothook",
    b"#include-once": "x-include-once-url",
    b"#include": "x-include-url",
    b"#part-handler": "part-handler",
    b"#upstart-job": "upstart-job",
    b"## template: jinja": "jinja2",
}
_SPACE = re.compile(rb"[ \t\r\n]+")


class UserDataError(ValueError):
    """User data that cannot be taken; the message never quotes the data (it may be private)."""


def from_base64(text: str) -> bytes:
    """The bytes of a base64 text (line breaks and spaces allowed, as YAML folds them)."""
    try:
        return base64.b64decode(_SPACE.sub(b"", text.encode("ascii")), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise UserDataError("is not base64 (A-Z a-z 0-9 + / and = padding)") from None


def given(entry: Mapping[str, Any]) -> tuple[str | None, bytes | None]:
    """The key of a plan or cloud entry that gives user data, and the bytes: `user_data`
    (text, as UTF-8) or `user_data_base64` (any bytes; it wins when both are there, which
    the caller refuses with BOTH). UserDataError, naming the key, for base64 that is not."""
    if BASE64_KEY in entry:
        try:
            return BASE64_KEY, from_base64(entry[BASE64_KEY])
        except UserDataError as exc:
            raise UserDataError(f"{BASE64_KEY} {exc}") from None
    if TEXT_KEY in entry:
        return TEXT_KEY, str(entry[TEXT_KEY]).encode()
    return None, None


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def is_gzip(data: bytes) -> bool:
    return data[:2] == GZIP_MAGIC


def inflate(data: bytes, limit: int = MAX_INFLATED) -> bytes:
    """Gzip (every member, as cloud-init's gzip reader) inflated, never past `limit` bytes."""
    out = bytearray()
    rest = data
    while rest:
        unzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += unzip.decompress(rest, limit + 1 - len(out))
        except zlib.error:
            raise UserDataError("is not valid gzip") from None
        if len(out) > limit or unzip.unconsumed_tail:
            raise UserDataError(f"inflates to more than {limit} bytes (the limit on gzip"
                                " user data this project reads)")
        if not unzip.eof:
            raise UserDataError("is truncated gzip")
        rest = unzip.unused_data
    return bytes(out)


def content(data: bytes, limit: int = MAX_INFLATED) -> bytes:
    """What the data says: inflated if it is gzip (bounded), else itself."""
    return inflate(data, limit) if is_gzip(data) else data


def is_mime(data: bytes) -> bool:
    """A MIME message, as cloud-init tells one (a MIME-Version header in the first 4 KB)."""
    return b"mime-version:" in data[:4096].lower()


def parse_mime(text: bytes) -> Message:
    """A MIME text as a message; UserDataError when it nests past MAX_MIME_DEPTH."""
    too_deep = UserDataError(f"nests MIME multiparts deeper than {MAX_MIME_DEPTH} levels")
    try:
        message = email.message_from_bytes(text)
    except RecursionError:
        raise too_deep from None
    todo = [(message, 1)]
    while todo:  # not recursive: the depth is what is being checked
        msg, depth = todo.pop()
        if msg.is_multipart():
            if depth > MAX_MIME_DEPTH:
                raise too_deep
            todo += [(inner, depth + 1) for inner in msg.get_payload()]
    return message


def problem(data: bytes, applies: str) -> str | None:
    """Why a cloud whose kind `applies` user data so cannot take `data`, or None.

    Never quotes the data. `applies` empty: the kind applies none."""
    if len(data) > MAX_BYTES:
        return f"is {len(data)} bytes; at most {MAX_BYTES} (as EC2)"
    if applies == ANY:
        return None
    if applies not in APPLIES:
        return "is not applied on this kind of cloud (it has no first-boot agent)"
    try:
        text = content(data)
    except UserDataError as exc:
        return str(exc)
    if applies == SCRIPT:
        if not text.startswith(b"#!"):
            return ("must be a script starting with #! (plain or gzip): these instances"
                    " have no cloud-init, so cloud-config, MIME and other formats would"
                    " never run")
        return None
    if is_mime(text):
        try:
            parse_mime(text)
        except UserDataError as exc:
            return str(exc)
    elif not text.startswith(tuple(_STARTS)):
        return ("is not a format cloud-init runs (#!, #cloud-config, MIME multipart,"
                " #include, #cloud-boothook, ...; plain or gzip)")
    return None


def part(data: bytes, filename: str) -> Message:
    """One part of a cloud-init multipart, typed by how `data` starts, in base64 so its
    bytes arrive exactly (cloud-init inflates an application/x-gzip part itself)."""
    if is_gzip(data):
        maintype, subtype = "application", "x-gzip"
    else:
        maintype = "text"
        subtype = next((s for start, s in _STARTS.items() if data.startswith(start)), "plain")
    message = MIMENonMultipart(maintype, subtype)
    message.set_payload(base64.encodebytes(data).decode("ascii"))
    message["Content-Transfer-Encoding"] = "base64"
    message.add_header("Content-Disposition", "attachment", filename=filename)
    return message


def merged(user: bytes | None, own: list[tuple[str, bytes, str | None]]) -> bytes:
    """cloud-init multipart: the caller's user data first (its own parts when it is MIME;
    gzip inflated, bounded), then the project's parts `(filename, data, merge type)`.

    Later cloud-config parts win on the keys they set (a Merge-Type header can make
    lists append instead)."""
    message: Message = MIMEMultipart()
    if user is not None:
        text = content(user)
        if is_mime(text):
            given = parse_mime(text)
            if given.is_multipart():
                message = given  # its parts stay as they are; ours follow them
            else:
                message.attach(given)
        else:
            message.attach(part(text, "user-data"))
    for filename, data, merge in own:
        extra = part(data, filename)
        if merge:
            extra["Merge-Type"] = merge
        message.attach(extra)
    if message.get("MIME-Version") is None:
        message["MIME-Version"] = "1.0"
    return message.as_bytes()


def within_limit(data: bytes) -> bytes:
    """`data` as sent to a cloud: gzip'd when it passes MAX_BYTES (cloud-init inflates a
    gzip'd whole); UserDataError when even that is too big."""
    if len(data) <= MAX_BYTES:
        return data
    packed = gzip.compress(data, mtime=0)
    if len(packed) > MAX_BYTES:
        raise UserDataError(f"with the project's own part is {len(packed)} bytes even gzip'd;"
                            f" at most {MAX_BYTES}")
    return packed
