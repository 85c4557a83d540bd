"""`trioraft member` and `trioraft transfer` on bad input: one line saying what is wrong,
and nothing sent."""

from __future__ import annotations

from harness.ports import free_ports
from harness.process_node import run_cli

from trioraft.ops.cli import EXIT_FAILURE, EXIT_USAGE


def test_member_add_without_its_addresses_is_refused() -> None:
    result = run_cli("member", "add", "127.0.0.1:6379", "n4")
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip() == (
        "trioraft member: add takes ADDR then ID PEER_ADDR CLIENT_ADDR"
    )


def test_member_and_transfer_name_a_node_that_does_not_answer() -> None:
    [port] = free_ports(1)
    for args in (("member", "list"), ("transfer",)):
        result = run_cli(*args, f"127.0.0.1:{port}", "--timeout", "2")
        assert result.returncode == EXIT_FAILURE
        assert result.stderr.startswith(f"trioraft {args[0]}: 127.0.0.1:{port}: ")
