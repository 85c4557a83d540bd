"""What the package ships for operators: the systemd unit agrees with the command line
and points at docs the package installs."""

from __future__ import annotations

import glob
import tomllib
from pathlib import Path

from harness.process_node import REPO

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


def installed_files() -> set[str]:
    """The data files the wheel installs, as paths under the environment's prefix."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    data_files: dict[str, list[str]] = pyproject["tool"]["setuptools"]["data-files"]
    return {
        f"{folder}/{Path(path).name}"
        for folder, patterns in data_files.items()
        for pattern in patterns
        for path in glob.glob(pattern, root_dir=REPO)
    }


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
