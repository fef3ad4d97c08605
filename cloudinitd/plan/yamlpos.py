"""YAML loading that remembers where every mapping key, value and list item was written.

Mappings load as `PosDict`, sequences as `PosList` (plain dict / list
subclasses, so jsonschema and ordinary code treat them as usual); scalars
load as plain Python values. Lines are 1-based.
"""

from __future__ import annotations

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


def _problem(exc: yaml.YAMLError) -> tuple[str, int | None]:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        text = exc.problem or exc.context or "bad YAML"
        if exc.context and exc.problem:
            text = f"{exc.problem} ({exc.context})"
        return " ".join(str(text).split()), (mark.line + 1) if mark else None
    return " ".join(str(exc).split()), None


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.done: dict[int, Any] = {}  # anchors: one object per node

    def build(self, node: yaml.Node) -> Any:
        if id(node) in self.done:
            return self.done[id(node)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            out = PosList(line=node.start_mark.line + 1)
            self.done[id(node)] = out
            for item in node.value:
                out.append(self.build(item))
                out.item_lines.append(item.start_mark.line + 1)
            return out
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode) -> PosDict:
        written = {id(k) for k, _ in node.value}
        self.loader.flatten_mapping(node)  # resolves `<<:` merge keys (merged ones come first)
        out = PosDict(line=node.start_mark.line + 1)
        self.done[id(node)] = out
        explicit: set[Any] = set()
        for key_node, value_node in node.value:
            key = self.build(key_node)
            line = key_node.start_mark.line + 1
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
            out.value_lines[key] = value_node.start_mark.line + 1
        return out


def load_yaml(text: str, file: str) -> Any:
    """Parse one YAML document; a YAML problem becomes PlanError(file, line)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        return _Builder(loader, file).build(node)
    except yaml.YAMLError as exc:
        message, line = _problem(exc)
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
