"""cli.parse_flags: a bad --config override is one line naming the flag and the key.

The unknown key comes from ml_collections' own list of overrides (two private methods
of config_flags' flag), not from the text of its KeyError; these tests pin that on the
ml_collections version requirements.txt names, so a new version is checked here first.
"""

import importlib.metadata
import os
import re

import pytest
from absl import flags
from ml_collections import config_flags

from wat_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "experiments", "toy.py") + ":smoke"
# ml_collections 1.1.0 loads config files with importlib's deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def _pinned_versions() -> set[str]:
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        return set(re.findall(r"^ml[-_]collections==([\w.]+)", f.read(), re.MULTILINE))


def test_the_installed_ml_collections_is_the_pinned_one_with_the_methods_we_read():
    pinned = _pinned_versions()
    assert pinned == {"1.1.0"}, "a new pin: check unknown_key against it, then update here"
    assert importlib.metadata.version("ml_collections") in pinned
    flag = config_flags.config_flags._ConfigFlag  # what DEFINE_config_file defines
    assert all(
        callable(getattr(flag, m)) for m in ("_GetArgv", "_GetOverrides", "_FindConfigSpecified")
    )


def _error_line(capsys, *args) -> str:
    """The one line parse_flags prints for `prog --config=TOY args...` (a fresh flag set)."""
    values, argv = flags.FlagValues(), ["prog", *args]
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
    )
    with pytest.raises(SystemExit) as stop:
        cli.parse_flags(argv, values)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0][len("error: ") :]


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "--config.model.widht=8",
            "--config.model.widht: unknown config key 'widht'; "
            'did you mean "width" instead of "widht"?',
        ),
        ("--config.modl.width=8", "--config.modl.width: unknown config key 'modl'; did you mean"),
        ("--config.zzz=8", "--config.zzz: unknown config key 'zzz'"),
        (
            "--config.model.width.x=8",
            "--config.model.width.x: unknown config key 'x' (config.model.width is a value",
        ),
    ],
)
def test_an_unknown_key_names_its_flag_and_the_nearest_key(capsys, override, message):
    assert _error_line(capsys, f"--config={TOY}", override).startswith(message)
    # The config given as a separate argument is found the same way.
    assert _error_line(capsys, "--config", TOY, override).startswith(message)


def test_a_known_key_parses_and_a_bad_value_is_one_line(capsys):
    values, argv = flags.FlagValues(), ["prog", f"--config={TOY}", "--config.model.width=48"]
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
    )
    cli.parse_flags(argv, values)
    assert values.config.model.width == 48
    line = _error_line(capsys, f"--config={TOY}", "--config.model.width=abc")
    assert "--config.model.width=abc" in line and "invalid literal" in line


def test_a_missing_config_file_is_one_line(capsys, tmp_path):
    line = _error_line(capsys, f"--config={tmp_path / 'nope.py'}")
    assert line.startswith("--config: ") and "nope.py" in line
