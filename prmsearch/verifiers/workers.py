"""Worker processes with a hard deadline per call: a worker that overruns is killed and replaced.

Math comparisons on untrusted answers can run forever inside C code (`10^{10^{10}}`, `9999!!`), where no in-process
timeout can reach them: `signal.alarm` fires only between bytecodes and only in the main thread, so it fails inside a
server's worker thread. Killing a process always works, from any thread.

The workers are not children of the caller. `WorkerPool` starts one supervisor process (a fresh interpreter),
which imports the heavy modules once and forks the workers from itself. So the caller may have threads, a CUDA
context or a 20-GB address space (forking it would be unsafe or slow), its main script is never re-imported
(multiprocessing's spawn and forkserver do that, and break unguarded scripts), and a killed worker is replaced by a
fork of a warm process in milliseconds.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """One call's fate: `status` is "ok" (`value` holds the return value), "error" (`value` holds the exception's
    text), "timeout" (the worker was killed at the deadline) or "died" (the worker crashed: out of memory, a
    segfault in a C extension)."""

    status: str
    value: Any = None


class PoolError(RuntimeError):
    """The pool itself failed (its supervisor could not start or died), not one of the calls."""


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _serve(conn: Connection, fn: Callable[..., Any], memory_mb: int) -> None:
    """A worker: answer calls until the supervisor closes the pipe."""
    import ctypes
    import resource

    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the supervisor
    if memory_mb:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = used + (memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            args = conn.recv()
        except EOFError:
            os._exit(0)
        try:
            reply = Outcome("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 -- any failure of fn is the caller's answer, not the worker's end
            reply = Outcome("error", f"{type(e).__name__}: {e}"[:500])
        conn.send(reply)


class _Worker:
    def __init__(self, fn: Callable[..., Any], memory_mb: int) -> None:
        import multiprocessing

        self.conn, child = multiprocessing.Pipe()
        ctx = multiprocessing.get_context("fork")  # the supervisor is single-threaded: forking it is safe
        self.process = ctx.Process(target=_serve, args=(child, fn, memory_mb), daemon=True)
        self.process.start()
        child.close()
        self.task: int | None = None
        self.deadline = 0.0

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


def _run_calls(
    workers: list[_Worker],
    spawn: Callable[[], _Worker],
    calls: Sequence[tuple],
    timeout: float,
    on_done: Callable[[int, Outcome], None],
) -> None:
    """Deal `calls` out to `workers`, killing and replacing any worker past its deadline (in the supervisor)."""
    todo = deque(range(len(calls)))
    busy: list[_Worker] = []

    def finish(worker: _Worker, outcome: Outcome, replace: bool) -> None:
        task, worker.task = worker.task, None
        busy.remove(worker)
        if replace:
            worker.kill()
            workers[workers.index(worker)] = spawn()
        on_done(task, outcome)

    while todo or busy:
        for worker in workers:
            if worker.task is None and todo:
                worker.task = todo.popleft()
                worker.conn.send(calls[worker.task])
                worker.deadline = time.monotonic() + timeout
                busy.append(worker)
        waiting = list(busy)
        nearest = min(w.deadline for w in waiting)
        ready = wait(
            [w.conn for w in waiting] + [w.process.sentinel for w in waiting],
            timeout=max(0.0, nearest - time.monotonic()),
        )
        for worker in waiting:
            if worker.conn in ready:
                try:
                    finish(worker, worker.conn.recv(), replace=False)
                    continue
                except (EOFError, OSError):
                    pass
            if worker.conn in ready or worker.process.sentinel in ready:
                worker.process.join(0.5)
                finish(worker, Outcome("died", f"worker exited with code {worker.process.exitcode}"), replace=True)
            elif time.monotonic() >= worker.deadline:
                finish(worker, Outcome("timeout", f"no answer within {timeout:g} s"), replace=True)


def _supervise(fn_ref: str, init_ref: str, size: int, memory_mb: int) -> None:
    """The supervisor process: requests come on stdin, answers go out on the original stdout (fd 1 is pointed at
    stderr so that nothing a worker prints can corrupt the channel)."""
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    fn = _resolve(fn_ref)
    if init_ref:
        _resolve(init_ref)()  # warm caches once, here; every forked worker inherits them
    workers = [_Worker(fn, memory_mb) for _ in range(size)]
    replies.send(("ready",))
    while True:
        try:
            calls, timeout = requests.recv()
        except EOFError:  # the caller closed the pool or died
            break
        _run_calls(
            workers,
            lambda: _Worker(fn, memory_mb),
            calls,
            timeout,
            lambda i, outcome: replies.send(("done", i, outcome)),
        )
        replies.send(("end",))
    for worker in workers:
        worker.kill()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


class WorkerPool:
    """`workers` processes that run the top-level function `fn_ref` ("module:function"); `map` gives every call at
    most `timeout` seconds.

    Safe to use from any thread (calls are serialised by a lock). `init_ref`, if given, runs once in the supervisor
    before the workers are forked (imports, parser tables). `memory_mb` caps each worker's address space above what
    it inherits, so an answer that asks for a 10-GB integer fails with MemoryError instead of swapping the machine.
    """

    def __init__(self, fn_ref: str, workers: int = 1, *, init_ref: str = "", memory_mb: int = 4096) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.fn_ref, self.init_ref, self.size, self.memory_mb = fn_ref, init_ref, workers, memory_mb
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        args = (self.fn_ref, self.init_ref, self.size, self.memory_mb)
        cmd = [sys.executable, "-c", f"from {__name__} import _supervise; _supervise{args!r}"]
        process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self._process = process
        self._send = Connection(os.dup(process.stdin.fileno()), readable=False)
        self._recv = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()
        self._finalizer = weakref.finalize(self, _stop, process)  # also at interpreter exit
        self._expect("ready", startup=True)

    def _expect(self, *kinds: str, startup: bool = False) -> tuple:
        while not self._recv.poll(1.0):
            if self._process.poll() is not None:
                break
        try:
            message = self._recv.recv()
        except (EOFError, OSError):
            code = self._process.wait()
            self._process = None
            what = "could not start" if startup else "died"
            raise PoolError(f"the worker supervisor for {self.fn_ref} {what} (exit code {code}); see stderr") from None
        if message[0] not in kinds:
            raise PoolError(f"unexpected message from the worker supervisor: {message[0]!r}")
        return message

    def map(
        self, calls: Sequence[tuple], timeout: float, on_done: Callable[[int, Outcome], None] | None = None
    ) -> list[Outcome]:
        """Run `fn(*args)` for every `args` in `calls`, results in `calls`' order. The deadline of a call starts
        when a worker takes it, so a long queue never eats into any call's time."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        results: list[Outcome | None] = [None] * len(calls)
        if not calls:
            return []
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            self._send.send((list(calls), timeout))
            while True:
                message = self._expect("done", "end")
                if message[0] == "end":
                    break
                _, i, outcome = message
                results[i] = outcome
                if on_done is not None:
                    on_done(i, outcome)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the supervisor and its workers; the pool starts new ones if used again."""
        with self._lock:
            if self._process is not None:
                self._finalizer()
                self._send.close()
                self._recv.close()
                self._process = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_workers() -> int:
    """The cores this process may use (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
