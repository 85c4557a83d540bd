"""The identity and the lock of a node's data dir.

Files at the top of a data dir:

- `identity.json`: written once, atomically, when the dir is first used; a JSON object
  with `format` (the data dir format version, 1), `node_id`, `incarnation` (a random
  uuid4 hex chosen at creation: a wiped and recreated dir gets a new one),
  `token_salt` and `token_hash` (a salted BLAKE2b hash of the cluster token; the token
  itself is never stored).
- `lock`: held with an exclusive `flock` while a node runs (it records the holder's pid,
  for the error message), so two processes never use the same dir; `trioraft check`
  takes it shared.
- `wal/`: the write-ahead log (wal.py).
- `snap/`: snapshots of the state machine (snapshots.py).

Rules: a dir with no identity file must be empty (but for the lock and a temp file left by
a crash while writing the identity), or it is not a trioraft data dir and is refused; a dir
whose identity names another node, another cluster token or another format is refused.
The error names the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs

from trioraft.closing import ClosedOnExit
from trioraft.storage.errors import DataDirError, DataDirLocked
from trioraft.storage.fileio import DIR_MODE, FILE_MODE, fsync_dir, write_atomically

FORMAT_VERSION = 1
IDENTITY_FILE = "identity.json"
LOCK_FILE = "lock"
WAL_DIR = "wal"
SNAP_DIR = "snap"

_TEMP_IDENTITY = IDENTITY_FILE + ".tmp"
_TOKEN_PERSON = b"trioraft-token"


@attrs.frozen
class Identity:
    """The contents of `identity.json`."""

    #: the node that owns the dir
    node_id: str
    #: random, fixed when the dir was created
    incarnation: str
    #: hex of the random salt of `token_hash`
    token_salt: str
    #: hex of BLAKE2b(cluster token, salt)
    token_hash: str

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(
            _hash_token(token, bytes.fromhex(self.token_salt)), self.token_hash
        )


def _hash_token(token: str, salt: bytes) -> str:
    return hashlib.blake2b(token.encode("utf-8"), salt=salt, person=_TOKEN_PERSON).hexdigest()


def read_identity(path: Path) -> Identity | None:
    """The identity of the data dir `path`, None when it has no identity file."""
    file = path / IDENTITY_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise DataDirError(f"{file}: cannot read the identity file: {e}") from e
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataDirError(f"{file}: damaged identity file: {e}") from e
    if not isinstance(fields, dict):
        raise DataDirError(f"{file}: damaged identity file: expected a JSON object")
    if fields.get("format") != FORMAT_VERSION:
        raise DataDirError(
            f"{file}: data dir format {fields.get('format')!r} is not supported "
            f"(this trioraft reads format {FORMAT_VERSION})"
        )
    values: dict[str, str] = {}
    for key in ("node_id", "incarnation", "token_salt", "token_hash"):
        value = fields.get(key)
        if not isinstance(value, str) or not value:
            raise DataDirError(f"{file}: damaged identity file: {key} is missing or not a string")
        values[key] = value
    try:
        bytes.fromhex(values["token_salt"])
    except ValueError:
        raise DataDirError(f"{file}: damaged identity file: token_salt is not hex") from None
    return Identity(**values)


class DataDir(ClosedOnExit):
    """An open, locked data dir; create one with `DataDir.open`, release it with `close`."""

    def __init__(self, path: Path, identity: Identity, created: bool, lock_fd: int) -> None:
        #: the data dir
        self.path = path
        #: the node that owns it
        self.node_id = identity.node_id
        #: random, fixed when the dir was created: it changes if the dir is wiped
        self.incarnation = identity.incarnation
        #: whether this open created the identity, i.e. the dir was empty
        self.created = created
        #: the descriptor holding the exclusive lock, -1 once released
        self._lock_fd = lock_fd

    @property
    def wal_dir(self) -> Path:
        """Where the write-ahead log lives."""
        return self.path / WAL_DIR

    @property
    def snap_dir(self) -> Path:
        """Where the snapshots live."""
        return self.path / SNAP_DIR

    @classmethod
    def open(cls, path: Path, *, node_id: str, cluster_token: str) -> DataDir:
        """Create or open the data dir of `node_id` and lock it (blocking)."""
        if not path.exists():
            try:
                path.mkdir(DIR_MODE, parents=True)
                fsync_dir(path.parent)
            except OSError as e:
                raise DataDirError(f"{path}: cannot create the data dir: {e}") from e
        lock_fd = _lock(path)
        try:
            identity = read_identity(path)
            created = identity is None
            if identity is None:
                identity = _create_identity(path, node_id, cluster_token)
            elif identity.node_id != node_id:
                raise DataDirError(
                    f"{path / IDENTITY_FILE}: this data dir belongs to node "
                    f"{identity.node_id!r}, not {node_id!r}"
                )
            elif not identity.token_matches(cluster_token):
                raise DataDirError(
                    f"{path / IDENTITY_FILE}: this data dir belongs to another cluster "
                    "(its cluster token differs from the configured one)"
                )
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, identity, created, lock_fd)

    def close(self) -> None:
        """Release the lock. Calling it again does nothing."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _lock(path: Path) -> int:
    """Take the exclusive lock of the data dir and record our pid in the lock file."""
    file = path / LOCK_FILE
    try:
        fd = os.open(file, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as e:
        raise DataDirError(f"{file}: cannot open the lock file: {e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise DataDirLocked(
            f"{path}: data dir is in use by another process"
            + (f" (pid {holder})" if holder else "")
            + f"; it holds {file}"
        ) from None
    except OSError as e:
        os.close(fd)
        raise DataDirError(f"{file}: cannot lock: {e}") from e
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


@contextlib.contextmanager
def shared_lock(path: Path) -> Iterator[None]:
    """Hold the data dir's lock shared, for readers such as `trioraft check`: it fails
    while a node runs on the dir. Creates nothing: without a lock file no node has run
    there, and nothing is locked."""
    file = path / LOCK_FILE
    try:
        fd = os.open(file, os.O_RDONLY)
    except FileNotFoundError:
        yield
        return
    except OSError as e:
        raise DataDirError(f"{file}: cannot open the lock file: {e}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirError(
                f"{path}: data dir is in use by a running node (it holds {file}); "
                "stop the node first"
            ) from None
        yield
    finally:
        os.close(fd)


def _create_identity(path: Path, node_id: str, cluster_token: str) -> Identity:
    others = sorted(p.name for p in path.iterdir() if p.name not in (LOCK_FILE, _TEMP_IDENTITY))
    if others:
        raise DataDirError(
            f"{path / IDENTITY_FILE}: missing, but {path} is not empty "
            f"(it holds {', '.join(others[:5])}): not a trioraft data dir, refusing to use it"
        )
    salt = secrets.token_bytes(16)
    identity = Identity(
        node_id=node_id,
        incarnation=uuid.uuid4().hex,
        token_salt=salt.hex(),
        token_hash=_hash_token(cluster_token, salt),
    )
    fields = {"format": FORMAT_VERSION, **attrs.asdict(identity)}
    text = json.dumps(fields, indent=2) + "\n"
    try:
        write_atomically(path / IDENTITY_FILE, text.encode("utf-8"))
    except OSError as e:
        raise DataDirError(f"{path / IDENTITY_FILE}: cannot write the identity file: {e}") from e
    return identity
