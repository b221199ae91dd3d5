"""Configuration trees: defaults, YAML files, command-line overrides, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from slam.config.loader import from_dict, load, override, to_dict
from slam.config.schema import SystemConfig
from slam.errors import ConfigError
from slam.text_files import parse_yaml


@dataclass(frozen=True)
class Inner:
    window: int = 8
    scale: float = 1.0
    name: str = "lite"
    weights: str | None = None
    size: tuple[int, int] = (240, 320)


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    threads: int = 2
    verbose: bool = False


def test_defaults_and_partial_dict():
    config = from_dict(Outer, {"inner": {"window": 5}, "verbose": True})
    assert config == Outer(Inner(window=5), verbose=True)
    assert to_dict(config)["inner"] == {"window": 5, "scale": 1.0, "name": "lite", "weights": None, "size": (240, 320)}


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  scale: 2\n  size: [192, 256]\nthreads: 4\n")
    config = load(Outer(), path)
    assert config.inner.scale == 2.0 and isinstance(config.inner.scale, float)
    assert config.inner.size == (192, 256) and config.threads == 4 and config.inner.window == 8
    config = override(config, "inner.weights=models/lite.pt")
    config = override(config, "inner.window=12")
    assert config.inner.weights == "models/lite.pt" and config.inner.window == 12 and config.inner.scale == 2.0


@pytest.mark.parametrize(
    "config, assignment, message",
    [
        (Outer, "inner.windw=3", "unknown field"),
        (Outer, "inner.window=three", "expected int"),
        (Outer, "threads", "expected section.field=value"),
        (Outer, "verbose=1", "expected bool"),
        (Outer, "inner=5", "expected a section"),
        # the system's own consistency checks
        (SystemConfig, "backend.mode=sometimes", "backend.mode must be"),
        (SystemConfig, "backend.window=1", "backend.window and frontend.init_frames"),
        (SystemConfig, "frontend.refine_keyframes=-1", "frontend.refine_keyframes >= 0"),
        (SystemConfig, "backend.bundle_pool=3", "backend.bundle_pool must be 1, 2, 4 or 8"),
        (SystemConfig, "frontend.init_depth=20", "init_depth"),
    ],
)
def test_bad_overrides_name_the_problem(config, assignment, message):
    with pytest.raises(ConfigError, match=message):
        override(config(), assignment)


def test_a_field_set_twice_takes_the_last_value_with_a_warning(caplog):
    config = override(SystemConfig(), "backend.window=6", "backend.window=7", "backend.loops=true")
    assert config.backend.window == 7
    assert "backend.window is set twice (6, then 7): the last one is used" in caplog.text
    caplog.clear()
    override(SystemConfig(), "backend.window=6", "backend.window=6")  # the same value: nothing to say
    assert "set twice" not in caplog.text


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(Outer(), tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(Outer(), bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(Outer(), listed)


def test_words_yaml_reads_as_booleans_stay_strings_for_string_fields():
    assert override(Outer(), "inner.name=off").inner.name == "off"
    assert override(Outer(), "verbose=yes").verbose is True


def test_overrides_apply_together():
    @dataclass(frozen=True)
    class Ranged:
        low: float = 0.0
        high: float = 1.0

        def __post_init__(self):
            if not self.low < self.high:
                raise ConfigError(f"need low < high, got {self.low}, {self.high}")

    assert override(Ranged(), "low=5", "high=10") == Ranged(5.0, 10.0)
    with pytest.raises(ConfigError, match="need low < high"):
        override(Ranged(), "low=5")


@pytest.mark.parametrize(
    "text, message",
    [
        ("inner:\n  window: 5\n  name: [lite\n", r":4:1: not valid YAML: while parsing a flow sequence, expected ','"),
        ("inner:\n  window: 5\n window: 6\n", r":3:2: not valid YAML: .*expected <block end>"),
        ("threads: 2\n\tverbose: true\n", r":2:1: not valid YAML: .*found character '\\t'"),
        ("inner:\n  window: 5\n  window: 6\n", r":3:3: not valid YAML: key 'window' given twice \(first on line 2\)"),
        ("threads: 2\ninner: {window: 5}\nthreads: 3\n", r":3:1: not valid YAML: key 'threads' given twice"),
        ("threads: 2\nwhen: 2001-13-45\n", r":2:7: not valid YAML: invalid date '2001-13-45'"),
    ],
)
def test_yaml_errors_give_the_line_and_column_and_duplicate_keys_are_refused(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^{path}{message}") as caught:
        load(Outer(), path)
    assert "\n" not in str(caught.value)


def test_yaml_merge_keys_may_repeat_a_key_as_an_override():
    text = "base: &base {window: 5, name: paper}\ninner:\n  <<: *base\n  window: 6\n"
    assert parse_yaml(text, "merge.yaml", ConfigError)["inner"] == {"window": 6, "name": "paper"}
