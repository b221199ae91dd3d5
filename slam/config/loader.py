"""Configuration as a tree of dataclasses: defaults in code, loadable from YAML, overridable from
the command line with ``section.field=value``, and recorded as a plain dict (stats.json).

Works with any dataclass tree whose leaves are bool, int, float, str, None-able versions of those,
or tuples/lists of them.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from slam.errors import ConfigError
from slam.text_files import parse_yaml, read_text

log = logging.getLogger(__name__)

T = TypeVar("T")


def to_dict(config: Any) -> dict:
    """The configuration as nested plain dicts (JSON/YAML friendly)."""
    return dataclasses.asdict(config)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert a YAML value to a field's annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        assert isinstance(annotation, type)  # a field's annotation: the dataclass type itself
        return from_dict(annotation, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{k}]") for k, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and type(value) is annotation:
        return value
    raise ConfigError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build ``cls`` from a (partial) dict: missing fields keep their defaults; unknown ones are
    errors naming the field."""
    return _merge(cls(), data, where)


def _merge(base: Any, data: dict, where: str) -> Any:
    """``base`` with the fields given in ``data`` replaced (recursively)."""
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    unknown = set(data) - names
    if unknown:
        unknown_names = ", ".join(
            sorted(repr(str(key)) for key in unknown)
        )  # YAML keys may be numbers or hold newlines
        raise ConfigError(f"{where}: unknown field(s) {unknown_names}; known: {', '.join(sorted(names))}")
    changes = {}
    for name, value in data.items():
        current = getattr(base, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[name] = _merge(current, value, f"{where}.{name}")
        else:
            changes[name] = _coerce(value, hints[name], f"{where}.{name}")
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as err:  # the dataclass's own checks of its fields against each other
        raise ConfigError(f"{where}: {err}") from None


def load(config: T, path: str | Path) -> T:
    """``config`` updated with the YAML file at ``path`` (a partial tree). Raises ConfigError naming
    the file, with the line and column of a YAML syntax error or of a key given twice."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    data = parse_yaml(read_text(path), str(path), ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return _merge(config, data, str(path))


def override(config: T, *assignments: str) -> T:
    """``config`` with ``section.field=value`` assignments applied together (so that fields
    checked against each other can change at once); a field assigned twice to different values
    takes the last, with a warning. Values are parsed as YAML, except for text fields, which take the
    text as written (YAML reads yes/no/on/off as booleans)."""
    data: dict = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override {assignment!r}: expected section.field=value")
        if _is_text_field(config, parts):
            value: Any = text.strip()
        else:
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise ConfigError(f"override {assignment!r}: value is not valid YAML") from None
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {assignment!r}: {part} is set as a value and as a section")
        if parts[-1] in node and node[parts[-1]] != value:
            log.warning("%s is set twice (%r, then %r): the last one is used", key.strip(), node[parts[-1]], value)
        node[parts[-1]] = value
    return _merge(config, data, "override")


def configure(config: T, path: str | Path | None, assignments: Sequence[str]) -> T:
    """What a command line asks for: ``config`` (the defaults) updated with the YAML file at
    ``path`` when one is given (``--config``), then with the ``assignments`` (``--set``)."""
    if path:
        config = load(config, path)
    return override(config, *assignments)


def _is_text_field(config: Any, parts: list[str]) -> bool:
    """Whether the field at ``parts`` of the dataclass tree is annotated as text (str or str | None)."""
    node = config
    for part in parts[:-1]:
        node = getattr(node, part, None)
        if not dataclasses.is_dataclass(node):
            return False
    if not dataclasses.is_dataclass(node) or parts[-1] not in {f.name for f in dataclasses.fields(node)}:
        return False
    annotation = typing.get_type_hints(type(node))[parts[-1]]
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    return str in options
