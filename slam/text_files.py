"""Reading the text files users give (calibration, image lists, trajectories, configuration).

Text is UTF-8 (a byte order mark is dropped) or UTF-16 with a byte order mark, little or big
endian (what Windows Notepad writes). Anything else (binary data, UTF-16 without a byte order
mark, text holding NUL characters) is refused with one line naming the file and the first bad
byte. Line endings are normalised to ``\\n`` as :meth:`pathlib.Path.read_text` does.

YAML is parsed strictly: a key given twice in one mapping is an error, and every syntax error
names the file, the line and the column.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, NoReturn

import yaml

from slam.errors import TextFileError, V2DError

#: Byte order marks read as text, with the codec that decodes the bytes after them.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def read_text(path: str | Path) -> str:
    """The text of the file at ``path`` (see the module docstring for the encodings read).
    Raises TextFileError naming the file when it cannot be read or is not such text."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TextFileError(f"{path}: cannot read the file ({err.strerror or err})") from None
    return decode_text(data, str(path))


def decode_text(data: bytes, origin: str) -> str:
    """``data`` decoded as the text of a file (see the module docstring); ``origin`` names the
    file in the TextFileError raised for anything else."""
    bom, codec = next(((bom, codec) for bom, codec in _BYTE_ORDER_MARKS if data.startswith(bom)), (b"", "utf-8"))
    body = data[len(bom) :]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as err:
        _refuse(origin, data, len(bom) + err.start)
    nul = text.find("\0")
    if nul >= 0:
        _refuse(origin, data, len(bom) + len(text[:nul].encode(codec)))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _refuse(origin: str, data: bytes, offset: int) -> NoReturn:
    raise TextFileError(
        f"{origin}: not a UTF-8 or UTF-16 text file (byte 0x{data[offset]:02x} at offset {offset}); save it as UTF-8"
    )


def parse_yaml(text: str, origin: str, error: type[V2DError]) -> Any:
    """The YAML document ``text`` as plain Python values, read with the safe loader except that a
    key given twice in one mapping, or an impossible date, is an error. Raises ``error`` with one
    line ``ORIGIN:LINE:COLUMN: not valid YAML: PROBLEM``."""
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = ", ".join(part for part in (err.context, err.problem) if part) or err.__class__.__name__
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark is not None else origin
        raise error(f"{where}: not valid YAML: {problem}") from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        column = err.position - text.rfind("\n", 0, err.position)
        problem = f"unacceptable character #x{err.character:04x} ({err.reason})"
        raise error(f"{origin}:{line}:{column}: not valid YAML: {problem}") from None


class _StrictSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys and invalid dates as marked YAML errors."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """The mapping of ``node``; raises ConstructorError at a plain key given a second time
        (merge keys ``<<`` may repeat keys: they are defaults, not duplicates)."""
        first_lines: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in first_lines:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key_node.value!r} given twice (first on line {first_lines[key]})",
                    key_node.start_mark,
                )
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A date or time; raises ConstructorError at one that does not exist (month 13)."""
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as err:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid date {node.value!r} ({err})", node.start_mark
            ) from None


_StrictSafeLoader.add_constructor("tag:yaml.org,2002:timestamp", _StrictSafeLoader.construct_yaml_timestamp)
