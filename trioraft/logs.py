r"""The daemon's log: one line per event on stderr.

A line reads `TIMESTAMP LEVEL NODE message key=value key=value`, for example

    2025-01-31T12:00:00.123Z INFO n1 became leader term=4 members=n1,n2,n3

Rules:

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

import logging
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
            seconds = int(record.created)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            millis = int((record.created - seconds) * 1000)
            parts.insert(0, f"{stamp}.{millis:03d}Z")
        fields: Mapping[str, object] = getattr(record, "fields", {})
        parts.extend(f"{k}={_field_value(v)}" for k, v in fields.items())
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            parts.append(f"error={quote(f'{type(exc).__name__}: {exc}')}")
            parts.append(f"traceback={quote(''.join(traceback.format_exception(exc)))}")
        return " ".join(parts)


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
    node_id: str = "-", level: str = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Send the `trioraft` loggers' lines at `level` and above to `stream` (stderr by
    default), replacing a handler an earlier call installed. Returns the handler."""
    logger = logging.getLogger(ROOT)
    for old in [h for h in logger.handlers if isinstance(h.formatter, LineFormatter)]:
        logger.removeHandler(old)
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LineFormatter(node_id, timestamps=not is_journal(stream)))
    logger.addHandler(handler)
    logger.setLevel(_LEVELS[level])
    logger.propagate = False
    return handler
