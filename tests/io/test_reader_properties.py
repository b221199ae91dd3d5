"""Property tests of every reader of a user's text file: whatever the file holds (random bytes,
random text, lines of numbers and words of the format gone wrong, random YAML), reading it either
succeeds or raises the project's V2DError as one line naming the file; never another exception."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slam.config.loader import load, to_dict
from slam.config.schema import SystemConfig
from slam.errors import V2DError
from slam.geometry.camera import Camera
from slam.io.sources.euroc import (
    camera_from_sensor_yaml,
    read_csv,
    read_groundtruth,
    read_sensor_yaml,
    sensor_to_body,
)
from slam.io.sources.image_folder import read_intrinsics_lines, read_timestamps
from slam.io.sources.kitti import read_projections
from slam.io.sources.tum import read_file_list
from slam.io.trajectory import detect_format, read_kitti, read_trajectory, read_tum

EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _euroc_sensor(path: Path) -> Any:
    sensor = read_sensor_yaml(path)
    return camera_from_sensor_yaml(sensor, path, 640, 480), sensor_to_body(sensor, path)


#: Every reader of a text input file, by name.
READERS: dict[str, Callable[[Path], Any]] = {
    "calibration": Camera.from_file,
    "intrinsics lines": lambda p: read_intrinsics_lines(p, 640, 480),
    "tum image list": read_file_list,
    "tum ground truth": read_tum,
    "kitti poses": read_kitti,
    "trajectory (auto)": read_trajectory,
    "trajectory format": detect_format,
    "timestamps": lambda p: read_timestamps(p, 2),
    "kitti calib": read_projections,
    "euroc csv": lambda p: read_csv(p, 2),
    "euroc ground truth": read_groundtruth,
    "euroc sensor yaml": _euroc_sensor,
    "config yaml": lambda p: load(SystemConfig(), p),
}

_number_texts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["0", "1", "-1", "1e309", "-inf", "nan", "NaN", "0x10", "1_000", "1.5e-320", "", "."]),
)
_words = st.one_of(
    _number_texts,
    st.sampled_from(["#", "P0:", "P2:", ":", ",", "rgb/1.png", "x", "-", "[", "]", "{", "}", "'", '"', "\\"]),
    st.text(max_size=6),
)
#: Lines of numbers and words, separated as the formats separate them (or not quite).
_lines = st.lists(
    st.lists(_words, min_size=0, max_size=14).flatmap(
        lambda words: st.sampled_from([" ", ",", "\t", ", ", ""]).map(lambda sep: sep.join(words))
    ),
    max_size=8,
).map("\n".join)

_yaml_keys = st.sampled_from(
    [
        "backend",
        "frontend",
        "modules",
        "window",
        "threads",
        "mode",
        "intrinsics",
        "distortion_coefficients",
        "distortion_model",
        "camera_model",
        "T_BS",
        "data",
        "x",
    ]
)
_yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.sampled_from(["pinhole", "thread"])
)
#: Random trees of the keys the YAML readers look for, written as YAML.
_yaml_documents = st.recursive(
    _yaml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=16), st.dictionaries(_yaml_keys, children, max_size=5)),
    max_leaves=24,
).map(lambda tree: yaml.safe_dump(tree, default_flow_style=None))
_numbers = st.one_of(st.integers(min_value=-(10**400), max_value=10**400), st.floats(), st.sampled_from([0, 1, 500]))
#: Configuration trees: the schema's sections and fields (any section's field in any section).
_sections = sorted(to_dict(SystemConfig()))
_fields = sorted({name for section in to_dict(SystemConfig()).values() for name in section})
_config_documents = st.dictionaries(
    st.one_of(st.sampled_from(_sections), _yaml_scalars),
    st.one_of(st.dictionaries(st.sampled_from(_fields), st.one_of(_yaml_scalars, _numbers)), _yaml_scalars),
    max_size=4,
).map(yaml.safe_dump)
#: EuRoC sensor descriptions: the keys read, with lists of numbers of any length or other values.
_sensor_values = st.one_of(_yaml_scalars, st.lists(_numbers, max_size=17))
_sensor_documents = st.dictionaries(
    _yaml_keys, st.one_of(_sensor_values, st.dictionaries(st.just("data"), _sensor_values)), max_size=6
).map(yaml.safe_dump)
#: YAML-looking text: keys, values, indentation and flow syntax in random order.
_yaml_fragments = st.lists(
    st.tuples(
        st.sampled_from(["", "  ", "    ", "- ", "\t"]),
        _yaml_keys,
        st.sampled_from([": ", ":", " ", ": [", ": {", ": &a ", ": *a ", ": !!binary ", ": !!python/none "]),
        _words,
    ).map("".join),
    max_size=8,
).map("\n".join)

#: File contents: random bytes, or text of any of the kinds above in an encoding the readers take.
_contents = st.one_of(
    st.binary(max_size=200),
    st.tuples(
        st.one_of(
            st.text(max_size=120), _lines, _yaml_documents, _yaml_fragments, _config_documents, _sensor_documents
        ),
        st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    ).map(lambda text_encoding: text_encoding[0].encode(text_encoding[1], errors="surrogatepass")),
)


def _reads_or_refuses_in_one_line(reader: Callable[[Path], Any], data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.txt"
        path.write_bytes(data)
        try:
            reader(path)
        except V2DError as err:
            message = str(err)
            assert str(path) in message, message
            assert "\n" not in message, message


@pytest.mark.parametrize("name", READERS)
@EXAMPLES
@given(data=_contents)
def test_a_reader_succeeds_or_raises_one_v2d_error_line(name, data):
    _reads_or_refuses_in_one_line(READERS[name], data)
