"""What the package ships for operators: a console script that runs the command line, and
a systemd unit that agrees with it and points at docs the package installs."""

from __future__ import annotations

import glob
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from harness.process_node import REPO

from trioraft import __version__
from trioraft.ops.cli import EXIT_REFUSED, EXIT_USAGE

UNIT = REPO / "config" / "trioraft@.service"
#: where the package's data files land, for the venv docs/systemd.md installs
PREFIX = "/opt/trioraft/"


def unit_values(key: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: the console scripts the package installs: name -> `module:callable`
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]


def installed_files() -> set[str]:
    """The data files the wheel installs, as paths under the environment's prefix."""
    data_files: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"]["data-files"]
    return {
        f"{folder}/{Path(path).name}"
        for folder, patterns in data_files.items()
        for pattern in patterns
        for path in glob.glob(pattern, root_dir=REPO)
    }


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_console_script_runs_the_command_line(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resolved as the installed script resolves it, and called as it calls it: no
    arguments, the command line in sys.argv."""
    entry = EntryPoint(name, SCRIPTS[name], "console_scripts").load()
    monkeypatch.setattr(sys, "argv", [name, "--version"])
    assert entry() == 0
    assert capsys.readouterr().out == f"trioraft {__version__}\n"


def test_the_unit_runs_the_console_script() -> None:
    [exec_start] = unit_values("ExecStart")
    assert Path(exec_start.split()[0]).name in SCRIPTS


def test_the_unit_documentation_is_installed_by_the_package() -> None:
    documentation = unit_values("Documentation")
    assert documentation
    for uri in documentation:
        assert uri.startswith(f"file://{PREFIX}"), uri
        assert uri.removeprefix(f"file://{PREFIX}") in installed_files(), uri


def test_the_package_installs_the_unit() -> None:
    assert "share/trioraft/trioraft@.service" in installed_files()


def test_the_unit_does_not_restart_refusals_and_bad_configs() -> None:
    [exec_start] = unit_values("ExecStart")
    assert exec_start.endswith(f" --refusal-status {EXIT_REFUSED}")
    [prevent] = unit_values("RestartPreventExitStatus")
    assert set(prevent.split()) == {str(EXIT_USAGE), str(EXIT_REFUSED)}


def test_the_sdist_carries_the_docs_and_the_unit() -> None:
    manifest = (REPO / "MANIFEST.in").read_text().splitlines()
    assert "graft docs" in manifest
    assert any(
        line.startswith("include ") and "config/trioraft@.service" in line.split()
        for line in manifest
    )
