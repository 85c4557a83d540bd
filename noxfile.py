"""Sessions: `nox` runs tests (all but those marked slow), lint and typecheck; `nox -s slow`
runs the slow tests; `nox -s sim -- --seeds 20000` runs the long simulation;
`nox -s nemesis -- ...` runs the long fault tests against real processes."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

DEV = ["pytest", "pytest-trio", "hypothesis", "redis"]


@nox.session
def tests(session: nox.Session) -> None:
    """The tests but the slow ones; posargs replace that selection: `nox -s tests -- -k wal`."""
    session.install(".", *DEV)
    session.run("pytest", *(session.posargs or ["-m", "not slow"]))


@nox.session
def slow(session: nox.Session) -> None:
    """The long tests (marked slow), such as a million overwrites against a real cluster."""
    session.install(".", *DEV)
    session.run("pytest", "-m", "slow", *session.posargs)


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
