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

Each entry passes the same per-provider schema as a plan's `clouds:`
(`cloudinitd.cloudspec`): credentials are named only by reference (a
profile, the NAMES of environment variables); unknown keys, keys named like
a secret, values shaped like a credential and URLs with a user or password
are refused with file:line, so no secret is ever copied into the run store
or printed by `cloudinitd clouds`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloudinitd.cloudspec import validate_cloud
from cloudinitd.errors import PlanError
from cloudinitd.plan.model import CloudSpec
from cloudinitd.plan.yamlpos import load_yaml

CATALOG_FILE = "clouds.yml"


def catalog_path(home: Path) -> Path:
    return Path(home) / CATALOG_FILE


def parse_catalog(text: str, file: str) -> dict[str, CloudSpec]:
    """Parse catalog text; the first problem (by line) is a PlanError naming file and line."""
    data = load_yaml(text, file)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PlanError("the catalog must map cloud names to cloud entries", file=file, line=1)
    clouds: dict[str, CloudSpec] = {}
    errors: list[PlanError] = []
    for name, entry in data.items():
        spec, found = validate_cloud(str(name), entry, file, data.key_line(name))
        errors.extend(found)
        if spec is not None:
            clouds[spec.name] = spec
    if errors:
        raise min(errors, key=lambda e: e.line or 0)
    return clouds


def load_catalog(home: Path) -> dict[str, CloudSpec]:
    """The clouds of `$CLOUDINITD_HOME/clouds.yml`; an empty catalog when the file is absent."""
    path = catalog_path(home)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise PlanError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from None
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
            from cloudinitd.providers import get_provider

            try:
                row["check"] = get_provider(spec, Path(home or ".")).check()
            except Exception as exc:  # noqa: BLE001 (any failure is this cloud's row, not the command's)
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
