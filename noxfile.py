"""Sessions: `nox` runs tests, lint and typecheck; `nox -s sim -- --seeds 20000` runs the long
simulation; `nox -s nemesis -- ...` runs the long fault tests against real processes."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

DEV = ["pytest", "pytest-trio", "hypothesis", "redis"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install(".", *DEV)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install(".", "mypy", "nox", *DEV)
    session.run("mypy", "trioraft", "noxfile.py", *session.posargs)


@nox.session
def sim(session: nox.Session) -> None:
    """The seeded simulation over many seeds: `nox -s sim -- --seeds 20000 [--first-seed N]`."""
    session.install(".", *DEV)
    session.run("pytest", "tests/test_simulation.py", *session.posargs)


@nox.session
def nemesis(session: nox.Session) -> None:
    """Fault runs of real clusters (partitions need root): `nox -s nemesis -- --time 600
    --seed N --faults kill,pause,partition,...`; `-- --help` lists the options, and
    docs/testing.md says what a run does and where its results go."""
    session.install(".", *DEV)
    session.run("python", "-m", "nemesis", *session.posargs, env={"PYTHONPATH": "tests"})
