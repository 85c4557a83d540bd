"""constraints.txt, which the nox sessions install from, pins every dependency the package
declares (runtime, dev and the plot extra) at one exact version that the declaration allows."""

from __future__ import annotations

import tomllib

from harness.process_node import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def pins() -> dict[str, Version]:
    """The pinned version of each package, by canonical name."""
    pinned: dict[str, Version] = {}
    for number, line in enumerate((REPO / "constraints.txt").read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        name, separator, version = line.partition("==")
        assert separator, f"constraints.txt:{number}: not an exact pin: {line!r}"
        assert canonicalize_name(name) not in pinned, f"constraints.txt:{number}: pinned twice"
        pinned[canonicalize_name(name)] = Version(version)
    return pinned


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    requirements = project["dependencies"] + [r for extra in extras for r in extra]
    return [Requirement(requirement) for requirement in requirements]


def test_every_declared_dependency_is_pinned_within_its_declared_range() -> None:
    pinned = pins()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name]), (
            f"constraints.txt pins {requirement.name} {pinned[name]}, outside {requirement}"
        )
