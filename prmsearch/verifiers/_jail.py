"""Sandbox launcher of the code verifier: `python -I _jail.py` reads one JSON job on stdin, runs it, and writes one
JSON result on stdout. It imports only the standard library (nothing of prmsearch or its dependencies is loaded into
the process that forks the candidate), and it runs as a fresh, single-threaded interpreter, which `unshare` and
`fork` need.

Process tree when started as root (the strongest mode; DESIGN.md, "Verifiers"):

    launcher   new network, pid, IPC and UTS namespaces; per-run cgroup; reads the pipes, enforces the wall clock
      init     pid 1 of the new pid namespace, root, private mount namespace: fresh /proc, every mount read-only,
               empty tmpfs over /tmp /var/tmp /dev/shm /run /root /home, the interpreter re-exposed read-only
        harness  drops to a uid of its own with rlimits and no_new_privs, runs program and tests in-process,
                 writes the verdict record, and exits at once

Killing init kills everything in its pid namespace, however the candidate forked, daemonized or threaded. Without
root the launcher tries an unprivileged user namespace (same tree, capabilities dropped instead of the uid), and
without that it falls back to rlimits, a process group and a host temporary directory. The layers a run got are in
its result ("layers") so callers can tell.

The verdict comes only from the record the harness writes after the tests ran (tagged with a per-run token), never
from an exit code, so `os._exit(0)` or `sys.exit(0)` before the tests cannot pass. A program written to forge the
record from inside the harness (walking its frames for the token) is out of scope: the sandbox guarantees the host's
safety, and the harness guards against the usual ways code fakes tests (patched builtins, tracers, threads).
"""

import builtins
import ctypes
import gc
import json
import os
import re
import resource
import selectors
import signal
import sys
import threading
import time
import types

# Modules tests commonly import, loaded before the harness's snapshot so that a program's patches to them are undone.
PRELOADED = ("bisect", "cmath", "collections", "copy", "fractions", "functools", "heapq", "itertools", "math")
PRELOADED += ("operator", "random", "re", "statistics", "string", "typing")
for _name in PRELOADED:
    __import__(_name)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 1, 24, 38, 47, 4

SANDBOX_UID_BASE = 2_000_000_000  # + launcher pid: a uid no one else has, so RLIMIT_NPROC counts this run only
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home")
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # the world-writable ones: the candidate may write here (tmpfs)
WORKDIR = "/tmp/work"
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
DEV_LINKS = {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1"}
DEV_LINKS["/dev/stderr"] = "/proc/self/fd/2"
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203, "s390x": 217}
MNT_DETACH = 2
_WARM: dict = {}  # what a serving launcher finds once and its forked sandboxes inherit (`serve`)
AHEAD = 3  # sandboxes a serving launcher keeps prepared for the next jobs
SETUP_FAILED = 70  # init's exit code when it could not build the sandbox
HARNESS_FAILED = 71  # the harness's, when it could not even report (it reports out-of-memory itself)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class SetupError(Exception):
    """The sandbox could not be built; reported to the caller as a sandbox error, never as the candidate's fault."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _bytes(s):
    return None if s is None else s.encode()


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source, target: str, fstype, flags: int, data=None) -> None:
    _check(_libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)), f"mount {target}")


def _prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------------- launcher


def main() -> int:
    """One job on stdin, its result on stdout; with --serve, framed jobs until stdin closes (`serve`)."""
    if sys.argv[1:] == ["--serve"]:
        return serve()
    job = json.loads(sys.stdin.buffer.read())
    _launch(job["limits"], job.get("mode", "auto"), None, lambda: job, lambda result: print(json.dumps(result)))
    return 0


def serve() -> int:
    """Run framed jobs (`_read_frame`) one after another, each in a sandbox of its own, until stdin closes.

    What makes this faster than a fresh interpreter per job: each sandbox is a fork of this warm, single-threaded
    process (which never runs candidate code), and the next jobs' sandboxes (namespaces, cgroups, file system, a
    harness waiting for its program) are built while the current job runs: building one takes longer than a short
    run (joining a cgroup waits on the kernel), so `AHEAD` of them are kept in the making and a job waits only for
    its own run. Prepared sandboxes fit jobs of the same limits and mode; a job with others gets new ones.
    """
    plan = _root_plan()
    _WARM.update(snapshot=_snapshot(), cgroups=(_cgroup_mounts(), _own_cgroups()))
    ready: list = []
    while True:
        job = _read_frame(0)
        if job is None:
            break
        key = json.dumps([job["limits"], job.get("mode", "auto")], sort_keys=True)
        if ready and ready[0].key != key:
            for sandbox in ready:
                sandbox.cancel()
            ready = []
        current = ready.pop(0) if ready else Prepared(key, job["limits"], job.get("mode", "auto"), plan)
        current.send(job)
        while len(ready) < AHEAD:
            ready.append(Prepared(key, job["limits"], job.get("mode", "auto"), plan))
        _write_frame(1, current.result())
        _reap()
    for sandbox in ready:
        sandbox.cancel()
    _reap(block=True)  # launchers still removing their cgroups: leaving now would kill them (PDEATHSIG) mid-way
    return 0


def _reap(block: bool = False) -> None:
    """Collect launchers that finished cleaning up; wait for those still at it only when `block`."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _read_frame(fd: int):
    """A length-prefixed JSON message (8 bytes big-endian, then the JSON), or None at end of file."""
    head = _read_exactly(fd, 8)
    return None if head is None else json.loads(_read_exactly(fd, int.from_bytes(head, "big")) or b"null")


def _read_exactly(fd: int, size: int):
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _write_frame(fd: int, message) -> None:
    data = json.dumps(message).encode()
    _write_all(fd, len(data).to_bytes(8, "big") + data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _deliver(fd: int, result: dict) -> None:
    _write_frame(fd, result)
    os.close(fd)  # the server reads to end of file: it has the result now, while this launcher cleans up


class Prepared:
    """One sandbox built ahead of its job: a forked launcher (`_launch`) that waits for the job on a pipe."""

    def __init__(self, key: str, limits: dict, mode: str, plan: dict) -> None:
        self.key = key
        job_r, self.job_w = os.pipe()
        self.result_r, result_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 0
            try:
                _keep_only(job_r, result_w)  # not another run's pipes: this sandbox must not reach them
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the server gone -> this launcher, then its sandbox
                _launch(limits, mode, plan, lambda: _read_frame(job_r), lambda result: _deliver(result_w, result))
            except BaseException as e:  # noqa: B036 - report, never return into the server's loop
                code = SETUP_FAILED
                try:
                    _write_frame(result_w, {"sandbox_error": f"the launcher failed: {type(e).__name__}: {e}"})
                except BaseException:  # noqa: B036
                    pass
            os._exit(code)
        os.close(job_r)
        os.close(result_w)

    def send(self, job: dict) -> None:
        try:
            _write_frame(self.job_w, job)
        except OSError:
            pass  # the launcher is gone; result() says how
        os.close(self.job_w)

    def result(self) -> dict:
        data = bytearray()
        while chunk := os.read(self.result_r, 1 << 16):
            data += chunk
        os.close(self.result_r)
        try:
            return json.loads(bytes(data[8:]))  # the launcher still cleans up; `serve` reaps it later
        except ValueError:
            pass
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return {"sandbox_error": f"the launcher ended without a result ({_describe_status(status)})"}

    def cancel(self) -> None:
        """Closing the job pipe unprepared tells the launcher to take its sandbox down and exit."""
        os.close(self.job_w)
        os.close(self.result_r)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # it ended early and `_reap` collected it


def _keep_only(*keep: int) -> None:
    """Close every file descriptor but stderr and `keep`; stdin and stdout (the host's pipes) go to /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2 and int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own descriptor, already closed


def _launch(limits: dict, mode: str, plan: dict, receive, deliver) -> None:
    """Build a sandbox for `limits`, wait for the job (`receive()`; None: cancelled), run it, `deliver` the result.

    The wall clock starts when the job arrives: building the sandbox is not the candidate's time.
    """
    token = os.urandom(16).hex()
    layers = dict.fromkeys(("network_namespace", "pid_namespace", "mount_namespace", "fresh_proc"), False)
    layers.update(mode="none", private_tmp=False, readonly_fs=False, minimal_root=False)
    layers.update(memory_cgroup=False, pids_cgroup=False)
    userns = _enter_namespaces(mode, layers)
    uid = SANDBOX_UID_BASE + os.getpid() if os.geteuid() == 0 and not userns else None
    cgroups = _make_cgroups(limits, layers) if os.geteuid() == 0 and not userns else []
    pipes = {name: os.pipe() for name in ("out", "err", "res", "st", "job")}
    pid = os.fork()
    if pid == 0:
        _init_or_report(limits, token, uid, userns, cgroups, layers, plan, pipes)
    for name, (r, w) in pipes.items():
        os.close(r if name == "job" else w)
    try:
        os.setpgid(pid, pid)  # init does the same; whichever runs first wins the race
    except OSError:
        pass
    run = {}
    try:
        job = receive()
        if job is None:
            _kill_group(pid)
            os.waitpid(pid, 0)
            return
        start = time.monotonic()
        try:
            _write_all(pipes["job"][1], json.dumps(job).encode())
        except OSError:
            pass  # init or the harness ended early; the status pipe says why
        os.close(pipes["job"][1])
        run = _supervise(pid, limits, *(pipes[n][0] for n in ("out", "err", "res", "st")), start)
        if "harness_status" not in run:  # init's own end explains the run; else reap it after delivering (its
            run["init_status"] = os.waitpid(pid, 0)[1]  # namespaces' teardown takes milliseconds)
        deliver(_classify(run, limits, token, cgroups, layers))
        if "init_status" not in run:
            os.waitpid(pid, 0)
    finally:
        _remove_cgroups(cgroups)
        if run.get("host_workdir"):
            import shutil

            shutil.rmtree(run["host_workdir"], ignore_errors=True)


def _init_or_report(limits, token, uid, userns, cgroups, layers, plan, pipes) -> None:
    """The forked init's entry: run `_init`; whatever happens, never return into the launcher."""
    st_w = pipes["st"][1]
    try:
        _keep_only(*(w for name, (_, w) in pipes.items() if name != "job"), pipes["job"][0])  # no other run's pipe
        _init(limits, token, uid, userns, cgroups, layers, plan, pipes)
    except BaseException as e:  # noqa: B036 - whatever happened, init must not return into the launcher
        try:
            import traceback

            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{frame.name}, _jail.py line {frame.lineno}"
            os.write(st_w, json.dumps({"setup_error": f"{type(e).__name__}: {e} (in {where})"}).encode() + b"\n")
        except BaseException:  # noqa: B036
            pass
    os._exit(SETUP_FAILED)


def _enter_namespaces(mode: str, layers: dict) -> bool:
    """Enter new network/pid/IPC/UTS namespaces; returns whether that took an unprivileged user namespace.

    The launcher itself moves into the new network namespace (it needs no network); the new pid namespace applies
    to its children, the first of which becomes pid 1.
    """
    flags = CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if mode == "none":
        return False
    if os.geteuid() == 0:
        try:
            _unshare(flags)
            layers.update(mode="root", network_namespace=True, pid_namespace=True)
            return False
        except OSError:
            pass
    uid, gid = os.getuid(), os.getgid()
    try:
        _unshare(flags | CLONE_NEWUSER)
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"0 {uid} 1")
        _write_file("/proc/self/gid_map", f"0 {gid} 1")
    except OSError:
        return False
    layers.update(mode="userns", network_namespace=True, pid_namespace=True)
    return True


def _make_cgroups(limits: dict, layers: dict) -> list[str]:
    """A per-run memory and pids cgroup (v2 where those controllers are enabled, else v1); best effort.

    The memory cgroup caps the run as a whole (all its processes, and the tmpfs pages they write), which RLIMIT_AS
    cannot: that one is per process. Under v2 the cgroup goes beside ours, under the nearest ancestor that enables
    the controllers (ours usually holds processes, so it cannot enable them for a child).
    """
    name = f"prmsearch-{os.getpid()}"
    settings = {
        "memory": {"memory.max": limits["memory_mb"] << 20, "memory.swap.max": 0},
        "pids": {"pids.max": limits["max_processes"] + 1},  # + init
    }
    v1_settings = {"memory": {"memory.limit_in_bytes": limits["memory_mb"] << 20}, "pids": settings["pids"]}
    mounts, own = _WARM.get("cgroups") or (_cgroup_mounts(), _own_cgroups())
    made = []
    if "cgroup2" in mounts and "" in own:
        parent, enabled = _enabling_ancestor(mounts["cgroup2"], own[""])
        if enabled and _mkdir(os.path.join(parent, name), made):
            for controller in enabled:
                if _write_settings(made[-1], settings[controller]):
                    layers[f"{controller}_cgroup"] = "v2"
    for controller in ("memory", "pids"):
        if layers[f"{controller}_cgroup"] or controller not in mounts or controller not in own:
            continue
        if _mkdir(os.path.join(mounts[controller] + own[controller], name), made):
            if _write_settings(made[-1], v1_settings[controller]):
                layers[f"{controller}_cgroup"] = "v1"
    return made


def _enabling_ancestor(root: str, path: str) -> tuple[str, list[str]]:
    """The nearest cgroup, ours or an ancestor, whose subtree_control enables memory or pids, and which ones."""
    while True:
        try:
            with open(os.path.join(root + path, "cgroup.subtree_control")) as f:
                enabled = [c for c in ("memory", "pids") if c in f.read().split()]
        except OSError:
            enabled = []
        if enabled or not path:
            return root + path, enabled
        path = path.rsplit("/", 1)[0]


def _mkdir(path: str, made: list[str]) -> bool:
    try:
        os.mkdir(path)
    except OSError:
        return False
    made.append(path)
    return True


def _write_settings(path: str, settings: dict) -> bool:
    """Write each limit; True when the first (the one that matters) took. Swap limits are absent without swap."""
    ok = []
    for file, value in settings.items():
        try:
            _write_file(os.path.join(path, file), str(value))
            ok.append(True)
        except OSError:
            ok.append(False)
    return ok[0]


def _cgroup_mounts() -> dict[str, str]:
    """Mount point of each v1 controller (by name) and of the v2 hierarchy (key "cgroup2")."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup2":
                mounts.setdefault("cgroup2", _unescape(fields[4]))
            elif fstype == "cgroup":
                for opt in options:
                    mounts.setdefault(opt, _unescape(fields[4]))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per controller ("" for v2), from /proc/self/cgroup."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                own[controller] = "" if path == "/" else path
    return own


def _remove_cgroups(cgroups: list[str]) -> None:
    """rmdir each cgroup; it can take a moment after the last process is reaped before the kernel lets go."""
    for path in reversed(cgroups):
        for _ in range(40):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


def _supervise(pid: int, limits: dict, out_r: int, err_r: int, res_r: int, st_r: int, start: float) -> dict:
    """Read the pipes until init is gone; kill init on the wall clock or the output limit. Returns what happened."""
    keep = 4 * limits["tail_chars"]  # bytes enough for tail_chars characters of UTF-8
    buffers = {"out": bytearray(), "err": bytearray(), "res": bytearray(), "st": bytearray()}
    sel = selectors.DefaultSelector()
    for fd, kind in ((out_r, "out"), (err_r, "err"), (res_r, "res"), (st_r, "st")):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, kind)
    deadline = start + limits["timeout"]
    total, killed, end = 0, None, None  # end: when init exited or was killed; then the pipes get 1 s to drain
    while sel.get_map():
        now = time.monotonic()
        if end is None and now >= deadline:
            killed, end = "timeout", now
            _kill_group(pid)
        if end is not None and now >= end + 1.0:
            break
        for key, _ in sel.select((deadline if end is None else end + 1.0) - now):
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fd)
                os.close(key.fd)
                if key.data == "st" and end is None:
                    end = time.monotonic()  # only init holds the status pipe: init has exited
                    _kill_group(pid)  # leftovers in its process group (the only reach without a pid namespace)
                continue
            buf = buffers[key.data]
            buf += data
            if key.data == "st":
                continue
            total += len(data)
            if key.data != "res" and len(buf) > keep:
                del buf[:-keep]
            if total > limits["max_output_bytes"] and end is None:
                killed, end = "output", time.monotonic()
                _kill_group(pid)
    for fd in list(sel.get_map()):
        os.close(fd)
    end = end or time.monotonic()
    messages = [json.loads(line) for line in buffers["st"].decode().splitlines() if line.strip()]
    info = {k: v for m in messages for k, v in m.items()}
    tail = limits["tail_chars"]
    return {
        **info,
        "killed": killed,
        "time": end - start,
        "stdout": buffers["out"].decode("utf-8", "replace")[-tail:],
        "stderr": buffers["err"].decode("utf-8", "replace")[-tail:],
        "record": bytes(buffers["res"]),
    }


def _kill_group(pid: int) -> None:
    """SIGKILL init and its process group. With a pid namespace, init's death takes every process in it along."""
    for kill in (os.kill, os.killpg):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _classify(run: dict, limits: dict, token: str, cgroups: list[str], layers: dict) -> dict:
    """The result: status and a one-line reason a user can act on. The record decides; signals explain the rest."""
    layers.update(run.get("layers", {}))
    result = {"stdout": run["stdout"], "stderr": run["stderr"], "time": round(run["time"], 4), "layers": layers}
    record = _parse_record(run["record"], token)
    if "setup_error" in run:
        return {**result, "sandbox_error": run["setup_error"]}
    if record and record[0] == "sandbox-error":
        return {**result, "sandbox_error": record[1]}
    if run["killed"] == "output":
        status, reason = "killed", f"output limit: more than {limits['max_output_bytes']} bytes of stdout+stderr"
    elif record:
        status, reason = record
    elif run["killed"] == "timeout":
        status, reason = "timeout", f"wall clock {limits['timeout']:g} s"
    elif "harness_status" not in run:
        status, reason = "error", f"the sandbox's init ended without a report ({_describe_status(run['init_status'])})"
        if _oom_kills(cgroups):
            status, reason = "killed", f"killed by SIGKILL (memory limit {limits['memory_mb']} MB)"
    else:
        status, reason = _classify_exit(run["harness_status"], run.get("harness_cpu", 0.0), limits, cgroups)
    return {**result, "status": status, "reason": reason}


def _parse_record(data: bytes, token: str) -> tuple[str, str] | None:
    """The harness's record is `token \\0 status \\0 reason \\0 token`; anything else on the pipe is ignored."""
    tag = token.encode()
    start = data.find(tag + b"\0")
    stop = data.find(b"\0" + tag, start + 1) if start >= 0 else -1
    if stop < 0:
        return None
    fields = data[start + len(tag) + 1 : stop].decode("utf-8", "replace").split("\0", 1)
    return (fields[0], fields[1]) if len(fields) == 2 else None


def _classify_exit(status: int, cpu: float, limits: dict, cgroups: list[str]) -> tuple[str, str]:
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == HARNESS_FAILED:
            return "error", "the test harness failed before it could report; see stderr"
        return "error", f"exited with code {code} without reporting a verdict (os._exit? closed file descriptors?)"
    sig = os.WTERMSIG(status)
    name = _signal_name(sig)
    cpu_limit = limits["cpu_seconds"]
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= cpu_limit - 0.05):
        cause = f"cpu limit {cpu_limit} s"
    elif sig == signal.SIGKILL and _oom_kills(cgroups):
        cause = f"memory limit {limits['memory_mb']} MB"
    elif sig == signal.SIGXFSZ:
        cause = f"file size limit {limits['max_file_mb']} MB"
    elif sig == signal.SIGSEGV:
        cause = "segmentation fault: recursion too deep, or a crash in C code"
    else:
        cause = ""
    return "killed", f"killed by {name}" + (f" ({cause})" if cause else "")


def _oom_kills(cgroups: list[str]) -> int:
    count = 0
    for path in cgroups:
        for file in ("memory.oom_control", "memory.events"):
            try:
                with open(os.path.join(path, file)) as f:
                    count += sum(int(line.split()[1]) for line in f if line.startswith("oom_kill "))
            except (OSError, ValueError, IndexError):
                pass
    return count


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {_signal_name(os.WTERMSIG(status))}"
    return f"exit code {os.WEXITSTATUS(status)}"


# -------------------------------------------------------------------------------------------------------- init


def _init(limits, token, uid, userns, cgroups, layers, plan, pipes) -> None:
    """pid 1: join the cgroups, build the file system view, fork the harness, and report how it ended."""
    (out_w, err_w, res_w, st_w), job_r = (pipes[n][1] for n in ("out", "err", "res", "st")), pipes["job"][0]
    os.setpgid(0, 0)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the launcher killed (host backstop) -> the whole sandbox goes
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the launcher's stdio talks to the host; nothing below it may touch that
        os.dup2(null, fd)
    os.close(null)
    os.umask(0o022)
    for path in cgroups:
        _write_file(os.path.join(path, "cgroup.procs"), "0")
    report = {"layers": {}}
    workdir = _build_filesystem(limits, uid, layers, report, plan) if layers["mode"] != "none" else None
    if workdir is None:
        import tempfile

        workdir = report["host_workdir"] = tempfile.mkdtemp(prefix="prmsearch-run-")
        if uid is not None:
            os.chown(workdir, uid, uid)
    if layers["mode"] != "none":
        _libc.sethostname(b"sandbox", 7)  # its own UTS namespace; a failure changes nothing that matters
    pid = os.fork()
    if pid == 0:
        try:
            os.close(st_w)
            _harness(job_r, limits, token, uid, userns, workdir, out_w, err_w, res_w)
        finally:
            os._exit(HARNESS_FAILED)
    for fd in (out_w, err_w, res_w, job_r):
        os.close(fd)
    report["layers"].update(
        uid_drop=uid is not None,
        capabilities_dropped=uid is not None or userns,
        no_new_privs=True,
        process_limit=True if (uid is not None or userns) else "RLIMIT_NPROC, shared with the host user",
        rlimits=True,
    )
    os.write(st_w, json.dumps(report).encode() + b"\n")
    while True:  # as pid 1, also reap the orphans the candidate leaves behind
        try:
            child, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        if child == pid:
            cpu = usage.ru_utime + usage.ru_stime
            os.write(st_w, json.dumps({"harness_status": status, "harness_cpu": cpu}).encode() + b"\n")
            break
    os._exit(0)


def _build_filesystem(limits: dict, uid, launcher_layers: dict, report: dict, plan):
    """Private mount namespace and, where pivot_root works, a minimal root (`_minimal_root`); else the host's
    file system read-only, empty tmpfs over the hidden dirs, the interpreter visible.

    Returns the work dir (inside the new /tmp), or None when no mount namespace could be made. The work dir lives in
    the tmpfs itself: a dir on the host file system under an overmount would let `..` walk back to the host.
    """
    layers = report["layers"]
    try:
        _unshare(CLONE_NEWNS)
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError:
        return None
    layers["mount_namespace"] = True
    fresh_proc = launcher_layers["pid_namespace"]
    if os.uname().machine in SYS_PIVOT_ROOT and os.path.isdir("/tmp") and not os.path.islink("/tmp"):
        try:
            workdir = _minimal_root(limits, uid, plan or _root_plan(), fresh_proc, layers)
        except OSError:
            _libc.umount2(b"/tmp", MNT_DETACH)  # the half-built root; the host-wide read-only view below instead
        else:
            layers.update(minimal_root=True, readonly_fs=True, private_tmp=True)
            return workdir
    hidden = [d for d in HIDDEN_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    needed = _interpreter_paths(hidden)
    sources = {}
    for path in needed:
        try:
            sources[path] = os.open(path, os.O_PATH)
        except OSError:  # a path this user cannot reach is one the candidate could not read either
            pass
    if fresh_proc:
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except OSError:
            fresh_proc = False
    layers["fresh_proc"] = fresh_proc
    failed = [mp for mp in _mount_points() if not _under(mp, hidden + ["/proc"]) and not _remount_readonly(mp)]
    layers["readonly_fs"] = True if not failed else "partial: not read-only: " + " ".join(failed[:5])
    try:
        for d in hidden:
            scratch = d in SCRATCH_DIRS
            size = f"size={limits['max_file_mb']}m,nr_inodes=4096,mode=1777" if scratch else "size=1m,mode=755"
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, size)
        for path, fd in sources.items():
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            os.close(fd)
            if not _remount_readonly(path):
                raise SetupError(f"could not make {path} read-only")
        os.mkdir(WORKDIR, 0o700)
        if uid is not None:
            os.chown(WORKDIR, uid, uid)
    except OSError as e:
        raise SetupError(f"could not build the private file system view: {e}") from e
    layers["private_tmp"] = True
    return WORKDIR


def _minimal_root(limits: dict, uid, plan: dict, fresh_proc: bool, layers: dict) -> str:
    """A new root on an empty tmpfs holding only what the interpreter needs, each bound read-only from the host: its
    standard library and packages, the folders of the shared libraries it loads, the executable, the loader's cache
    (`_root_plan`); a few devices, fresh /proc, scratch tmpfs at /tmp, /var/tmp and /dev/shm. Then pivot_root
    into it and detach the host's root, so no other host path can be named at all. Returns the work dir."""
    root = "/tmp"
    sources = {path: os.open(path, os.O_PATH) for path in [*plan["dirs"], *plan["files"], *DEVICES]}
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    for path, fd in sources.items():
        _bind_readonly(fd, root + path, directory=path in plan["dirs"], devices=path in DEVICES)
        os.close(fd)
    for path in plan["empty"]:  # e.g. the base interpreter's site-packages inside its standard library folder
        _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=755")
    for link, target in [*plan["links"], *DEV_LINKS.items()]:
        os.makedirs(os.path.dirname(root + link), exist_ok=True)
        if not os.path.lexists(root + link):
            os.symlink(target, root + link)
    for d in SCRATCH_DIRS:
        os.makedirs(root + d, exist_ok=True)
        size = f"size={limits['max_file_mb']}m,nr_inodes=4096,mode=1777"
        _mount("tmpfs", root + d, "tmpfs", MS_NOSUID | MS_NODEV, size)
    os.mkdir(root + "/proc")
    if fresh_proc:
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        layers["fresh_proc"] = True
    os.mkdir(root + WORKDIR, 0o700)
    if uid is not None:
        os.chown(root + WORKDIR, uid, uid)
    os.chdir(root)
    _check(_libc.syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount the host root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return WORKDIR


def _bind_readonly(fd: int, target: str, directory: bool, devices: bool) -> None:
    """Bind the host path open as `fd` (O_PATH) at `target`, read-only; device nodes keep working (no nodev)."""
    if directory:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | (0 if devices else MS_NODEV)
    try:
        _mount(None, target, None, flags)
    except OSError:  # a mount locked by a user namespace keeps its flags; read-only is what must take
        if not _remount_readonly(target):
            raise


def _root_plan() -> dict:
    """What `_minimal_root` shows, from the host as the launcher finds it (once per launcher process): the standard
    library and the other folders on the interpreter's path (its installed packages: programs import numpy), the
    folders of every shared library the interpreter maps once all its extension modules are loaded
    (`_loaded_libraries`), the executable and /etc/ld.so.cache as single files, the symlinks on the way to each
    (`/lib -> usr/lib`, a venv's `bin/python`), and a base interpreter's own site-packages hidden when a venv's
    are the ones in use."""
    stdlib = os.path.dirname(os.__file__)
    exe = os.path.realpath(sys.executable) if sys.executable else ""
    paths = {os.path.realpath(p) for p in [stdlib, *sys.path] if p and os.path.isdir(p)}  # installed packages too
    dirs = sorted(paths | {os.path.dirname(f) for f in _loaded_libraries() if f != exe})
    dirs = [d for i, d in enumerate(dirs) if not _under(d, dirs[:i])]
    files = [f for f in (exe, "/etc/ld.so.cache") if f and os.path.isfile(f) and not _under(f, dirs)]
    links: dict = {}
    for path in [stdlib, *sys.path, *dirs, *files, sys.executable, _elf_interpreter(exe)]:
        if path and os.path.exists(path):
            _collect_links(path, links, 40)
    real_stdlib = os.path.realpath(stdlib)
    empty = [p for p in (real_stdlib + "/site-packages", real_stdlib + "/dist-packages") if os.path.isdir(p)]
    empty = [p for p in empty if p not in paths]  # the base interpreter's packages, unless they are this one's
    links = {k: v for k, v in links.items() if not _under(k, dirs)}
    return {"dirs": dirs, "files": files, "links": sorted(links.items()), "empty": empty}


def _loaded_libraries() -> list:
    """Every file the interpreter maps after importing each extension module of its standard library, found in a
    throwaway child (imports have side effects) with its output going nowhere."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            signal.alarm(20)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            dynload = os.path.join(os.path.dirname(os.__file__), "lib-dynload")
            for name in sorted(os.listdir(dynload)) if os.path.isdir(dynload) else []:
                try:
                    __import__(name.split(".")[0])
                except BaseException:  # noqa: B036, S110 - a module this machine cannot load is not needed
                    pass
            with open("/proc/self/maps") as f:
                mapped = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
            _write_all(w, json.dumps(sorted(p for p in mapped if p.startswith("/") and os.path.isfile(p))).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = bytearray()
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data) if data else []


def _collect_links(path: str, links: dict, depth: int) -> None:
    """Record every symlink met on the way to `path` (link -> target), following each to the end."""
    parts = [p for p in path.split("/") if p]
    current = "/"
    for i, part in enumerate(parts):
        candidate = os.path.join(current, part)
        if os.path.islink(candidate) and depth > 0:
            target = os.readlink(candidate)
            links[candidate] = target
            resolved = os.path.normpath(os.path.join(current, target))
            _collect_links(os.path.join(resolved, *parts[i + 1 :]), links, depth - 1)
            return
        current = candidate


def _elf_interpreter(path: str):
    """The program loader a 64-bit ELF executable names (PT_INTERP), needed to run the interpreter again inside."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return None
            order = "little" if head[5] == 1 else "big"
            offset, size, count = (int.from_bytes(head[a:b], order) for a, b in ((32, 40), (54, 56), (56, 58)))
            f.seek(offset)
            table = f.read(size * count)
            for entry in (table[i * size : (i + 1) * size] for i in range(count)):
                if int.from_bytes(entry[:4], order) == 3:  # PT_INTERP
                    f.seek(int.from_bytes(entry[8:16], order))
                    return f.read(int.from_bytes(entry[32:40], order)).rstrip(b"\0").decode()
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _interpreter_paths(hidden: list[str]) -> list[str]:
    """Paths the interpreter needs (prefixes, sys.path, the executable) that lie under a dir about to be hidden."""
    candidates = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable)]
    candidates += [p for p in sys.path if p]
    paths = set()
    for p in candidates:
        for q in (os.path.abspath(p), os.path.realpath(p)):
            if os.path.exists(q) and _under(q, hidden) and q not in hidden:
                paths.add(q if os.path.isdir(q) else os.path.dirname(q))
    executable = os.path.realpath(sys.executable)
    if _under(executable, hidden):
        paths.add(os.path.dirname(executable))
    ordered = sorted(paths)
    return [p for i, p in enumerate(ordered) if not _under(p, ordered[:i]) and p not in hidden]


def _under(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return list(dict.fromkeys(_unescape(line.split()[4]) for line in f))


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _remount_readonly(path: str) -> bool:
    """Make this mount read-only in this mount namespace only. MS_BIND is what keeps it per-mount: without it the
    remount would change the file system itself, for the host too. The mount's other flags are kept as they are
    (changing them is refused for mounts locked by a user namespace)."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return False
    keep = f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)  # same bit values as ST_*
    if f & os.ST_RELATIME:
        keep |= MS_RELATIME
    try:
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------- harness


def _harness(job_r, limits, token, uid, userns, workdir, out_w, err_w, res_w) -> None:
    """The candidate's process: lock it down, wait for the job, run program and tests, write the verdict record."""
    write, exit_ = os.write, os._exit

    out_of_memory = (token + "\0error\0MemoryError: the harness ran out of memory\0" + token).encode()

    def verdict(status: str, reason: str) -> None:
        try:
            record = (token + "\0" + status + "\0" + reason + "\0" + token).encode("utf-8", "replace")
        except BaseException:  # noqa: B036 - out of memory: no room even for the record
            record = out_of_memory
        try:
            write(res_w, record)
        finally:
            exit_(0)

    try:
        _write_file("/proc/self/oom_score_adj", "1000")  # when the run is out of memory, kill the candidate, not init
        _lock_down(limits, uid, userns)
        os.chdir(workdir)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        os.environ.clear()
        os.environ.update(env, USER="sandbox", LOGNAME="sandbox")
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (null, out_w, err_w):
            os.close(fd)
        sys.stdout.reconfigure(line_buffering=True)
    except (OSError, SetupError) as e:
        verdict("sandbox-error", f"could not lock down the candidate's process: {e}")
    restore = _WARM.get("snapshot") or _snapshot()  # before the job comes: the program's time is the program's
    job = _receive_job(job_r)
    if job is None:
        exit_(0)  # the launcher was cancelled before a job came
    _run(job["program"], job["tests"], job.get("entry_point"), verdict, restore)


def _receive_job(fd: int):
    """The job the launcher forwards (JSON up to end of file), or None when the pipe closes empty."""
    data = bytearray()
    while chunk := os.read(fd, 1 << 20):
        data += chunk
    os.close(fd)
    return json.loads(data) if data else None


def _lock_down(limits: dict, uid, userns: bool) -> None:
    """rlimits, no_new_privs, and no privileges: a uid of its own when root, no capabilities in a user namespace."""
    cpu = limits["cpu_seconds"]
    nproc = limits["max_processes"] + (2 if userns else 0)  # a user namespace's count includes launcher and init
    for res, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # soft: SIGXCPU; hard a second later: SIGKILL, if that is ignored
        (resource.RLIMIT_AS, (limits["memory_mb"] << 20,) * 2),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_FSIZE, (limits["max_file_mb"] << 20,) * 2),
        (resource.RLIMIT_NOFILE, (limits["max_open_files"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, value)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if os.geteuid() != uid or os.getegid() != uid:
            raise SetupError(f"uid drop to {uid} did not take")
    elif userns:
        _drop_capabilities()


def _drop_capabilities() -> None:
    """Empty bounding, ambient, effective, permitted and inheritable sets: ns-root can no longer mount or unmount."""
    cap = 0
    while _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(header, data), "capset")


def _run(program: str, tests: str, entry_point, verdict, restore) -> None:
    """Exec the program, undo what it did to the interpreter, exec the tests, call check(entry point).

    Everything this needs after the program ran is bound to locals first: the program may patch builtins, modules
    and this script's globals.
    """
    leave_threads_behind = _thread_escape()
    assertion_error, base_exception, run_exec, run_compile = AssertionError, BaseException, exec, compile
    flush_output, streams = _flush_output, (sys.stdout, sys.stderr)
    namespace = _candidate_namespace()
    memory_error = MemoryError

    def fail(status: str, exc: BaseException, stage: str) -> None:
        try:
            restore()
            reason = _describe(exc, stage)
        except base_exception:
            reason = "MemoryError" if isinstance(exc, memory_error) else "the harness failed to describe the error"
        verdict(status, reason)

    try:
        run_exec(run_compile(program, "<program>", "exec"), namespace)
    except base_exception as e:
        namespace.clear()  # the program's objects: a memory bomb's memory, before anything else is allocated
        fail("error", e, "program")

    leave_threads_behind(fail)
    restore()
    shadowing = set(vars(builtins))
    scope = {k: v for k, v in namespace.items() if k not in shadowing and not (k[:2] == k[-2:] == "__")}
    scope.update(__name__="__tests__", __builtins__=builtins)
    try:
        run_exec(run_compile(tests, "<tests>", "exec"), scope)
        if entry_point:
            if "check" not in scope:
                verdict("error", "the tests define no check(candidate) function, yet an entry point was given")
            if entry_point not in namespace:
                verdict("error", f"the program defines no {entry_point!r} (the entry point)")
            scope["check"](namespace[entry_point])
    except assertion_error as e:
        fail("failed", e, "tests")
    except base_exception as e:
        namespace.clear()
        scope.clear()
        fail("error", e, "tests")
    flush_output(streams)  # no restore needed: what runs from here on was bound before the program ran
    verdict("passed", "all tests passed")


def _candidate_namespace() -> dict:
    """The globals the program runs in: a module registered by name, so pickle (multiprocessing) finds the program's
    functions as __candidate__.f."""
    module = types.ModuleType("__candidate__")
    sys.modules["__candidate__"] = module
    namespace = vars(module)
    namespace["__builtins__"] = builtins
    return namespace


def _thread_escape():
    """A function that, called after the program ran, goes on in a forked child when the program left threads
    running: only the forking thread exists in the child, so those threads cannot meddle with the tests. This process
    waits and ends the way the child did.

    Called before the program runs, like `_snapshot`: what the returned function uses is bound here, out of the
    program's reach."""
    fork, waitpid, listdir, kill, getpid, exit_ = os.fork, os.waitpid, os.listdir, os.kill, os.getpid, os._exit
    sig_dfl, set_signal, thread_count = signal.SIG_DFL, signal.signal, threading.active_count
    wifsignaled, wtermsig, waitstatus_to_exitcode = os.WIFSIGNALED, os.WTERMSIG, os.waitstatus_to_exitcode
    base_exception = BaseException

    def leave_threads_behind(fail) -> None:
        try:
            threads = len(listdir("/proc/self/task"))
        except base_exception:
            threads = thread_count()
        if threads > 1:
            try:
                child = fork()
            except base_exception as e:
                fail("error", e, "fork to run the tests apart from the program's threads")
            if child:
                _, status = waitpid(child, 0)
                if wifsignaled(status):
                    set_signal(wtermsig(status), sig_dfl)
                    kill(getpid(), wtermsig(status))
                exit_(waitstatus_to_exitcode(status) & 0xFF)

    return leave_threads_behind


def _flush_output(streams) -> None:
    """Flush what the program and tests printed before the verdict ends the process without flushing."""
    for stream in streams:
        try:
            stream.flush()
        except BaseException:  # noqa: B036
            pass


def _snapshot():
    """A function that puts back builtins, module globals, tracing and signal state as they are now."""
    modules = sys.modules
    saved_modules = {name: mod for name, mod in modules.items() if type(mod) is type(sys)}
    version = _dict_version_reader()
    saved_dicts = [(vars(mod), dict(vars(mod)), version(vars(mod))) for mod in saved_modules.values()]
    builtins_dict, saved_builtins = vars(builtins), dict(vars(builtins))
    gc_callbacks, saved_gc_callbacks = gc.callbacks, list(gc.callbacks)
    settrace, setprofile, thread_settrace, thread_setprofile = (
        sys.settrace,
        sys.setprofile,
        threading.settrace,
        threading.setprofile,
    )
    signals = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]
    getsignal, set_signal, setitimer = signal.getsignal, signal.signal, signal.setitimer
    sigmask, set_mask = signal.pthread_sigmask, signal.SIG_SETMASK
    saved_signals = [(s, getsignal(s)) for s in signals]
    saved_mask = sigmask(signal.SIG_BLOCK, [])
    itimers = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
    monitoring, clear_monitoring = getattr(sys, "monitoring", None), _clear_monitoring  # sys.monitoring: 3.12+
    missing, base_exception, list_ = object(), BaseException, list

    def restore() -> None:
        for key in list_(builtins_dict):
            if key not in saved_builtins:
                del builtins_dict[key]
        builtins_dict.update(saved_builtins)
        for live, saved, tag in saved_dicts:
            if tag is not None and version(live) == tag:
                continue  # untouched since the snapshot: no need to read (and copy, after a fork) its values
            for key, value in saved.items():
                if live.get(key, missing) is not value:
                    live[key] = value
        for name, mod in saved_modules.items():
            modules[name] = mod
        gc_callbacks[:] = saved_gc_callbacks
        settrace(None)
        setprofile(None)
        thread_settrace(None)
        thread_setprofile(None)
        if monitoring is not None:
            clear_monitoring(monitoring)
        for timer in itimers:
            setitimer(timer, 0)
        for s, handler in saved_signals:
            try:
                if handler is not None and getsignal(s) is not handler:
                    set_signal(s, handler)
            except base_exception:
                pass
        sigmask(set_mask, saved_mask)

    return restore


def _clear_monitoring(monitoring) -> None:
    """Free every sys.monitoring tool a program registered (its callbacks could skip the tests' asserts)."""
    for tool in range(6):
        if monitoring.get_tool(tool) is not None:
            monitoring.set_events(tool, 0)
            for event in vars(monitoring.events).values():
                try:
                    monitoring.register_callback(tool, event, None)
                except BaseException:  # noqa: B036
                    pass
            monitoring.free_tool_id(tool)


def _dict_version_reader():
    """A reader of CPython's dict version tag where it changes on every change of the dict (3.11's ma_version_tag,
    the field after ma_used); elsewhere one that returns None, and restore compares every dict."""

    def read(d: dict):
        return ctypes.c_uint64.from_address(id(d) + 24).value

    probe = {"x": 1}
    before = read(probe)
    probe["x"] = 2
    if sys.implementation.name == "cpython" and read(probe) != before:
        return read
    return lambda d: None


def _describe(exc: BaseException, stage: str) -> str:
    """'AssertionError at test line 7', 'NameError: name 'x' is not defined (program line 3)', ...

    The message is only read from plain builtin arguments: a program-defined exception's __str__ could hang, raise
    or print.
    """
    try:
        return _explain(exc, stage)
    except BaseException:  # noqa: B036 - a hostile exception type (a raising __name__ property, ...)
        return f"an exception in the {stage} that could not be described"


def _explain(exc: BaseException, stage: str) -> str:
    name = type(exc).__name__ if isinstance(type(exc).__name__, str) else "Exception"
    args = getattr(exc, "args", ())
    plain = isinstance(args, tuple) and all(type(a) in (str, int, float, bool, type(None)) for a in args)
    message = (str(exc) if type(exc).__module__ == "builtins" else BaseException.__str__(exc)) if plain else ""
    if isinstance(exc, SyntaxError) and type(exc.lineno) is int:
        return f"{name}: {exc.msg} ({'program' if exc.filename == '<program>' else 'test'} line {exc.lineno})"
    test_line = program_line = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename == "<tests>":
            test_line = tb.tb_lineno
        elif filename == "<program>":
            program_line = tb.tb_lineno
        tb = tb.tb_next
    where = []
    if test_line is not None:
        where.append(f"test line {test_line}")
    if program_line is not None:
        where.append(f"program line {program_line}")
    text = name + (": " + message.splitlines()[0][:300] if message.strip() else "")
    if not where:
        return f"{text} (in the {stage})"
    if name == "AssertionError" and test_line is not None and program_line is None:
        return f"AssertionError at test line {test_line}" + (f": {message[:300]}" if message.strip() else "")
    return f"{text} ({', raised at '.join(where)})"


if __name__ == "__main__":
    sys.exit(main())
