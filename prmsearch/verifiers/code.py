"""Code answers: run a candidate program against its unit tests in a sandbox, and estimate pass@k.

Each run is its own process tree, started by a warm launcher (`launchers`: a stdlib-only `_jail.py` process, never
forked from this one: `preexec_fn` and forking are unsafe in a host with threads, such as pytest, a server or this
module's own worker pool) that forks a fresh sandbox per run. As root on Linux the candidate gets new network, pid,
mount, IPC and UTS namespaces, a minimal read-only root (only the interpreter, its standard library and the shared
libraries it loads, a few devices, fresh /proc, empty private tmpfs at /tmp, /var/tmp and /dev/shm: no other host
file can be named), a per-run memory and pids cgroup, rlimits, no_new_privs, and a uid of its own; every process it
starts dies with the run. Without root or namespaces it degrades (see `isolation()`), and says so.

The verdict trusts Python equality, as HumanEval's harness does: the harness undoes patched builtins, module
globals, tracers and signal handlers before the tests run, and runs the tests apart from the program's threads, but
a returned object whose `__eq__` always answers True still passes, and a program written to forge the harness's
record from inside the process is out of scope. What the sandbox guarantees is the host's safety.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from typing import Any

from tqdm.auto import tqdm

from . import launchers
from .launchers import SandboxError

_JAIL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jail.py")
_BACKSTOP_S = 10.0  # beyond the run's own wall clock: launcher start-up and sandbox teardown on a busy machine


@dataclass(frozen=True)
class CodeLimits:
    """Every limit of a run, in one place; defaults fit HumanEval/MBPP-style tasks.

    timeout: wall-clock seconds for the whole run; the run is then killed (status "timeout").
    cpu_seconds: CPU seconds per process of the candidate (SIGXCPU, then SIGKILL a second later). Default
        ceil(timeout) + 1, so that a plain busy loop ends on the wall clock, always as "timeout"; the CPU limit
        catches what the wall clock cannot, several cores burned at once (BLAS threads, C extensions).
    memory_mb: address space per process (RLIMIT_AS), and the whole run's memory when a memory cgroup can be made.
    max_processes: processes and threads of the sandbox uid (RLIMIT_NPROC), and pids.max of the run's cgroup.
    max_file_mb: largest file (RLIMIT_FSIZE), and the size of each private tmpfs (/tmp, /var/tmp, /dev/shm).
    max_open_files: RLIMIT_NOFILE.
    max_output_bytes: stdout + stderr beyond this kills the run (status "killed", reason "output limit").
    tail_chars: how much of the end of stdout and of stderr a result keeps.
    """

    timeout: float = 10.0
    cpu_seconds: int | None = None
    memory_mb: int = 1024
    max_processes: int = 16
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 1 << 20
    tail_chars: int = 2000

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        for name in ("memory_mb", "max_processes", "max_file_mb", "max_open_files", "max_output_bytes", "tail_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.cpu_seconds is not None and (not isinstance(self.cpu_seconds, int) or self.cpu_seconds < 1):
            raise ValueError(f"cpu_seconds must be a positive integer or None, got {self.cpu_seconds!r}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb={self.memory_mb} is too small for a Python interpreter; use at least 64")
        if self.max_open_files < 8:
            raise ValueError(f"max_open_files={self.max_open_files} is too small; use at least 8")

    def resolved(self) -> dict[str, Any]:
        """The limits as the launcher takes them, with cpu_seconds filled in."""
        cpu = self.cpu_seconds if self.cpu_seconds is not None else math.ceil(self.timeout) + 1
        return {**asdict(self), "cpu_seconds": cpu}


@dataclass
class CodeResult:
    """How one run ended.

    status: "passed" (the tests ran to the end), "failed" (an assertion failed), "error" (the program or the
        tests raised something else, or the process ended without a verdict), "timeout" (wall clock), "killed"
        (a signal: CPU, memory or file size limit, a crash; or the output limit).
    reason: one line to act on, e.g. "AssertionError at test line 7", "NameError: name 'x' is not defined
        (program line 3)", "wall clock 10 s", "killed by SIGKILL (memory limit 1024 MB)".
    stdout, stderr: the last `tail_chars` characters of each.
    time: wall-clock seconds of the run inside the sandbox (interpreter start-up excluded).
    """

    passed: bool
    status: str
    reason: str
    stdout: str = ""
    stderr: str = ""
    time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_tests(
    program: str,
    tests: str,
    entry_point: str | None = None,
    timeout: float | None = None,
    limits: CodeLimits | None = None,
) -> CodeResult:
    """Run `program`, then `tests` in a namespace that holds the program's names, in a fresh sandbox.

    With `entry_point` (HumanEval's convention) the tests define `check(candidate)`, which is called with the
    program's `entry_point`; without it the tests are plain top-level asserts. The program runs with `__name__`
    set to "__candidate__", so its `if __name__ == "__main__":` block does not run. `timeout` overrides
    `limits.timeout`. Raises SandboxError when the sandbox itself fails, never for anything the program does.
    """
    if not isinstance(program, str) or not isinstance(tests, str):
        raise TypeError(f"program and tests must be str, got {type(program).__name__} and {type(tests).__name__}")
    if entry_point is not None and not (isinstance(entry_point, str) and entry_point.isidentifier()):
        raise ValueError(f"entry_point must be a Python identifier or None, got {entry_point!r}")
    limits = limits or CodeLimits()
    if timeout is not None:
        limits = replace(limits, timeout=timeout)
    job = {"program": program, "tests": tests, "entry_point": entry_point, "limits": limits.resolved()}
    result = _launch(job, limits.timeout)
    status = result["status"]
    return CodeResult(status == "passed", status, result["reason"], result["stdout"], result["stderr"], result["time"])


def run_many(
    jobs: Iterable[dict | tuple],
    workers: int | None = None,
    limits: CodeLimits | None = None,
    progress: bool = True,
) -> list[CodeResult]:
    """Run many jobs on a pool of `workers` (default: the CPU count); results come back in the jobs' order.

    A job is a tuple `(program, tests[, entry_point])` or a dict with keys program, tests and optionally
    entry_point, timeout, limits (a CodeLimits for that job; else `limits`). Threads are enough for the pool:
    every run is its own process tree, and a thread only waits for it.
    """
    calls = [_job_kwargs(i, job, limits) for i, job in enumerate(jobs)]
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = min(workers or os.cpu_count() or 1, max(len(calls), 1))
    results: list[CodeResult | None] = [None] * len(calls)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(calls), desc="code runs", disable=not progress) as bar:
        futures = {pool.submit(run_tests, **kwargs): i for i, kwargs in enumerate(calls)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return results  # type: ignore[return-value]


def _job_kwargs(index: int, job: dict | tuple, limits: CodeLimits | None) -> dict[str, Any]:
    if isinstance(job, tuple):
        if len(job) not in (2, 3):
            raise ValueError(f"job {index}: a tuple job is (program, tests[, entry_point]), got {len(job)} items")
        return {"program": job[0], "tests": job[1], "entry_point": job[2] if len(job) == 3 else None, "limits": limits}
    if isinstance(job, dict):
        unknown = set(job) - {"program", "tests", "entry_point", "timeout", "limits"}
        if unknown or not {"program", "tests"} <= set(job):
            raise ValueError(
                f"job {index}: a dict job needs keys program and tests (optional: entry_point, timeout, limits); "
                f"got {sorted(job)}"
            )
        return {"limits": limits, **job}
    raise TypeError(f"job {index}: expected a dict or a tuple, got {type(job).__name__}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al., 2021): 1 - C(n-c, k) / C(n, k).

    Computed as a product, 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if n < 1:
        raise ValueError(f"n (samples) must be at least 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c (correct samples) must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}]: pass@k needs at least k samples, got k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def isolation() -> dict[str, bool | str]:
    """Which isolation layers a run gets on this machine, found by running an empty job once (then cached).

    Keys: mode ("root", "userns" or "none"), network_namespace, pid_namespace, mount_namespace, fresh_proc,
    private_tmp, readonly_fs, uid_drop, capabilities_dropped, no_new_privs, process_limit, memory_cgroup and
    pids_cgroup ("v1"/"v2" or False), rlimits. A value that is a string explains a partial layer.
    """
    return dict(_probe_isolation())


@functools.cache
def _probe_isolation() -> dict[str, bool | str]:
    job = {"program": "", "tests": "", "entry_point": None, "limits": CodeLimits().resolved()}
    result = _launch(job, CodeLimits().timeout)
    if "layers" not in result:
        raise SandboxError(f"the isolation probe did not finish: {result['reason']}")
    return result["layers"]


def _launch(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run `job` on a warm launcher (`launchers`) and return its result; a backstop kills the launcher if it stops
    answering."""
    start = time.monotonic()
    result = launchers.run(job, timeout + _BACKSTOP_S, _JAIL)
    if result is None:
        elapsed = time.monotonic() - start
        return _result("timeout", f"wall clock {timeout:g} s (the sandbox stopped answering and was killed)", elapsed)
    if "sandbox_error" in result:
        raise SandboxError(f"the sandbox could not start: {result['sandbox_error']}")
    return result


def start_launchers(workers: int | None = None) -> None:
    """Start `workers` warm launchers now (default: the CPU count), each with a sandbox prepared for the default
    limits, rather than at the first runs (~0.3 s each). A server or a benchmark calls this at startup."""
    count = workers or os.cpu_count() or 1
    probe = {"program": "", "tests": "", "entry_point": None, "limits": CodeLimits().resolved()}
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda _: _launch(probe, CodeLimits().timeout), range(count)))


def shutdown() -> None:
    """Stop the warm launchers now (they also stop at exit); the next run starts new ones."""
    launchers.shutdown()


def _result(status: str, reason: str, elapsed: float) -> dict[str, Any]:
    return {"status": status, "reason": reason, "stdout": "", "stderr": "", "time": elapsed}
