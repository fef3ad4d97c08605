"""Recognising secrets where only references belong: key names, values, URLs.

Cloud entries (plans' `clouds:`, `clouds.yml`) may only *name* where a
credential lives (a profile, environment variable NAMES). These checks find
the places where someone pasted the credential itself, so that it is
refused at load time and never reaches the run store, a log or an output.
Messages built from these checks never include the value they looked at.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A key named like this holds a secret, wherever the word stands in the name
# (`aws_secret_access_key`, `session_token`, `DB_PASSWORD`, `apikey`).
SECRET_KEY = re.compile(
    r"secret|pass(?:word|wd|phrase)|token|private[_-]?key|access[_-]?key|api[_-]?key"
    r"|client[_-]?key|session[_-]?key|signing[_-]?key|credential[_-]?value",
    re.IGNORECASE,
)

# Shapes of real credentials, recognised in any text (free text included).
_CREDENTIAL_SHAPES = re.compile(
    r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{30,}"
    r"|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."  # a JWT
)
# Words of a name: `Custom`, `LTS`, `2024`. Random text splits into many short ones.
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_TOKENISH = re.compile(r"^[A-Za-z0-9+/=_-]+$")
_BASE64_JOIN = re.compile(r"[A-Za-z0-9][+/][A-Za-z0-9]")


def secret_key_name(name: str) -> bool:
    """True when a key's name says it holds a secret (case-insensitive, anywhere in the name)."""
    return bool(SECRET_KEY.search(name))


def _mixed(text: str) -> bool:
    return (
        any(c.islower() for c in text)
        and any(c.isupper() for c in text)
        and any(c.isdigit() for c in text)
    )


def _random_looking(text: str) -> bool:
    """Long, mixed-case-and-digit text that does not read as words (a key, not a name)."""
    alnum = "".join(c for c in text if c.isalnum())
    if len(alnum) < 16 or not _TOKENISH.match(text) or not _mixed(alnum):
        return False
    if _BASE64_JOIN.search(text) and not text.startswith("/"):
        return True  # base64 with '+' or '/' inside: a key, not a name or a path
    # Names run about one word per 4-6 characters; random keys far more often.
    ratio = len(_WORDS.findall(alnum)) / len(alnum)
    return len(alnum) >= 20 and ratio >= (0.33 if len(alnum) >= 32 else 0.4)


def looks_like_secret(text: str, *, name_like: bool = True) -> bool:
    """True when `text` looks like a credential rather than a name or a reference.

    `name_like=False` is for free text (user data): only unmistakable shapes
    count there, since scripts legitimately hold long base64 runs.
    """
    if _CREDENTIAL_SHAPES.search(text):
        return True
    if not name_like:
        return False
    return any(_random_looking(part) for part in re.split(r"[\s.:,;@]+", text) if part)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint (never quoting it), or None when it is fine."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "must be a URL like https://host[:port][/path]"
    if "@" in parts.netloc:
        return (
            "must not contain a user name or password (scheme://USER:PASSWORD@host); "
            "name the environment variables that hold the keys in `credentials:` instead"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be a URL like https://host[:port][/path]"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "must not have a query or fragment (they can carry signatures or tokens)"
    if looks_like_secret(parts.path.replace("/", " ")) or looks_like_secret(parts.netloc):
        return "looks like it contains a credential; put keys in environment variables"
    return None
