"""Addresses as written, `host:port` or `[ipv6]:port`: parsed, checked with an error that
says what is wrong, and written back the same way."""

from __future__ import annotations

import pytest

from trioraft.transport.addresses import parse_address


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:7001", "127.0.0.1", 7001),
        ("db-1.example.com:1", "db-1.example.com", 1),
        ("localhost:65535", "localhost", 65535),
        ("[::1]:6379", "::1", 6379),
        ("[fe80::1]:80", "fe80::1", 80),
    ],
)
def test_parse_address(text: str, host: str, port: int) -> None:
    address = parse_address(text)
    assert (address.host, address.port) == (host, port)
    assert str(address) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7001", 'expected "host:port", got "7001"'),
        (":7001", 'expected "host:port", got ":7001"'),
        ("host:0", 'port must be a number from 1 to 65535, got "0"'),
        ("host:65536", 'port must be a number from 1 to 65535, got "65536"'),
        ("host:http", 'port must be a number from 1 to 65535, got "http"'),
        ("host:", 'port must be a number from 1 to 65535, got ""'),
        ("::1:7001", 'write an IPv6 address as "[addr]:port", got "::1:7001"'),
        ("[nope]:7001", '"nope" is not an IPv6 address'),
        ("[::1]7001", 'expected "[host]:port", got "[::1]7001"'),
        ("a b:7001", '"a b" is not a host name or IP address'),
    ],
)
def test_bad_addresses(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(text)
    assert str(info.value) == message
