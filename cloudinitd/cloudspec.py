"""The schema of a cloud entry, per provider, and its one validator.

Every cloud entry, written in a plan's `clouds:` or in `clouds.yml`, passes
`validate_cloud` at load time; the run store re-checks what it records with
`recordable`. An entry holds *references* only: credentials are a profile
name or the NAMES of environment variables. Unknown keys are errors (with a
did-you-mean), and so are keys named like a secret, values shaped like a
credential and URLs carrying a user or password. No message built here
quotes a value from the entry, so a pasted secret is never echoed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from cloudinitd import kinds
from cloudinitd.bytesize import valid_disk_size
from cloudinitd.errors import PlanError, UsageError
from cloudinitd.kinds.base import CREDENTIALS as CREDENTIALS  # the shared credentials schema
from cloudinitd.kinds.base import Declaration
from cloudinitd.plan.model import CloudSpec, Pos
from cloudinitd.plan.yamlpos import line_of
from cloudinitd.secretcheck import looks_like_secret, secret_key_name, url_problem

CLOUD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def _entry(provider: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"provider": {"const": provider}, **properties},
        "required": ["provider"],
        "additionalProperties": False,
    }


# Every key each built-in provider reads from its cloud entry (and nothing else),
# as the kinds declare them (cloudinitd/kinds/).
PROVIDER_SCHEMAS: dict[str, dict[str, Any]] = {
    kind: _entry(kind, d.cloud_options) for kind, d in kinds.BUILTIN.items()
}
_FORMATS = FormatChecker(formats=())
_FORMATS.checks("disk-size")(valid_disk_size)
_VALIDATORS: dict[str, tuple[Declaration, Draft202012Validator]] = {}


def _validator(provider: str) -> Draft202012Validator | None:
    """The validator of a declared kind's entries, built once per declaration."""
    declaration = kinds.declared().get(provider)
    if declaration is None:
        return None
    cached = _VALIDATORS.get(provider)
    if cached is None or cached[0] is not declaration:
        schema = _entry(provider, declaration.cloud_options)
        cached = (declaration, Draft202012Validator(schema, format_checker=_FORMATS))
        _VALIDATORS[provider] = cached
    return cached[1]


def register_provider_schema(kind: str, properties: dict[str, Any]) -> None:
    """A provider outside the built-in kinds (a test double, a plug-in) describes its own keys.

    Its entries are then checked like any other; PROVIDER_SCHEMAS (and the kinds
    messages list) stay the built-in ones, whatever a process happened to import.
    """
    kinds.register(Declaration(kind=kind, cloud_options=properties))

SECRET_NAME_HINT = (
    "would hold a secret: keep it in an environment variable and name the variable "
    "(credentials: {access_key_env: VAR, secret_key_env: VAR}) or a profile "
    "(credentials: {profile: NAME})"
)
SECRET_VALUE_HINT = (
    "looks like a credential (a key, token or password); write only references here: "
    "environment variable names under credentials, or a profile"
)

Path = tuple[Any, ...]


def where(path: Sequence[Any]) -> str:
    """`credentials.profile`, `security_groups[1]`: a place inside an entry."""
    text = ""
    for p in path:
        if isinstance(p, int):
            text += f"[{p}]"
            continue
        name = str(p) if _PLAIN_KEY.match(str(p)) else repr(str(p))  # one line, always
        text += f".{name}" if text else name
    return text


def _scan(value: Any, path: Path, out: list[tuple[Path, str]]) -> None:
    """Secrets anywhere in `value`: by key name, by key or value shape, in the endpoint URL."""
    if isinstance(value, Mapping):
        for key, sub in value.items():
            here, name = (*path, key), str(key)
            if looks_like_secret(name):
                # The key itself is the secret: name only the place above it.
                out.append(
                    (here, f"{where(path) or 'the entry'} has a key that {SECRET_VALUE_HINT}")
                )
            elif secret_key_name(name) and not name.endswith("_env"):
                out.append((here, f"{where(here)} {SECRET_NAME_HINT}"))
            else:
                _scan(sub, here, out)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _scan(sub, (*path, i), out)
    elif isinstance(value, str):
        if path == ("endpoint",):
            problem = url_problem(value)
            if problem:
                out.append((path, f"endpoint {problem}"))
        elif looks_like_secret(value, name_like=path[:1] not in (("user_data",),
                                                                 ("user_data_base64",))):
            out.append((path, f"{where(path)} {SECRET_VALUE_HINT}"))


def _unknown(error: ValidationError) -> list[tuple[Path, str]]:
    path = tuple(error.absolute_path)
    known = sorted(k for k in error.schema.get("properties", {}) if k != "provider")
    inside = f" in {where(path)}" if path else ""
    out = []
    for key in error.instance:
        if key in error.schema.get("properties", {}):
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = (
            f" (did you mean {close[0]!r}?)"
            if close
            else (f" (known: {', '.join(known)})" if known else " (this provider takes no options)")
        )
        out.append(((*path, key), f"unknown key {str(key)!r}{inside}{hint}"))
    return out


def _message(error: ValidationError) -> str:
    """One line for a schema error, never quoting the value that failed."""
    at = where(error.absolute_path) or "the entry"
    schema = error.schema
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return f"missing key {missing[0]!r}" + (f" in {at}" if error.absolute_path else "")
    if error.validator in ("dependentRequired", "maxProperties") and "x-message" in schema:
        return f"{at}: {schema['x-message']}"
    if error.validator == "enum":
        return f"{at}: must be one of {', '.join(map(str, error.validator_value))}"
    if "x-expect" in schema:
        return f"{at}: expected {schema['x-expect']}"
    if error.validator == "type":
        return f"{at}: expected {error.validator_value}"
    return f"{at}: not valid ({error.validator})"


def entry_problems(provider: str, entry: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """(place, message) for everything wrong in an entry whose provider is known."""
    found: list[tuple[Path, str]] = []
    _scan(entry, (), found)
    if found:
        return found  # a pasted secret is the one thing to say about this entry
    validator = _validator(provider)
    assert validator is not None, provider  # callers checked the provider first
    for error in validator.iter_errors(entry):
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            found.extend(_unknown(error))
        else:
            found.append((tuple(error.absolute_path), _message(error)))
    kept: list[tuple[Path, str]] = []
    for path, message in found:  # one message per place, none inside a place already named
        if not any(path[: len(p)] == p for p, _ in kept):
            kept.append((path, message))
    return kept


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _provider_problem(entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return "expected a mapping with `provider:`"
    provider = entry.get("provider")
    if provider is None:
        return "`provider:` is missing"
    if isinstance(provider, str) and _validator(provider) is not None:
        return None
    kinds = sorted(PROVIDER_SCHEMAS)
    if not isinstance(provider, str) or looks_like_secret(provider) or len(provider) > 40:
        return f"provider must be one of {', '.join(kinds)}"
    close = difflib.get_close_matches(provider, kinds, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(kinds)})"
    return f"unknown provider {provider!r}{hint}"


def validate_cloud(
    name: str, entry: Any, file: str, line: int
) -> tuple[CloudSpec | None, list[PlanError]]:
    """A checked CloudSpec holding only the validated options, or the errors (by line).

    `line` is where the entry's name is written; an entry loaded with
    positions (a PosDict) gives each error the line of the place at fault.
    """

    def error(path: Path, message: str) -> PlanError:
        at = line_of(entry, path, default=line) if path else line
        return PlanError(f"cloud {name!r}: {message}", file, at)

    problem = (
        None
        if CLOUD_NAME.match(name) and not looks_like_secret(name)
        else ("a cloud name is letters, digits, '_', '.' and '-' (at most 64)")
    )
    if problem:
        return None, [PlanError(problem, file, line)]
    problem = _provider_problem(entry)
    if problem:
        path: Path = ("provider",) if isinstance(entry, Mapping) and "provider" in entry else ()
        return None, [error(path, problem)]
    errors = [error(p, m) for p, m in entry_problems(entry["provider"], entry)]
    if errors:
        return None, sorted(errors, key=lambda e: e.line or 0)
    options = {str(k): _plain(v) for k, v in entry.items() if k != "provider"}
    return CloudSpec(name, entry["provider"], options, Pos(file, line)), []


def check_options(cloud: CloudSpec) -> dict[str, Any]:
    """A CloudSpec's options re-checked (one PlanError at its position), as plain data."""
    pos = cloud.pos
    spec, errors = validate_cloud(
        cloud.name,
        {"provider": cloud.provider, **cloud.options},
        pos.file if pos else "cloud entry",
        pos.line if pos else 0,
    )
    if errors:
        first = errors[0]
        raise PlanError(first.message, first.file if pos else None, first.line or None)
    assert spec is not None
    return spec.options


def recordable(clouds: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the run store may keep of cloud entries: `{name: {provider, options}}`, re-checked.

    Raises UsageError (the message names the cloud and the place, never a
    value) rather than let anything unvalidated reach the store.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, record in clouds.items():
        options = record.get("options") or {} if isinstance(record, Mapping) else None
        if not isinstance(record, Mapping) or not isinstance(options, Mapping):
            raise UsageError(f"cloud {name!r}: a record is {{provider, options: {{...}}}}")
        if "provider" in options:
            raise UsageError(f"cloud {name!r}: a record is {{provider, options: {{...}}}}")
        entry = {"provider": record.get("provider"), **options}
        spec, errors = validate_cloud(str(name), entry, "run record", 0)
        if errors:
            raise UsageError(f"refusing to record {errors[0].message}")
        assert spec is not None
        out[spec.name] = {"provider": spec.provider, "options": spec.options}
    return out
