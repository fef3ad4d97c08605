"""Reading original cloudinit.d INI files the way its Python 2 ConfigParser did.

Keys are lower-cased, duplicate sections and keys are allowed (the later
wins), `%(x)s` is interpolated only in values that contain `%(` (Python 2
left a lone `%` alone), ` ;` starts an inline comment. configparser keeps
no line numbers, so `line_of` finds them by scanning the file's text.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path

from cloudinitd.errors import PlanError
from cloudinitd.plan.limits import MAX_PLAN_BYTES, FileRefused, read_checked

_HEADER = re.compile(r"^\[([^\]]+)\]")
_KEY = re.compile(r"^([^\s:=#;][^:=]*?)\s*[:=]")


class _Py2Interpolation(configparser.BasicInterpolation):
    """Python 2's ConfigParser interpolated only values holding `%(`."""

    def before_get(self, parser, section, option, value, defaults):  # type: ignore[override]
        if "%(" not in value:
            return value
        return super().before_get(parser, section, option, value, defaults)


@dataclass
class IniFile:
    """One parsed file: its values and where each (section, key) stands."""

    path: Path
    parser: configparser.ConfigParser
    lines: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def sections(self) -> list[str]:
        return self.parser.sections()

    def has(self, section: str) -> bool:
        return self.parser.has_section(section)

    def items(self, section: str) -> list[tuple[str, str]]:
        """(key, value) pairs of a section, in file order, values interpolated."""
        out = []
        for key in self.parser.options(section):
            out.append((key, self.get(section, key)))
        return out

    def get(self, section: str, key: str) -> str | None:
        if not self.parser.has_option(section, key):
            return None
        try:
            return self.parser.get(section, key)
        except (configparser.InterpolationError, ValueError) as e:
            raise PlanError(f"[{section}] {key}: bad %(...)s interpolation: "
                            f"{str(e).splitlines()[0]}", str(self.path),
                            self.line(section, key)) from None

    def line(self, section: str, key: str | None = None) -> int | None:
        return self.lines.get((section, key)) or self.lines.get((section, None))

    def where(self, section: str, key: str | None = None) -> str:
        line = self.line(section, key)
        return f"{self.path}:{line}" if line else str(self.path)


def _scan_lines(text: str) -> dict[tuple[str, str | None], int]:
    """Line of every section header and key; a repeated one keeps its last line (it wins)."""
    out: dict[tuple[str, str | None], int] = {}
    section: str | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith(("#", ";")):
            continue
        head = _HEADER.match(raw)
        if head:
            section = head.group(1)
            out[(section, None)] = n
            continue
        if raw[0].isspace() or section is None:
            continue  # a continuation line
        key = _KEY.match(raw)
        if key:
            out[(section, key.group(1).strip().lower())] = n
    return out


def read_ini(path: Path, what: str, referenced_at: str | None = None) -> IniFile:
    """Parse `path`; a missing or malformed file is a PlanError naming where it was named."""
    where = f" (named at {referenced_at})" if referenced_at else ""
    try:  # checked on the opened file (a FIFO would block, /dev/zero never ends), bounded
        data = read_checked(path, MAX_PLAN_BYTES)
    except FileRefused as e:
        raise PlanError(f"cannot read {what}{where}: {e.strerror}", str(path)) from None
    return parse_ini(path, data)


def parse_ini(path: Path, data: bytes) -> IniFile:
    """INI text already read (`read_checked`); the original took any bytes (Python 2 str)."""
    text = data.decode("utf-8", errors="replace")
    parser = configparser.ConfigParser(
        interpolation=_Py2Interpolation(), strict=False, inline_comment_prefixes=(";",),
        empty_lines_in_values=False, default_section="DEFAULT")
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as e:
        raise PlanError("text before the first [section] header", str(path), e.lineno) from None
    except configparser.ParsingError as e:
        line = e.errors[0][0] if e.errors else None
        raise PlanError(f"not INI syntax: {str(e).splitlines()[-1].strip()}", str(path),
                        line) from None
    return IniFile(path, parser, _scan_lines(text))
