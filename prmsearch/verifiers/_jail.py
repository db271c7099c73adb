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
SETUP_FAILED = 70  # init's exit code when it could not build the sandbox
HARNESS_FAILED = 71  # the harness's, when it could not even report (it reports out-of-memory itself)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


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
    job = json.loads(sys.stdin.buffer.read())
    limits = job["limits"]
    token = os.urandom(16).hex()
    layers = dict.fromkeys(("network_namespace", "pid_namespace", "mount_namespace", "fresh_proc"), False)
    layers.update(mode="none", private_tmp=False, readonly_fs=False, memory_cgroup=False, pids_cgroup=False)
    userns = _enter_namespaces(job.get("mode", "auto"), layers)
    uid = SANDBOX_UID_BASE + os.getpid() if os.geteuid() == 0 and not userns else None
    cgroups = _make_cgroups(limits, layers) if os.geteuid() == 0 and not userns else []
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    st_r, st_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (out_r, err_r, res_r, st_r):
                os.close(fd)
            _init(job, limits, token, uid, userns, cgroups, layers, out_w, err_w, res_w, st_w)
        except BaseException as e:  # noqa: B036 - whatever happened, init must not return into the launcher
            try:
                import traceback

                frame = traceback.extract_tb(e.__traceback__)[-1]
                where = f"{frame.name}, _jail.py line {frame.lineno}"
                os.write(st_w, json.dumps({"setup_error": f"{type(e).__name__}: {e} (in {where})"}).encode() + b"\n")
            except BaseException:  # noqa: B036
                pass
        os._exit(SETUP_FAILED)
    for fd in (out_w, err_w, res_w, st_w):
        os.close(fd)
    try:
        os.setpgid(pid, pid)  # init does the same; whichever runs first wins the race
    except OSError:
        pass
    run = {}
    try:
        run = _supervise(pid, limits, out_r, err_r, res_r, st_r, start)
        result = _classify(run, limits, token, cgroups, layers)
    finally:
        _remove_cgroups(cgroups)
        if run.get("host_workdir"):
            import shutil

            shutil.rmtree(run["host_workdir"], ignore_errors=True)
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


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
    mounts, own = _cgroup_mounts(), _own_cgroups()
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
    _, wait_status = os.waitpid(pid, 0)
    end = end or time.monotonic()
    messages = [json.loads(line) for line in buffers["st"].decode().splitlines() if line.strip()]
    info = {k: v for m in messages for k, v in m.items()}
    tail = limits["tail_chars"]
    return {
        **info,
        "killed": killed,
        "init_status": wait_status,
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


def _init(job, limits, token, uid, userns, cgroups, layers, out_w, err_w, res_w, st_w) -> None:
    """pid 1: join the cgroups, build the file system view, fork the harness, and report how it ended."""
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
    workdir = _build_filesystem(limits, uid, layers, report) if layers["mode"] != "none" else None
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
            _harness(job, limits, token, uid, userns, workdir, out_w, err_w, res_w)
        finally:
            os._exit(HARNESS_FAILED)
    for fd in (out_w, err_w, res_w):
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


def _build_filesystem(limits: dict, uid, launcher_layers: dict, report: dict):
    """Private mount namespace: everything read-only, empty tmpfs over the hidden dirs, the interpreter visible.

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
    hidden = [d for d in HIDDEN_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    needed = _interpreter_paths(hidden)
    sources = {}
    for path in needed:
        try:
            sources[path] = os.open(path, os.O_PATH)
        except OSError:  # a path this user cannot reach is one the candidate could not read either
            pass
    fresh_proc = launcher_layers["pid_namespace"]
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


def _harness(job, limits, token, uid, userns, workdir, out_w, err_w, res_w) -> None:
    """The candidate's process: lock it down, then run program and tests and write the verdict record."""
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
    _run(job["program"], job["tests"], job.get("entry_point"), verdict)


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


def _run(program: str, tests: str, entry_point, verdict) -> None:
    """Exec the program, undo what it did to the interpreter, exec the tests, call check(entry point).

    Everything this needs after the program ran is bound to locals first: the program may patch builtins, modules
    and this script's globals.
    """
    restore = _snapshot()
    leave_threads_behind = _thread_escape()
    assertion_error, base_exception, run_exec, run_compile = AssertionError, BaseException, exec, compile
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
    restore()
    _flush_output()
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


def _flush_output() -> None:
    """Flush what the program and tests printed before the verdict ends the process without flushing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: B036
            pass


def _snapshot():
    """A function that puts back builtins, module globals, tracing and signal state as they are now."""
    modules = sys.modules
    saved_modules = {name: mod for name, mod in modules.items() if type(mod) is type(sys)}
    saved_dicts = [(vars(mod), dict(vars(mod))) for mod in saved_modules.values()]
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
    monitoring = getattr(sys, "monitoring", None)  # Python 3.12+
    missing, base_exception, list_ = object(), BaseException, list

    def restore() -> None:
        for key in list_(builtins_dict):
            if key not in saved_builtins:
                del builtins_dict[key]
        builtins_dict.update(saved_builtins)
        for live, saved in saved_dicts:
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
            for tool in range(6):
                if monitoring.get_tool(tool) is not None:
                    monitoring.set_events(tool, 0)
                    for event in vars(monitoring.events).values():
                        try:
                            monitoring.register_callback(tool, event, None)
                        except base_exception:
                            pass
                    monitoring.free_tool_id(tool)
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
