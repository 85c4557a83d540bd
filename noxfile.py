"""Sessions: `nox` runs tests (all but those marked slow), lint and typecheck; `nox -s slow`
runs the slow tests; `nox -s sim -- --seeds 20000` runs the long simulation; `nox -s
mutants` measures how many seeds the simulation takes to catch each named bug in the core;
`nox -s nemesis -- ...` runs the long fault tests against real processes; `nox -s bench`
measures the standard benchmark matrix against redis-server.

Every session installs the exact versions pinned in constraints.txt (every runtime, test
and tool package with their own dependencies, resolved on Python 3.11), so that a new
release upstream cannot change what a run does. `nox -s latest` runs the tests with the
newest releases instead, to see early what an upgrade would break; `nox -s lock` pins the
newest releases into constraints.txt."""

from __future__ import annotations

import platform
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = Path(__file__).parent / "constraints.txt"
DEV = ["pytest", "pytest-trio", "hypothesis", "redis"]
TOOLS = ["ruff", "mypy", "nox"]
#: the tests' selection when a session is given no arguments
DEFAULT_TESTS = ["-m", "not slow"]


def install(session: nox.Session, *packages: str) -> None:
    """Install `packages` at the versions constraints.txt pins."""
    session.install("--constraint", str(CONSTRAINTS), *packages)


@nox.session
def tests(session: nox.Session) -> None:
    """The tests but the slow ones; posargs replace that selection: `nox -s tests -- -k wal`."""
    install(session, ".", *DEV)
    session.run("pytest", *(session.posargs or DEFAULT_TESTS))


@nox.session
def slow(session: nox.Session) -> None:
    """The long tests (marked slow), such as a million overwrites against a real cluster."""
    install(session, ".", *DEV)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    install(session, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    install(session, ".", "mypy", "nox", *DEV)
    session.run("mypy", "trioraft", "noxfile.py", *session.posargs)


@nox.session
def sim(session: nox.Session) -> None:
    """The seeded simulation over many seeds: `nox -s sim -- --seeds 20000 [--first-seed N]
    [--clock-seeds N]` (the last for the runs with expiry and drifting, jumping clocks)."""
    install(session, ".", *DEV)
    session.run("pytest", "tests/sim/test_simulation.py", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """The first seed that catches each named mutant of the core, as a table:
    `nox -s mutants -- [--end-to-end] [SEEDS] [NAME...]` (500 seeds, every mutant by
    default; --end-to-end turns off the direct checks of the persistence promises)."""
    install(session, ".", *DEV)
    session.run("python", "-m", "sim.mutants", *session.posargs, env={"PYTHONPATH": "tests"})


@nox.session
def nemesis(session: nox.Session) -> None:
    """Fault runs of real clusters (partitions need root): `nox -s nemesis -- --time 600
    --seed N --faults kill,pause,partition,...`; `-- --help` lists the options, and
    docs/testing.md says what a run does and where its results go."""
    install(session, ".", *DEV)
    session.run("python", "-m", "nemesis", *session.posargs, env={"PYTHONPATH": "tests"})


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark matrix (P1/P16, c1/c50, SET/GET, leader/follower) of a 3-node cluster
    with fsync on, beside redis-server with appendfsync always where it is installed:
    `nox -s bench -- [--duration S] [--out DIR] [--baseline OTHER_CHECKOUT]` writes
    bench.md (figures and ratios), bench.json and bench.png; docs/performance.md says how
    to read them."""
    install(session, ".[plot]", *DEV)
    session.run("python", "tests/perf/matrix.py", *session.posargs, env={"PYTHONPATH": "tests"})


@nox.session
def latest(session: nox.Session) -> None:
    """The tests with the newest release of every dependency, ignoring constraints.txt;
    posargs as for `tests`."""
    session.install("--upgrade", "--upgrade-strategy", "eager", ".", *DEV)
    session.run("pytest", *(session.posargs or DEFAULT_TESTS))


@nox.session(python="3.11", reuse_venv=False)
def lock(session: nox.Session) -> None:
    """Pin the newest releases of everything the sessions install into constraints.txt,
    resolved in a new Python 3.11 environment on this machine; run `nox` on the result
    before committing."""
    session.install(".[plot]", *DEV, *TOOLS)
    with CONSTRAINTS.open("w") as pins:
        pins.write(
            "# Every package the nox sessions install, at exact versions, resolved on\n"
            f"# Python 3.11 on {platform.system()} by `nox -s lock` (which rewrites this file).\n"
        )
        pins.flush()
        session.run("python", "-m", "pip", "freeze", "--exclude", "trioraft", stdout=pins)
