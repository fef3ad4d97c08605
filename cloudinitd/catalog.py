"""The cloud catalog: `$CLOUDINITD_HOME/clouds.yml`, named clouds any plan can use.

    hotel:
      provider: ec2
      endpoint: https://svc.uc.futuregrid.org:8444
      region: nimbus
      credentials: {profile: hotel}
    ec2:
      provider: ec2
      region: us-east-1
      credentials: {access_key_env: AWS_KEY, secret_key_env: AWS_SECRET}

The catalog names credentials only by reference (a profile, the NAMES of
environment variables). A key that looks like it holds a secret itself
(secret, password, token, access_key, ...) is refused with file:line, so no
secret is ever copied into the run store or printed by `cloudinitd clouds`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from cloudinitd.errors import PlanError
from cloudinitd.plan.model import CloudSpec, Pos

CATALOG_FILE = "clouds.yml"
SECRET_KEY = re.compile(r"secret|password|passwd|token|private_key|access_key|api_key", re.I)
# Shapes of real credentials, caught even under an innocent-looking key.
SECRET_VALUE = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,}$|-----BEGIN [A-Z ]*PRIVATE KEY-----")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

KeyPath = tuple[str, ...]


def catalog_path(home: Path) -> Path:
    return Path(home) / CATALOG_FILE


def find_secrets(value: Any, path: KeyPath = ()) -> list[tuple[KeyPath, str]]:
    """(key path, reason) for every place in `value` that would hold a secret.

    A key ending in `_env` must hold an environment variable NAME; other keys
    named like a secret are refused outright. Plans' inline `clouds:` can
    reuse this check.
    """
    found: list[tuple[KeyPath, str]] = []
    if isinstance(value, dict):
        for key, sub in value.items():
            key_s = str(key)
            here = (*path, key_s)
            if key_s.endswith("_env"):
                if not (isinstance(sub, str) and ENV_NAME.match(sub)):
                    found.append((here, "must be the NAME of an environment variable"))
            elif SECRET_KEY.search(key_s):
                found.append(
                    (
                        here,
                        f"would hold a secret; keep it in an environment variable and write "
                        f"`{key_s}_env: VAR_NAME` (or use `credentials: {{profile: NAME}}`)",
                    )
                )
            else:
                found.extend(find_secrets(sub, here))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found.extend(find_secrets(sub, (*path, str(i))))
    elif isinstance(value, str) and SECRET_VALUE.search(value.strip()):
        found.append((path, "looks like a credential; name an environment variable instead"))
    return found


def _key_lines(node: yaml.Node, path: KeyPath = ()) -> dict[KeyPath, int]:
    """1-based line of every mapping key (and list item) under `node`, by key path."""
    lines: dict[KeyPath, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            here = (*path, str(key_node.value))
            lines[here] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, here))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            here = (*path, str(i))
            lines[here] = item.start_mark.line + 1
            lines.update(_key_lines(item, here))
    return lines


def _line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def parse_catalog(text: str, file: str) -> dict[str, CloudSpec]:
    """Parse catalog text; every problem is a PlanError naming file and line."""
    from cloudinitd.providers import KINDS

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise PlanError(f"invalid YAML: {exc.problem or exc}", file=file, line=line) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PlanError("the catalog must map cloud names to cloud entries", file=file, line=1)
    lines = _key_lines(root)
    clouds: dict[str, CloudSpec] = {}
    for name, entry in data.items():
        name_s = str(name)
        line = _line_of(lines, (name_s,))
        if not isinstance(entry, dict):
            raise PlanError(
                f"cloud {name_s!r}: expected a mapping with `provider:`", file=file, line=line
            )
        provider = entry.get("provider")
        if not isinstance(provider, str):
            raise PlanError(f"cloud {name_s!r}: `provider:` is missing", file=file, line=line)
        if provider not in KINDS:
            close = difflib.get_close_matches(provider, KINDS, n=1)
            hint = (
                f" (did you mean {close[0]!r}?)"
                if close
                else f" (known: {', '.join(sorted(KINDS))})"
            )
            raise PlanError(
                f"cloud {name_s!r}: unknown provider {provider!r}{hint}",
                file=file,
                line=_line_of(lines, (name_s, "provider")),
            )
        options = {str(k): v for k, v in entry.items() if k != "provider"}
        for path, reason in find_secrets(options, (name_s,)):
            raise PlanError(
                f"cloud {name_s!r}: {'.'.join(path[1:])} {reason}",
                file=file,
                line=_line_of(lines, path),
            )
        clouds[name_s] = CloudSpec(
            name=name_s, provider=provider, options=options, pos=Pos(file, line or 1)
        )
    return clouds


def load_catalog(home: Path) -> dict[str, CloudSpec]:
    """The clouds of `$CLOUDINITD_HOME/clouds.yml`; an empty catalog when the file is absent."""
    path = catalog_path(home)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PlanError(f"cannot read the cloud catalog: {exc.strerror}", file=str(path)) from None
    return parse_catalog(text, str(path))


def _credentials_summary(options: dict[str, Any]) -> str:
    creds = options.get("credentials")
    if not isinstance(creds, dict) or not creds:
        return "default" if options else "-"
    if "profile" in creds:
        return f"profile {creds['profile']}"
    names = [str(creds[k]) for k in ("access_key_env", "secret_key_env") if k in creds]
    return "env " + "/".join(names) if names else "-"


def describe_catalog(
    catalog: dict[str, CloudSpec], home: Path | None = None, check: bool = False
) -> list[dict[str, Any]]:
    """One row per cloud for `cloudinitd clouds` (text or --json). Never shows a secret.

    With `check=True` (needs `home`), each provider's `check()` runs and the
    row gets `check` (its summary) or `error` (its one-line failure).
    """
    rows = []
    for name, spec in sorted(catalog.items()):
        row: dict[str, Any] = {
            "name": name,
            "provider": spec.provider,
            "endpoint": spec.options.get("endpoint"),
            "region": spec.options.get("region"),
            "credentials": _credentials_summary(spec.options),
            "source": str(spec.pos) if spec.pos else None,
        }
        if check:
            from cloudinitd.errors import CloudinitdError
            from cloudinitd.providers import get_provider

            try:
                row["check"] = get_provider(spec, Path(home or ".")).check()
            except CloudinitdError as exc:
                row["error"] = str(exc)
        rows.append(row)
    return rows


def format_catalog(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of `describe_catalog` rows."""
    if not rows:
        return "no clouds in the catalog"
    cols = ("name", "provider", "endpoint", "region", "credentials")
    table = [[str(r.get(c) or "-") for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    out = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for r, t in zip(rows, table, strict=True):
        line = "  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip()
        if "check" in r:
            line += f"\n    ok: {r['check']}"
        if "error" in r:
            line += f"\n    error: {r['error']}"
        out.append(line)
    return "\n".join(out)
