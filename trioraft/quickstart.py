"""`trioraft cluster`: run a local cluster in the foreground until Ctrl-C.

Each node is a `trioraft serve` child process whose log goes to `<config dir>/nK.log`.
Ctrl-C (or SIGTERM) stops them all with SIGTERM and waits for them; a node that exits on
its own stops the others too, and the command then exits 1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from trioraft.config import load_config

#: how long the nodes get to stop cleanly before they are killed
STOP_SECONDS = 15.0


def run_cluster(config_paths: list[Path]) -> int:
    configs = [load_config(path) for path in config_paths]
    procs: list[subprocess.Popen[bytes]] = []
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for path, config in zip(config_paths, configs, strict=True):
            log_path = path.with_suffix(".log")
            with log_path.open("ab") as log_file:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "trioraft", "serve", "--config", str(path)],
                        stdout=log_file,
                        stderr=log_file,
                        start_new_session=True,  # Ctrl-C reaches only this command
                    )
                )
            print(f"{config.node_id}: clients at {config.client_addr}, log in {log_path}")
        first = configs[0].client_addr
        print(f"try: echo 'SET hello world' | nc {first.host} {first.port}")
        print(f"     trioraft status {first}")
        print("Ctrl-C stops the cluster.")
        sys.stdout.flush()
        while not stop:
            for config, proc in zip(configs, procs, strict=True):
                if proc.poll() is not None:
                    print(f"{config.node_id} exited with status {proc.returncode}; stopping")
                    return _stop(procs) or 1
            time.sleep(0.2)
        print("stopping the cluster")
        return _stop(procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _stop(procs: list[subprocess.Popen[bytes]]) -> int:
    """SIGTERM every node still running and wait; returns 0 if all stopped cleanly."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    status = 0
    for proc in procs:
        try:
            code = proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        status = status or (1 if code not in (0, None) else 0)
    return status
