"""Warm sandbox launchers: `_jail.py --serve` processes kept running, one per run in flight, that the code verifier
hands its jobs to.

A fresh interpreter per program costs ~40 ms before any sandbox exists; a launcher pays it once, then forks a fresh
sandbox per job from itself (a stdlib-only, single-threaded process that never runs candidate code) and builds the
next job's sandbox while the current one runs (`_jail.serve`). The isolation is the one-shot launcher's: every run
still gets its own namespaces, cgroups, root and uid. A launcher serves one job at a time; concurrent callers each
take an idle one or start another. Launchers stop at `shutdown()`, at exit, or when this process dies (their stdin
closes).
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # never the host's environment: it holds secrets
MAX_IDLE = 32  # launchers kept warm beyond this many are stopped when they come back


class SandboxError(RuntimeError):
    """The sandbox itself could not start or report; not the candidate's fault."""


class Launcher:
    """One `_jail.py --serve` process: `run` sends it a job and waits for the result, up to a deadline."""

    def __init__(self, script: str) -> None:
        if not sys.executable:
            raise SandboxError("sys.executable is empty: cannot start the sandbox's Python interpreter")
        self.script = script
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", script, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=ENV,
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job: dict[str, Any], wait: float) -> dict[str, Any] | None:
        """The job's result, or None when none came within `wait` seconds (the launcher is then killed)."""
        data = json.dumps(job).encode()
        try:
            self.proc.stdin.write(len(data).to_bytes(8, "big") + data)
            self.proc.stdin.flush()
        except OSError:
            return self._failed()
        deadline = time.monotonic() + wait
        try:
            head = self._read(8, deadline)
            body = self._read(int.from_bytes(head, "big"), deadline) if head else None
        except EOFError:
            return self._failed()
        if body is None:
            self.kill()
            return None
        return json.loads(body)

    def _read(self, size: int, deadline: float) -> bytes | None:
        """`size` bytes from the launcher, None at the deadline; EOFError when it closed its end."""
        fd = self.proc.stdout.fileno()
        data = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while len(data) < size:
                if not sel.select(max(deadline - time.monotonic(), 0)):
                    return None
                chunk = os.read(fd, size - len(data))
                if not chunk:
                    raise EOFError
                data += chunk
        return bytes(data)

    def _failed(self) -> dict[str, Any]:
        """The launcher ended without answering: killed (only possible where the candidate could reach it, without
        a pid namespace) is the run's result; anything else is a sandbox failure."""
        code = self.proc.wait()
        if code < 0:
            reason = f"the sandbox launcher was killed by signal {-code}"
            return {"status": "killed", "reason": reason, "stdout": "", "stderr": "", "time": 0.0}
        self.stderr.seek(0)
        tail = self.stderr.read().decode("utf-8", "replace")[-2000:]
        raise SandboxError(f"the sandbox launcher failed (exit code {code}):\n{tail}")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()
        self.stderr.close()

    def close(self) -> None:
        """Closing stdin ends the launcher's loop: it takes down its prepared sandbox and exits."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


_IDLE: list[Launcher] = []
_LOCK = threading.Lock()


def run(job: dict[str, Any], wait: float, script: str) -> dict[str, Any] | None:
    """Run `job` on an idle launcher of `script` (or a new one); None when it did not answer within `wait`."""
    with _LOCK:
        launcher = next((x for x in _IDLE if x.script == script), None)
        if launcher is not None:
            _IDLE.remove(launcher)
    launcher = launcher if launcher is not None and launcher.alive else Launcher(script)
    try:
        result = launcher.run(job, wait)
    except BaseException:
        launcher.kill()
        raise
    with _LOCK:
        keep = launcher.alive and len(_IDLE) < MAX_IDLE
        if keep:
            _IDLE.append(launcher)
    if not keep:
        launcher.close()
    return result


def shutdown() -> None:
    """Stop every idle launcher now (they also stop at exit); the next run starts new ones."""
    with _LOCK:
        idle, _IDLE[:] = list(_IDLE), []
    for launcher in idle:
        launcher.close()


atexit.register(shutdown)
