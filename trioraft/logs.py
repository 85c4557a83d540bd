r"""The daemon's log: one line per event on stderr, as text (the default) or JSON.

A text line reads `TIMESTAMP LEVEL NODE message key=value key=value`, for example

    2025-01-31T12:00:00.123Z INFO n1 became leader term=4 members=n1,n2,n3

A JSON line (`log_format = "json"`) is one object holding the same event, for example

    {"time": "2025-01-31T12:00:00.123Z", "level": "INFO", "node": "n1",
     "event": "became leader", "fields": {"term": 4, "members": ["n1", "n2", "n3"]}}

(on one line). Numbers, bools and null stay JSON values, a list or set an array, a
client key the text `escape_key` gives, anything else its text; an exception adds the
fields `error` and `traceback`. JSON lines always carry their time, even to the journal.

Rules of the text format:

- The timestamp is UTC with milliseconds; the node is the record's `node` (set by
  `NodeLogger`) or else the node id given to `setup_logging`. When the stream is the
  systemd journal (JOURNAL_STREAM names its device and inode) the timestamp is left
  out: the journal stamps every line itself.
- A value is written bare when it is non-empty printable text without spaces, quotes,
  `=` or backslashes; otherwise in double quotes with `\"`, `\\`, `\n`, `\t` and
  `\xNN`/`\uNNNN` escapes. So a line never breaks and no control byte reaches the log.
- A bytes value (a client key: pass it as is, `key=k`) goes through `escape_key`, which
  shows printable ASCII as is, every other byte as `\xNN`, and cuts long keys short;
  it is quoted when it holds a space, `"`, `=` or an escape. Client values are never logged.
- An exception attached to a record becomes the fields `error` and `traceback`, escaped
  like any value, so even a crash is one line.
- Debug lines cost one cached level check when debug is off: `NodeLogger` tests the level
  before building a record, and fields are only formatted for lines that are written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Mapping
from typing import TextIO

#: the logger every trioraft module logs under (`trioraft.node`, `trioraft.server`, ...)
ROOT = "trioraft"

#: keys longer than this many bytes are cut short in the log
KEY_SHOWN_BYTES = 64

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# chars that force quoting; every char below 0x20, 0x7f and non-printable unicode does too
_SPECIAL = frozenset(' "=\\')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str) -> str:
    """`text` as a field value: bare when safe, else double-quoted with escapes."""
    if text and text.isprintable() and not _SPECIAL.intersection(text):
        return text
    return '"' + "".join(_escape_char(c) for c in text) + '"'


def _escape_char(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c.isprintable():
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_key(key: bytes) -> str:
    """A client key as printable ASCII: bytes 0x20..0x7e as they are (but a backslash
    doubled), others as `\\xNN`; at most KEY_SHOWN_BYTES bytes, then `...(N bytes)`."""
    shown = key[:KEY_SHOWN_BYTES].decode("latin-1")
    text = "".join(
        "\\\\" if c == "\\" else c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in shown
    )
    if len(key) > KEY_SHOWN_BYTES:
        text += f"...({len(key)} bytes)"
    return text


def _field_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, bytes):
        text = escape_key(value)
        if text and not _SPECIAL.intersection(text):
            return text
        return '"' + text.replace('"', '\\"') + '"'
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return quote(",".join(str(v) for v in items))
    return quote(str(value))


def _timestamp(record: logging.LogRecord) -> str:
    """The record's time in UTC with milliseconds: `2025-01-31T12:00:00.123Z`."""
    seconds = int(record.created)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    millis = int((record.created - seconds) * 1000)
    return f"{stamp}.{millis:03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """The record's fields, plus `error` and `traceback` when it carries an exception."""
    fields: dict[str, object] = dict(getattr(record, "fields", {}))
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        fields["error"] = f"{type(exc).__name__}: {exc}"
        fields["traceback"] = "".join(traceback.format_exception(exc))
    return fields


class LineFormatter(logging.Formatter):
    """Formats a record as one log line (see the module docstring)."""

    def __init__(self, node_id: str = "-", timestamps: bool = True) -> None:
        super().__init__()
        #: the node named on lines whose record carries no `node`
        self.node_id = node_id
        #: whether a line starts with its time
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        node = getattr(record, "node", self.node_id)
        message = record.getMessage()
        if not message.isprintable():
            message = "".join(c if c.isprintable() else _escape_char(c) for c in message)
        parts = [record.levelname, str(node), message]
        if self.timestamps:
            parts.insert(0, _timestamp(record))
        parts.extend(f"{k}={_field_value(v)}" for k, v in _fields(record).items())
        return " ".join(parts)


def _json_value(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return escape_key(value)
    if isinstance(value, set | frozenset):
        return [_json_value(v) for v in sorted(value, key=str)]
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line (see the module docstring)."""

    def __init__(self, node_id: str = "-") -> None:
        super().__init__()
        #: the node named on lines whose record carries no `node`
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": _timestamp(record),
            "level": record.levelname,
            "node": str(getattr(record, "node", self.node_id)),
            "event": record.getMessage(),
            "fields": {k: _json_value(v) for k, v in _fields(record).items()},
        }
        # ensure_ascii: a control or non-ASCII character is a \u escape, never a raw byte
        return json.dumps(line, ensure_ascii=True, allow_nan=False, default=str)


class NodeLogger:
    """Logs the events of one node: `log.info("became leader", term=4)`.

    Several nodes may run in one process (in tests); each line names its own node.
    """

    __slots__ = ("_logger", "node_id")

    def __init__(self, node_id: str, name: str = ROOT) -> None:
        #: the node named on every line
        self.node_id = node_id
        self._logger = logging.getLogger(name)

    def enabled(self, level: int) -> bool:
        """Whether a line at `level` would be written; guard costly fields with it."""
        return self._logger.isEnabledFor(level)

    def _log(self, level: int, msg: str, fields: Mapping[str, object], exc: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(
                level, msg, exc_info=exc, extra={"node": self.node_id, "fields": fields}
            )

    def log(self, level: int, msg: str, /, *, exc_info: bool = False, **fields: object) -> None:
        """A line at `level`, chosen at run time; with `exc_info`, carrying the exception
        being handled."""
        self._log(level, msg, fields, exc_info)

    def debug(self, msg: str, /, **fields: object) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, /, **fields: object) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, /, **fields: object) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, /, **fields: object) -> None:
        self._log(logging.ERROR, msg, fields)

    def exception(self, msg: str, /, **fields: object) -> None:
        """An error line carrying the exception being handled."""
        self._log(logging.ERROR, msg, fields, exc=True)


def is_journal(stream: TextIO) -> bool:
    """Whether `stream` is connected to the systemd journal: systemd then sets
    JOURNAL_STREAM to the `device:inode` of the stream it connected."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor behind the stream
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def setup_logging(
    node_id: str = "-", level: str = "info", stream: TextIO | None = None, fmt: str = "text"
) -> logging.Handler:
    """Send the `trioraft` loggers' lines at `level` and above to `stream` (stderr by
    default) in the format `fmt` (`text` or `json`), replacing a handler an earlier call
    installed. Returns the handler."""
    logger = logging.getLogger(ROOT)
    ours = (LineFormatter, JsonFormatter)
    for old in [h for h in logger.handlers if isinstance(h.formatter, ours)]:
        logger.removeHandler(old)
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(node_id)
    else:
        formatter = LineFormatter(node_id, timestamps=not is_journal(stream))
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(_LEVELS[level])
    logger.propagate = False
    return handler
