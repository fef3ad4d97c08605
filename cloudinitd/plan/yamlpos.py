"""YAML loading that remembers where every mapping key, value and list item was written.

Mappings load as `PosDict`, sequences as `PosList` (plain dict / list
subclasses, so jsonschema and ordinary code treat them as usual); scalars
load as plain Python values. Lines are 1-based.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

import yaml

from cloudinitd.errors import PlanError


class PosDict(dict):
    """A mapping plus the line of each key and value (`key_lines`, `value_lines`)."""

    line: int
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]

    def __init__(self, *args: Any, line: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.line = line
        self.key_lines = {}
        self.value_lines = {}

    def key_line(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)

    def value_line(self, key: Any) -> int:
        return self.value_lines.get(key, self.key_line(key))


class PosList(list):
    """A sequence plus the line of each item (`item_lines`)."""

    line: int
    item_lines: list[int]

    def __init__(self, *args: Any, line: int = 0):
        super().__init__(*args)
        self.line = line
        self.item_lines = []

    def item_line(self, index: int) -> int:
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


# Limits on what one plan may make the loader build (README "Limits").
MAX_DEPTH = 100  # nested mappings / lists
MAX_NODES = 200_000  # values after expanding every alias (`*a`) and merge (`<<:`)


class Lines:
    """Line numbers as editors count them: only a newline character ends a line.

    PyYAML also breaks lines at U+2028, U+2029 and U+0085, which would shift
    every later line number; lines are computed from character offsets instead.
    """

    def __init__(self, text: str):
        self.starts = [0]
        at = text.find("\n")
        while at != -1:
            self.starts.append(at + 1)
            at = text.find("\n", at + 1)

    def line(self, index: int) -> int:
        return bisect.bisect_right(self.starts, index)

    def column(self, index: int) -> int:
        return index - self.starts[self.line(index) - 1] + 1

    def of(self, mark: Any) -> int:
        return self.line(mark.index)


class _DeepError(yaml.YAMLError):
    def __init__(self, mark: Any):
        self.mark = mark


class _PyLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH before it can exhaust the stack."""

    def __init__(self, text: str):
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _DeepError(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# libyaml parses several times faster (it bounds its own nesting at 1000 levels; the
# depth limit here is checked on the composed nodes); the pure-Python loader stands in.
_Loader: Any = getattr(yaml, "CSafeLoader", None) or _PyLoader


def _printable(char: str) -> str:
    return repr(char) if char.isprintable() else f"U+{ord(char):04X}"


def _problem(exc: yaml.YAMLError, text: str, lines: Lines) -> tuple[str, int | None]:
    if isinstance(exc, _DeepError):
        return f"nested more than {MAX_DEPTH} levels deep", lines.of(exc.mark)
    if isinstance(exc, yaml.reader.ReaderError):
        at = exc.position
        if _Loader is not _PyLoader:  # libyaml counts UTF-8 bytes, not characters
            at = len(text.encode("utf-8")[:at].decode("utf-8", errors="ignore"))
        char = text[at] if 0 <= at < len(text) else ""
        where = f"column {lines.column(at)}"
        return (f"character {_printable(char)} is not allowed in YAML ({where})",
                lines.line(at))
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit (1000)
            return f"nested more than {MAX_DEPTH} levels deep", lines.of(mark) if mark else None
        text = exc.problem or exc.context or "bad YAML"
        if exc.context and exc.problem:
            text = f"{exc.problem} ({exc.context})"
        return " ".join(str(text).split()), lines.of(mark) if mark else None
    return " ".join(str(exc).split()), None


def _expanded_size(root: yaml.Node, lines: Lines, file: str) -> None:
    """Refuse a document nested too deep, or whose aliases would expand past MAX_NODES
    (or loop back on themselves), before anything recursive walks it.

    A "billion laughs" plan is a few lines of anchors each repeating the one
    before; sizes are counted per node once, so counting costs what the text does.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    busy: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        kids: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        if children_done:
            busy.discard(key)
            total = 1 + sum(size[id(k)] for k in kids)
            if total > MAX_NODES:
                raise PlanError(
                    f"bad YAML: too many values once aliases are expanded (more than {MAX_NODES})",
                    file, lines.of(node.start_mark))
            size[key] = total
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            if height[key] > MAX_DEPTH:
                raise PlanError(f"bad YAML: nested more than {MAX_DEPTH} levels deep", file,
                                lines.of(node.start_mark))
            continue
        if key in busy:
            raise PlanError("bad YAML: an alias refers to the value that contains it", file,
                            lines.of(node.start_mark))
        busy.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in busy:
                raise PlanError("bad YAML: an alias refers to the value that contains it", file,
                                lines.of(kid.start_mark))
            if id(kid) not in size:
                stack.append((kid, False))


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str, lines: Lines):
        self.loader = loader
        self.file = file
        self.lines = lines
        self.done: dict[int, Any] = {}  # anchors: one object per node

    def build(self, node: yaml.Node) -> Any:
        if id(node) in self.done:
            return self.done[id(node)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            out = PosList(line=self.lines.of(node.start_mark))
            self.done[id(node)] = out
            for item in node.value:
                out.append(self.build(item))
                out.item_lines.append(self.lines.of(item.start_mark))
            return out
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as exc:  # a scalar Python refuses, e.g. an integer of 5000 digits
            raise PlanError(f"bad YAML value: {exc}", self.file,
                            self.lines.of(node.start_mark)) from None

    def _mapping(self, node: yaml.MappingNode) -> PosDict:
        written = {id(k) for k, _ in node.value}
        self.loader.flatten_mapping(node)  # resolves `<<:` merge keys (merged ones come first)
        out = PosDict(line=self.lines.of(node.start_mark))
        self.done[id(node)] = out
        explicit: set[Any] = set()
        for key_node, value_node in node.value:
            key = self.build(key_node)
            line = self.lines.of(key_node.start_mark)
            try:
                hash(key)
            except TypeError:
                raise PlanError("a mapping key must be a plain value", self.file, line) from None
            if id(key_node) in written:
                if key in explicit:
                    raise PlanError(
                        f"duplicate key {key!r} (first at line {out.key_lines[key]})",
                        self.file,
                        line,
                    )
                explicit.add(key)
            out[key] = self.build(value_node)
            out.key_lines[key] = line
            out.value_lines[key] = self.lines.of(value_node.start_mark)
        return out


def load_yaml(text: str, file: str) -> Any:
    """Parse one YAML document; a YAML problem becomes PlanError(file, line)."""
    lines = Lines(text)
    try:
        loader = _Loader(text)  # the reader checks every character here
    except yaml.YAMLError as exc:
        message, line = _problem(exc, text, lines)
        raise PlanError(f"bad YAML: {message}", file, line) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, lines, file)
        return _Builder(loader, file, lines).build(node)
    except yaml.YAMLError as exc:
        message, line = _problem(exc, text, lines)
        raise PlanError(f"bad YAML: {message}", file, line) from None
    finally:
        loader.dispose()


def line_of(root: Any, path: Iterable[Any], *, default: int = 1) -> int:
    """Line of the element reached by `path` (keys / indexes) from `root`.

    For a mapping entry this is the line of its key, so a message points at
    the key that holds the offending value.
    """
    line = getattr(root, "line", default) or default
    node = root
    for step in path:
        if isinstance(node, PosDict) and step in node:
            line = node.key_line(step)
            node = node[step]
        elif isinstance(node, PosList) and isinstance(step, int) and 0 <= step < len(node):
            line = node.item_line(step)
            node = node[step]
        else:
            break
    return line
