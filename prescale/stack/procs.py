"""Plain child processes with a log file each, readiness polls with a deadline, clean stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prescale.stack.errors import StackError


def prescale_command(*args: str) -> list[str]:
    """The prescale command line of this interpreter (works from a checkout or an install)."""
    return [sys.executable, "-m", "prescale.cli", "--log-format", "json", *args]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the private namespace keeps races theoretical)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Process:
    """One started component."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] = field(repr=False)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def fail(self, why: str) -> StackError:
        return StackError(
            f"{self.name}: {why}\n  command: {' '.join(self.argv)}\n  log: {self.log_path}\n"
            f"  last lines:\n{log_tail(self.log_path)}"
        )

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float, what: str = "ready") -> None:
        """Poll ``ready`` until it holds; fail early if the process exits."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            if not self.alive():
                raise self.fail(f"exited with status {self.popen.returncode} before it was {what}")
            try:
                if ready():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self.fail(f"not {what} within {timeout_s:.0f}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; the whole process group goes."""
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def start(name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Process:
    """Start ``argv`` in its own process group with stdout and stderr in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            popen = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=None if env is None else {**os.environ, **env}, cwd=cwd, start_new_session=True,
            )
        except OSError as e:
            raise StackError(f"{name}: cannot start {argv[0]}: {e}") from e
    return Process(name=name, argv=list(argv), log_path=log_path, popen=popen)
