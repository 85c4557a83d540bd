"""Tests of the RESP request parser and the RESP2 and RESP3 reply encoder (trioraft.resp).

Rules: synchronous, no I/O; every protocol error text is pinned; inline splitting follows
what a Redis server does with the same line; property tests use small limits so that the
limit paths are reached.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioraft.kvstore.replicated import ReplicatedState
from trioraft.redis.replies import NULL_ARRAY, OK, ErrorReply, Map, Reply, SimpleString, Verbatim
from trioraft.redis.resp import RequestParser, RespProtocolError, decode_reply, encode, encode_into


def multibulk(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for arg in args:
        out += b"$%d\r\n%b\r\n" % (len(arg), arg)
    return out


def parse(data: bytes, parser: RequestParser | None = None) -> list[list[bytes]]:
    parser = parser if parser is not None else RequestParser()
    parser.feed(data)
    return parser.next_requests()


def error_of(data: bytes, parser: RequestParser | None = None) -> str:
    parser = parser if parser is not None else RequestParser()
    parser.feed(data)
    with pytest.raises(RespProtocolError) as caught:
        parser.next_requests()
    return str(caught.value)


def outcome(
    parser: RequestParser, chunks: list[bytes], one_by_one: bool
) -> tuple[list[list[bytes]], str]:
    """Every request parsed from `chunks` fed in turn, and the error text ('' if none)."""
    requests: list[list[bytes]] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            if one_by_one:
                while (request := parser.next_request()) is not None:
                    requests.append(request)
            else:
                requests.extend(parser.next_requests())
        if not one_by_one:
            requests.extend(parser.next_requests())
    except RespProtocolError as error:
        return requests, str(error)
    return requests, ""


# Multibulk requests.


def test_single_request() -> None:
    assert parse(multibulk(b"SET", b"k", b"v")) == [[b"SET", b"k", b"v"]]


def test_pipelined_requests_in_one_feed() -> None:
    data = b"".join(multibulk(b"INCR", b"k%d" % i) for i in range(100))
    assert parse(data) == [[b"INCR", b"k%d" % i] for i in range(100)]


def test_next_request_returns_one_at_a_time() -> None:
    parser = RequestParser()
    parser.feed(multibulk(b"PING") + multibulk(b"GET", b"a") + b"*1\r\n$4\r\nEC")
    assert parser.next_request() == [b"PING"]
    assert parser.next_request() == [b"GET", b"a"]
    assert parser.next_request() is None
    parser.feed(b"HO\r\n")
    assert parser.next_request() == [b"ECHO"]
    assert parser.next_request() is None


def test_byte_at_a_time() -> None:
    data = multibulk(b"SET", b"key", b"a\r\nb") + b"GET key\r\n" + multibulk(b"DEL", b"key")
    parser = RequestParser()
    requests = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        requests.extend(parser.next_requests())
    assert requests == [[b"SET", b"key", b"a\r\nb"], [b"GET", b"key"], [b"DEL", b"key"]]
    assert parser.buffered == 0


def test_binary_safe_payloads() -> None:
    payload = b"\x00\r\n$3\r\n*1\r\n\xff\x00"
    assert parse(multibulk(b"SET", b"\x00k\n", payload)) == [[b"SET", b"\x00k\n", payload]]


def test_empty_argument() -> None:
    assert parse(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n") == [[b"GET", b""]]


def test_empty_and_null_multibulk_produce_nothing() -> None:
    assert parse(b"*0\r\n*-1\r\n" + multibulk(b"PING") + b"*0\r\n") == [[b"PING"]]


def test_large_payload() -> None:
    payload = bytes(range(256)) * 1024
    parser = RequestParser()
    data = multibulk(b"SET", b"k", payload)
    for i in range(0, len(data), 10_000):
        parser.feed(data[i : i + 10_000])
        requests = parser.next_requests()
    assert requests == [[b"SET", b"k", payload]]


def test_buffered_counts_input_and_partial_arguments() -> None:
    parser = RequestParser()
    assert parser.buffered == 0
    parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab")
    assert parser.buffered == len(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab")
    assert parser.next_requests() == []
    assert parser.buffered == len(b"SET") + len(b"k") + len(b"ab")
    parser.feed(b"cde\r\n")
    assert parser.next_requests() == [[b"SET", b"k", b"abcde"]]
    assert parser.buffered == 0


# Protocol errors, in Redis's words.


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*\r\n", "invalid multibulk length"),
        (b"*-2\r\n", "invalid multibulk length"),
        (b"*-0\r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"*01\r\n", "invalid multibulk length"),
        (b"* 1\r\n", "invalid multibulk length"),
        (b"*1_0\r\n", "invalid multibulk length"),
        (b"*3\rx\r\n", "invalid multibulk length"),
        (b"*1\r\n$3\rx", "invalid bulk length"),
        (b"*1\r\nx\rx", "expected '$', got 'x'"),
        (b"*" + b"9" * 30 + b"\r\n", "invalid multibulk length"),
        (b"*1\r\n:3\r\n", "expected '$', got ':'"),
        (b"*1\r\n\r\n", "expected '$', got '\r'"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$\r\n", "invalid bulk length"),
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*1\r\n$03\r\nabc\r\n", "invalid bulk length"),
        (b"*1\r\n$" + b"9" * 5000 + b"\r\n", "invalid bulk length"),
        (b"*1\r\n$3\r\nabcd\r\n", "expected CRLF after bulk data"),
        (b'SET "a b\r\n', "unbalanced quotes in request"),
    ],
)
def test_error_texts(data: bytes, text: str) -> None:
    assert error_of(data) == text


def test_limits() -> None:
    small = {"max_inline": 16, "max_bulk": 10, "max_args": 3}
    assert parse(b"x" * 16 + b"\n", RequestParser(**small)) == [[b"x" * 16]]
    assert parse(b"x" * 15 + b"\r\n", RequestParser(**small)) == [[b"x" * 15]]
    assert error_of(b"x" * 17, RequestParser(**small)) == "too big inline request"
    assert error_of(b"x" * 17 + b"\n", RequestParser(**small)) == "too big inline request"
    assert parse(b"*3\r\n", RequestParser(**small)) == []
    assert error_of(b"*4\r\n", RequestParser(**small)) == "invalid multibulk length"
    assert parse(multibulk(b"x" * 10), RequestParser(**small)) == [[b"x" * 10]]
    assert error_of(b"*1\r\n$11\r\n", RequestParser(**small)) == "invalid bulk length"
    # A header line without its CR may not grow past the inline limit.
    assert parse(b"*" + b"1" * 15, RequestParser(**small)) == []
    assert error_of(b"*" + b"1" * 16, RequestParser(**small)) == "too big mbulk count string"
    assert parse(b"*1\r\n$" + b"1" * 15, RequestParser(**small)) == []
    assert error_of(b"*1\r\n$" + b"1" * 16, RequestParser(**small)) == "too big bulk count string"


@pytest.mark.parametrize(
    ("prefix", "too_big", "invalid"),
    [
        (b"*", "too big mbulk count string", "invalid multibulk length"),
        (b"*1\r\n$", "too big bulk count string", "invalid bulk length"),
    ],
)
def test_header_line_limit(prefix: bytes, too_big: str, invalid: str) -> None:
    header = prefix + b"0" * (64 * 1024 - 1)
    assert parse(header) == []
    assert error_of(header + b"0") == too_big
    assert parse(header + b"\r") == []
    assert error_of(header + b"\r\n") == invalid


def test_default_limits() -> None:
    assert parse(b"a" * 64 * 1024) == []
    assert error_of(b"a" * (64 * 1024 + 1)) == "too big inline request"
    assert error_of(b"*1048577\r\n") == "invalid multibulk length"
    assert parse(b"*1048576\r\n") == []
    assert error_of(b"*1\r\n$536870913\r\n") == "invalid bulk length"
    assert parse(b"*1\r\n$536870912\r\n") == []


def test_error_is_deferred_after_complete_requests_and_then_sticks() -> None:
    parser = RequestParser()
    parser.feed(multibulk(b"PING") + b"GET a\r\n*x\r\n" + multibulk(b"PING"))
    assert parser.next_requests() == [[b"PING"], [b"GET", b"a"]]
    assert parser.buffered == 0
    with pytest.raises(RespProtocolError, match=r"^invalid multibulk length$"):
        parser.next_requests()
    parser.feed(multibulk(b"PING"))
    assert parser.buffered == 0
    with pytest.raises(RespProtocolError, match=r"^invalid multibulk length$"):
        parser.next_request()


def test_next_request_raises_at_the_bad_request() -> None:
    parser = RequestParser()
    parser.feed(multibulk(b"PING") + b"*1\r\n+OK\r\n")
    assert parser.next_request() == [b"PING"]
    with pytest.raises(RespProtocolError, match=r"^expected '\$', got '\+'$"):
        parser.next_request()


# Inline requests, split as Redis splits them.


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"PING\r\n", [b"PING"]),
        (b"PING\n", [b"PING"]),
        (b"set a b\r\n", [b"set", b"a", b"b"]),
        (b"  set \t a   b  \r\n", [b"set", b"a", b"b"]),
        (b"set a\rb\r\n", [b"set", b"a", b"b"]),
        (b"\x0b\x0cset a\x0bb\x0c\n", [b"set", b"a\x0bb\x0c"]),
        (b"echo a\x00b\n", [b"echo", b"a\x00b"]),
        (b'set k "hello world"\r\n', [b"set", b"k", b"hello world"]),
        (b'echo ""\r\n', [b"echo", b""]),
        (b'echo "a\\nb\\r\\t\\b\\a"\r\n', [b"echo", b"a\nb\r\t\b\a"]),
        (b'echo "\\x41\\x7a\\xfF"\r\n', [b"echo", b"Az\xff"]),
        (b'echo "\\xZZ\\x4"\r\n', [b"echo", b"xZZx4"]),
        (b'echo "\\"q\\" \\\\ \\q"\r\n', [b"echo", b'"q" \\ q']),
        (b'echo "\\x\\""\r\n', [b"echo", b'x"']),
        (b"echo 'it\\'s'\r\n", [b"echo", b"it's"]),
        (b"echo 'a\\nb \"c\"'\r\n", [b"echo", b'a\\nb "c"']),
        (b"echo 'a\\\\b'\r\n", [b"echo", b"a\\\\b"]),
        (b'echo foo"bar baz"\r\n', [b"echo", b"foobar baz"]),
        (b"echo foo'bar'\r\n", [b"echo", b"foobar"]),
        (b'echo "a"\t"b"\r\n', [b"echo", b"a", b"b"]),
        (b'echo "a"\x0b"b"\r\n', [b"echo", b"a", b"b"]),
        (b"echo back\\slash\r\n", [b"echo", b"back\\slash"]),
    ],
)
def test_inline_words(line: bytes, words: list[bytes]) -> None:
    assert parse(line) == [words]


@pytest.mark.parametrize(
    "line",
    [
        b'echo "foo"bar\r\n',
        b"echo 'foo'bar\r\n",
        b'echo "foo\r\n',
        b"echo 'foo\r\n",
        b'echo "foo\\"\r\n',
        b"echo 'foo\\'\r\n",
        b"echo '\\\\'\r\n",
        b'echo "foo\\\r\n',
        b'echo "a""b"\r\n',
    ],
)
def test_inline_unbalanced_quotes(line: bytes) -> None:
    assert error_of(line) == "unbalanced quotes in request"


def test_empty_inline_lines_are_skipped() -> None:
    assert parse(b"\r\n\n   \r\n\t\nPING\r\n\r\n") == [[b"PING"]]


def test_inline_and_multibulk_mixed() -> None:
    data = b"PING\r\n" + multibulk(b"GET", b"x") + b"ECHO hi\n"
    assert parse(data) == [[b"PING"], [b"GET", b"x"], [b"ECHO", b"hi"]]


# Encoder.


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (OK, b"+OK\r\n"),
        (SimpleString("a\r\nb\nc"), b"+a  b c\r\n"),
        (SimpleString("caf\u00e9"), b"+caf\xc3\xa9\r\n"),
        (ErrorReply("ERR syntax error"), b"-ERR syntax error\r\n"),
        (ErrorReply("ERR bad\r\nline"), b"-ERR bad  line\r\n"),
        (ErrorReply("ERR unknown command '\udcff'"), b"-ERR unknown command '\xff'\r\n"),
        (ErrorReply("ERR lone \ud800"), b"-ERR lone ?\r\n"),
        (0, b":0\r\n"),
        (-42, b":-42\r\n"),
        (2**63 - 1, b":9223372036854775807\r\n"),
        (b"", b"$0\r\n\r\n"),
        (b"a\r\nb\x00", b"$5\r\na\r\nb\x00\r\n"),
        (None, b"$-1\r\n"),
        ([], b"*0\r\n"),
        ([b"a", None, 1, [OK, []]], b"*4\r\n$1\r\na\r\n$-1\r\n:1\r\n*2\r\n+OK\r\n*0\r\n"),
    ],
)
def test_encode(reply: Reply, wire: bytes) -> None:
    assert encode(reply) == wire


@pytest.mark.parametrize(
    ("reply", "resp2", "resp3"),
    [
        (None, b"$-1\r\n", b"_\r\n"),
        ([b"a", None], b"*2\r\n$1\r\na\r\n$-1\r\n", b"*2\r\n$1\r\na\r\n_\r\n"),
        (Map(()), b"*0\r\n", b"%0\r\n"),
        (
            Map(((b"proto", 3), (b"modules", []))),
            b"*4\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n",
            b"%2\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n",
        ),
        (
            [Map(((b"k", None),))],
            b"*1\r\n*2\r\n$1\r\nk\r\n$-1\r\n",
            b"*1\r\n%1\r\n$1\r\nk\r\n_\r\n",
        ),
        (Verbatim(b"# Cluster\r\n"), b"$11\r\n# Cluster\r\n\r\n", b"=15\r\ntxt:# Cluster\r\n\r\n"),
        (Verbatim(b""), b"$0\r\n\r\n", b"=4\r\ntxt:\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        (OK, b"+OK\r\n", b"+OK\r\n"),
        (ErrorReply("ERR x"), b"-ERR x\r\n", b"-ERR x\r\n"),
        (-1, b":-1\r\n", b":-1\r\n"),
        (b"$-1", b"$3\r\n$-1\r\n", b"$3\r\n$-1\r\n"),
    ],
)
def test_resp2_and_resp3_differ_in_null_maps_and_verbatim_text(
    reply: Reply, resp2: bytes, resp3: bytes
) -> None:
    assert encode(reply) == resp2
    assert encode(reply, resp3=False) == resp2
    assert encode(reply, resp3=True) == resp3


def test_encode_into_appends() -> None:
    out = bytearray(b"+PONG\r\n")
    encode_into(out, 7)
    encode_into(out, b"v")
    assert out == b"+PONG\r\n:7\r\n$1\r\nv\r\n"


def test_encode_rejects_non_replies() -> None:
    with pytest.raises(TypeError):
        encode(1.5)  # type: ignore[arg-type]


# Property tests.

SMALL_LIMITS = {"max_inline": 24, "max_bulk": 12, "max_args": 6}

fragments = st.lists(
    st.sampled_from(
        [
            *(b"*", b"$", b"\r\n", b"\n", b"\r", b"0", b"1", b"2", b"-1", b"12", b"ab", b" "),
            *(b'"', b"'", b"\\", b"\\x4", b"GET k", b"\x00", b"\x0b"),
        ]
    )
    | st.binary(max_size=8)
    | st.builds(lambda args: multibulk(*args), st.lists(st.binary(max_size=4), max_size=3)),
    max_size=30,
).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(data=fragments, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_any_input_only_raises_protocol_error_and_ignores_chunking(
    data: bytes, cuts: list[int]
) -> None:
    whole = outcome(RequestParser(**SMALL_LIMITS), [data], one_by_one=False)
    chunked = outcome(RequestParser(**SMALL_LIMITS), split(data, cuts), one_by_one=True)
    assert chunked == whole


requests_strategy = st.lists(st.lists(st.binary(max_size=20), min_size=1, max_size=6), max_size=8)


@settings(max_examples=200, deadline=None)
@given(requests=requests_strategy, cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_multibulk_round_trip_at_any_split(requests: list[list[bytes]], cuts: list[int]) -> None:
    data = b"".join(multibulk(*request) for request in requests)
    parsed, error = outcome(RequestParser(), split(data, cuts), one_by_one=False)
    assert error == ""
    assert parsed == requests


def one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


replies = st.recursive(
    st.builds(SimpleString, st.text())
    | st.builds(ErrorReply, st.text())
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.binary()
    | st.none()
    | st.just(NULL_ARRAY),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


def expected(reply: Reply) -> Reply:
    if isinstance(reply, SimpleString):
        return SimpleString(one_line(reply.text))
    if isinstance(reply, ErrorReply):
        return ErrorReply(one_line(reply.text))
    if isinstance(reply, list):
        return [expected(item) for item in reply]
    return reply


@settings(max_examples=200, deadline=None)
@given(reply=replies)
def test_a_forwarded_result_encodes_as_on_the_leader(reply: Reply) -> None:
    """A write's result travels from the leader to the follower that forwarded it."""
    forwarded = ReplicatedState.decode_result(ReplicatedState.encode_result(reply))
    for resp3 in (False, True):
        assert encode(forwarded, resp3) == encode(expected(reply), resp3)


@settings(max_examples=200, deadline=None)
@given(reply=replies)
def test_encode_round_trips(reply: Reply) -> None:
    wire = encode(reply)
    whole = decode_reply(wire)
    assert whole is not None
    decoded, end = whole
    assert end == len(wire)
    assert decoded == expected(reply)
