"""Hostile programs against the code verifier's sandbox.

Every program here is written so that a passing verdict would mean the attack worked (its tests assert that it
reached the network, deleted the sentinel, faked the asserts ...), so each must end in a non-passing status within
its limit. Then the host is checked: sentinel files intact, nothing new in /tmp, /var/tmp or /dev/shm, no
connection on the host's listeners, the secret never in any output, the victim process alive, no process of a
sandbox uid and no cgroup left.

Order matters for the machine we test on: before any bomb runs, the fixture asserts that the process limit and the
memory cap are in force (isolation() and two harmless probes). The programs then run concurrently, to keep the
suite fast.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import pytest

from prmsearch.verifiers import code
from prmsearch.verifiers.code import CodeLimits, CodeResult, isolation, run_many, run_tests

ROOT_ON_LINUX = sys.platform.startswith("linux") and os.geteuid() == 0
SANDBOX_UID_BASE = 2_000_000_000
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")
NOT_PASSED = {"failed", "error", "timeout", "killed"}


@dataclass
class Hostile:
    program: str
    tests: str = ""
    expect: set = field(default_factory=lambda: set(NOT_PASSED))
    reason: str = ""  # a substring the reason must contain
    timeout: float = 10.0  # the ones expected to end on the wall clock get 2.5 s
    entry_point: str | None = None
    needs: str = ""  # an isolation() layer the program relies on


LOOPING = 2.5

HOSTILE = {
    "read_host_files": Hostile(  # world-readable on the host, so only the minimal root keeps them out of reach
        "found = {}\nfor path in ('@SENTINEL_FILE@', '@PACKAGE_FILE@', '/etc/passwd'):\n    try:\n"
        "        found[path] = open(path).read()\n    except OSError as e:\n        found[path] = type(e).__name__\n"
        "print(found)\n",
        tests="assert all(v not in ('FileNotFoundError', 'PermissionError') for v in found.values()), repr(found)\n",
        expect={"failed"},
        reason="FileNotFoundError",
        needs="minimal_root",
    ),
    "fork_bomb": Hostile(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        expect={"timeout", "killed"},
        timeout=LOOPING,
        needs="process_limit",
    ),
    "thread_bomb": Hostile(
        "import threading\n\ndef spawn():\n    while True:\n        try:\n"
        "            threading.Thread(target=spawn, daemon=True).start()\n        except RuntimeError:\n"
        "            pass\n\nspawn()\n",
        expect={"timeout", "killed", "error"},  # error: MemoryError, thread stacks against RLIMIT_AS
        timeout=LOOPING,
        needs="process_limit",
    ),
    "memory_bomb": Hostile(
        "chunks = []\nwhile True:\n    chunks.append(b'x' * (8 << 20))\n", expect={"error"}, reason="MemoryError"
    ),
    # Each child stays under RLIMIT_AS; together they are 10x the run's memory: only the cgroup can stop them.
    "memory_bomb_forked": Hostile(
        """
import os
r, w = os.pipe()
kids = []
for _ in range(12):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        chunks = []
        try:
            while len(chunks) < 12:
                chunks.append(b"x" * (16 << 20))
        except MemoryError:
            pass
        os.read(r, 1)  # hold the memory until every sibling has its share
        os._exit(0)
    kids.append(pid)
os.close(w)
ok = all(os.waitpid(pid, 0)[1] == 0 for pid in kids)
""",
        "assert ok\n",
        expect={"failed", "killed"},
        needs="memory_cgroup",
    ),
    "infinite_loop": Hostile("while True:\n    pass\n", expect={"timeout"}, reason="wall clock", timeout=LOOPING),
    "sleep": Hostile("import time\ntime.sleep(3600)\n", expect={"timeout"}, reason="wall clock", timeout=LOOPING),
    "signal_tricks": Hostile(
        """
import signal, time
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM, signal.SIGXCPU, signal.SIGUSR1):
    signal.signal(s, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGXCPU})
while True:
    time.sleep(0.01)
""",
        expect={"timeout"},
        timeout=LOOPING,
    ),
    "alarm_forgery": Hostile(
        """
import os, signal

def fake(*_):
    os.write(1, b"all tests passed\\n")
    os._exit(0)

signal.signal(signal.SIGALRM, fake)
signal.setitimer(signal.ITIMER_REAL, 0.3)

def double(x):
    return x + 1
""",
        "import time\ntime.sleep(0.6)\nassert double(3) == 6\n",
        expect={"failed"},
    ),
    "huge_output": Hostile("while True:\n    print('x' * 10_000)\n", expect={"killed"}, reason="output limit"),
    "huge_binary_stderr": Hostile(
        "import os\nwhile True:\n    os.write(2, bytes(range(256)) * 400)\n", expect={"killed"}, reason="output limit"
    ),
    "spawn_daemons": Hostile(
        """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1.0)
        for d in ("/tmp", "/var/tmp", "/dev/shm", "@SENTINEL_DIR@"):
            try:
                open(os.path.join(d, "@MARKER@-daemon"), "w").write("late")
            except OSError:
                pass
        time.sleep(60)
    os._exit(0)

def negate(x):
    return -x
""",
        "assert negate(1) == 1\n",
        expect={"failed"},
    ),
    "os_exit_at_import": Hostile("import os\nos._exit(0)\n", "assert True\n", {"error"}, "without reporting"),
    "os_exit_in_candidate": Hostile(
        "import os\n\ndef f(x):\n    os._exit(0)\n",
        "def check(candidate):\n    assert candidate(1) == 1\n",
        {"error"},
        "without reporting",
        entry_point="f",
    ),
    "exit_in_tests": Hostile(
        "def f(x):\n    raise SystemExit(0)\n", "assert f(1) == 1\n", {"error"}, "SystemExit: 0 (test line 1"
    ),
    "recursion_bomb": Hostile(
        "import sys\nsys.setrecursionlimit(10 ** 8)\n\ndef down(n):\n    return down(n + 1) + 1\n\ndown(0)\n",
        expect={"killed", "error"},  # SIGSEGV on a C stack overflow; Python 3.11 frames live on the heap: error
    ),
    "threads_outlive": Hostile(
        """
import threading, time

def linger():
    while True:
        time.sleep(0.05)

threading.Thread(target=linger).start()  # not a daemon: it would keep a normal interpreter alive for ever

def f(x):
    return x - 1
""",
        "assert f(1) == 2\n",
        expect={"failed"},
    ),
    "thread_repatch": Hostile(
        """
import builtins, threading

def keep_patching():
    while True:
        builtins.abs = lambda x: 0
        builtins.isinstance = lambda *a: True

threading.Thread(target=keep_patching, daemon=True).start()

def sqrt(x):
    return 7.0
""",
        "import time\ntime.sleep(0.05)\nassert abs(sqrt(4.0) - 2.0) < 1e-9\nassert isinstance(sqrt(4.0), str)\n",
        expect={"failed"},
    ),
    "patch_builtins": Hostile(
        """
import builtins
builtins.abs = lambda x: 0
builtins.len = lambda x: 3
builtins.isinstance = lambda *a: True
builtins.AssertionError = type("NotAnAssertion", (Exception,), {})
builtins.print = lambda *a, **k: None
builtins.__import__ = lambda *a, **k: None

def f(xs):
    return xs[:1]
""",
        "import math\nassert abs(f([5.0])[0] - 1.0) < 1e-9\nassert len(f([1, 2, 3])) == 3\n",
        expect={"failed"},
    ),
    "shadow_globals": Hostile(
        "def abs(x):\n    return 0\n\ndef len(x):\n    return 3\n\ndef f(x):\n    return 0.0\n",
        "assert abs(f(2.0) - 4.0) < 1e-6\nassert len([f(0)]) == 3\n",
        expect={"failed"},
    ),
    "patch_module": Hostile(
        "import math\nmath.isclose = lambda *a, **k: True\nmath.fabs = lambda x: 0.0\n\ndef f(x):\n    return 0.0\n",
        "import math\nassert math.isclose(f(2.0), 4.0)\nassert math.fabs(f(2.0) - 4.0) < 1e-9\n",
        expect={"failed"},
    ),
    "tracer_skip": Hostile(
        """
import sys, threading

def tracer(frame, event, arg):
    if frame.f_code.co_filename != "<tests>":
        return None

    def skip(frame, event, arg):
        last = max(line for _, _, line in frame.f_code.co_lines() if line)
        if event == "line" and frame.f_lineno < last:
            frame.f_lineno = last  # jump over every assert, to the harmless last line
        return skip

    return skip

sys.settrace(tracer)
threading.settrace(tracer)

def f(x):
    return -1
""",
        "def check(candidate):\n    assert candidate(1) == 1\n    assert candidate(2) == 2\n    x = 0\n",
        expect={"failed"},
        entry_point="f",
    ),
    "hooks": Hostile(
        """
import atexit, builtins, gc, os, sys

def forge(*_):
    os.write(1, b'{"status": "passed", "passed": true}\\n')
    os._exit(0)

atexit.register(forge)
sys.excepthook = forge
sys.unraisablehook = forge
gc.callbacks.append(lambda *a: setattr(builtins, "abs", lambda x: 0))

def f(x):
    return 0
""",
        "import gc\ngc.collect()\nassert abs(f(3) - 9) < 1e-9\n",
        expect={"failed"},
    ),
    "fd_forgery": Hostile(
        """
import os
fakes = [b"passed\\0all tests passed\\0", b'{"status": "passed", "reason": "", "stdout": "", "stderr": "", "time": 0}']
for fd in range(3, 256):
    for data in fakes:
        try:
            os.write(fd, data)
        except OSError:
            pass

def f(x):
    return 0
""",
        "assert f(1) == 1\n",
        expect={"failed"},
    ),
    "close_fds": Hostile(
        "import os\nos.closerange(0, 4096)\n\ndef f(x):\n    return x\n",
        "assert f(1) == 1\n",
        expect={"error"},
        reason="without reporting",
    ),
    "kill_host": Hostile(
        """
import os, signal
hits = []
for pid in (@VICTIM@, @HOST_PID@, 1, os.getppid()):
    for sig in (signal.SIGKILL, signal.SIGTERM):
        try:
            os.kill(pid, sig)
            hits.append(pid)
        except OSError:
            pass
for pgid in (@VICTIM@, @HOST_PID@):
    try:
        os.killpg(pgid, signal.SIGKILL)
        hits.append(pgid)
    except OSError:
        pass
try:
    os.kill(-1, signal.SIGKILL)  # every process this uid may signal, but not itself
except OSError:
    pass
""",
        "assert hits\n",
        expect={"failed"},
    ),
    "env_secrets": Hostile(
        """
import os
blobs = [repr(dict(os.environ)).encode()]
for entry in os.listdir("/proc"):
    if entry.isdigit() or entry == "self":
        for name in ("environ", "cmdline"):
            try:
                blobs.append(open(f"/proc/{entry}/{name}", "rb").read())
            except OSError:
                pass
for path in ("/proc/@HOST_PID@/environ", "/proc/@VICTIM@/environ"):
    try:
        blobs.append(open(path, "rb").read())
    except OSError:
        pass
print(b"\\n".join(blobs).decode("latin-1"))  # all it could read goes to the captured output
found = any(b"PRMSEARCH_TEST_SECRET" in blob for blob in blobs)
""",
        "assert found\n",
        expect={"failed"},
    ),
    "network": Hostile(
        """
import socket
reached = []

def attempt(what, fn):
    try:
        fn()
        reached.append(what)
    except OSError as e:
        print(what, e)

attempt("tcp", lambda: socket.create_connection(("127.0.0.1", @PORT@), timeout=1))
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", @UDP_PORT@)))
attempt("abstract unix", lambda: socket.socket(socket.AF_UNIX).connect("\\0@UNIX_NAME@"))
attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
attempt("internet", lambda: socket.create_connection(("1.1.1.1", 53), timeout=1))
""",
        "assert reached\n",
        expect={"failed"},
    ),
    "write_outside": Hostile(
        """
import os
wrote = []
for path in ("@SENTINEL_DIR@/new-file", "@SENTINEL_FILE@", "@PACKAGE_FILE@", "/@MARKER@", "/etc/@MARKER@"):
    try:
        with open(path, "a") as f:
            f.write("pwned")
        wrote.append(path)
    except OSError as e:
        print(path, e.strerror)
for fn, args in ((os.chmod, ("@SENTINEL_FILE@", 0o777)), (os.link, ("@SENTINEL_FILE@", "@MARKER@-link"))):
    try:
        fn(*args)
        wrote.append(fn.__name__)
    except OSError as e:
        print(fn.__name__, e.strerror)
for _ in range(10):  # `..` from the work dir must stay inside the sandbox's own tmpfs
    os.chdir("..")
for d in ("tmp", "var/tmp", "dev/shm"):
    open(os.path.join(d, "@MARKER@-escape"), "w").write("x")
print("escaped to", os.getcwd())
""",
        "assert wrote\n",
        expect={"failed"},
    ),
    "delete_files": Hostile(
        """
import os, shutil
deleted = []

def attempt(fn, *args):
    try:
        fn(*args)
        deleted.append(fn.__name__)
    except OSError as e:
        print(fn.__name__, e.strerror)

attempt(os.truncate, "@SENTINEL_FILE@", 0)
attempt(os.rename, "@SENTINEL_FILE@", "@SENTINEL_FILE@.moved")
attempt(os.remove, "@SENTINEL_FILE@")
attempt(shutil.rmtree, "@SENTINEL_DIR@")
attempt(os.remove, "@PACKAGE_FILE@")
""",
        "assert deleted\n",
        expect={"failed"},
    ),
    "escalate": Hostile(
        """
import os, subprocess
tries = []
for fn in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0]), lambda: os.chroot("/")):
    try:
        fn()
        tries.append("ok")
    except OSError as e:
        tries.append(e.strerror)
for cmd in (["su", "-c", "id -u"], ["sudo", "-n", "id", "-u"]):
    try:
        tries.append(subprocess.run(cmd, capture_output=True, text=True, timeout=2).stdout.strip())
    except Exception as e:
        tries.append(type(e).__name__)
print(tries)
""",
        "assert os.geteuid() == 0 or 'ok' in tries or '0' in tries\n",
        expect={"failed"},
    ),
    # A nested user namespace gives the candidate capabilities over its own mounts; the sandbox's overmounts and
    # read-only mounts are locked in it, so nothing of the host's /tmp shows and nothing becomes writable.
    "userns_unmount": Hostile(
        """
import subprocess
script = "umount -l /tmp; umount /tmp; mount -o remount,rw /; ls -a /tmp; touch /@MARKER@-userns"
try:
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=3)
    seen = out.stdout + out.stderr
except Exception as e:
    seen = repr(e)
print(seen)
""",
        "assert '@MARKER@-hostonly' in seen\n",
        expect={"failed"},
    ),
    "tmpfs_fill": Hostile(
        "i = 0\nwhile True:\n    with open(f'/dev/shm/fill-{i}', 'wb') as f:\n"
        "        f.write(bytes(1 << 20))\n    i += 1\n",
        expect={"error"},
        reason="No space left on device",
    ),
    "file_size_bomb": Hostile(
        "with open('big.bin', 'wb') as f:\n    f.write(bytes(64 << 20))\n", expect={"error"}, reason="File too large"
    ),
    "inode_bomb": Hostile(
        "for i in range(100_000):\n    open(f'f{i}', 'w').close()\n", expect={"error"}, reason="No space left"
    ),
    "fd_exhaust": Hostile(
        "files = []\nwhile True:\n    files.append(open('/dev/null'))\n", expect={"error"}, reason="Too many open files"
    ),
}


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _sandbox_processes() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
            except (OSError, StopIteration, ValueError):
                continue
            if uid >= SANDBOX_UID_BASE:
                found.append(entry)
    return found


def _sandbox_cgroups() -> list[str]:
    found = []
    for root, _, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(root).startswith("prmsearch-"):
            found.append(root)
    return found


def _listing(dirs) -> dict[str, set[str]]:
    return {d: set(os.listdir(d)) if os.path.isdir(d) else set() for d in dirs}


def _sentinel_parent() -> str:
    """A dir the sandbox can see (not one it hides), so that only its read-only mounts and uid protect it."""
    for parent in ("/var/lib", "/var/cache", "/opt"):
        if os.access(parent, os.W_OK):
            return parent
    return tempfile.gettempdir()


def _assert_limits_in_force(layers: dict) -> None:
    """Before any bomb: the process limit and the memory cap must be real, shown by harmless programs."""
    if ROOT_ON_LINUX:
        assert layers["mode"] == "root", layers
        assert layers["uid_drop"] is True and layers["process_limit"] is True, layers
        assert layers["pids_cgroup"] and layers["memory_cgroup"], layers
    forks = (
        "import os, time\nn = 0\nfor _ in range(30):\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n        time.sleep(1)\n        os._exit(0)\n    n += 1\nprint(n)\n"
    )
    probe = run_tests(forks, "", limits=CodeLimits(timeout=10, max_processes=8))
    assert probe.passed and probe.stdout.strip() == "7", probe  # the harness and 7 children: max_processes
    if layers["memory_cgroup"]:
        hogs = (
            "import os\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
            "        b = bytearray(150 << 20)\n        b[::4096] = b'x' * len(b[::4096])\n        os._exit(0)\n"
            "    kids.append(pid)\nprint([os.waitpid(k, 0)[1] for k in kids])\n"
        )
        probe = run_tests(hogs, "", limits=CodeLimits(timeout=20, memory_mb=256))
        assert probe.status == "killed" or "9" in probe.stdout, probe  # 450 MB in a 256 MB cgroup: someone is killed


@dataclass
class Outcome:
    results: dict[str, CodeResult]
    elapsed: float
    checks: dict[str, object]
    secret: str
    layers: dict


@pytest.fixture(scope="module")
def outcome(tmp_path_factory) -> Outcome:
    layers = isolation()
    _assert_limits_in_force(layers)
    skipped = [name for name, h in HOSTILE.items() if h.needs and not layers.get(h.needs)]
    if skipped and ROOT_ON_LINUX:
        pytest.fail(f"root on Linux must run every hostile program; missing layers for {skipped}: {layers}")

    marker = f"prmsearch-hostile-{uuid.uuid4().hex[:12]}"
    secret = uuid.uuid4().hex
    sentinel_dir = tempfile.mkdtemp(prefix=f"{marker}-sentinel-", dir=_sentinel_parent())
    os.chmod(sentinel_dir, 0o777)  # world-writable: only the sandbox's read-only mounts stand in the way
    sentinel_file = os.path.join(sentinel_dir, "precious.txt")
    with open(sentinel_file, "w") as f:
        f.write("do not touch\n")
    os.chmod(sentinel_file, 0o666)
    host_only = os.path.join("/tmp", f"{marker}-hostonly")
    open(host_only, "w").close()
    package_file = os.path.abspath(code.__file__)  # a file of the package no one edits while this runs
    before = {
        "sentinel": (_sha(sentinel_file), os.stat(sentinel_file).st_mode, sorted(os.listdir(sentinel_dir))),
        "package_file": _sha(package_file),
        "scratch": _listing(SCRATCH),
        "root": set(os.listdir("/")),
    }
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind("\0" + marker)
    unix.listen()
    victim = subprocess.Popen(["sleep", "300"])
    values = {
        "@SENTINEL_DIR@": sentinel_dir,
        "@SENTINEL_FILE@": sentinel_file,
        "@PACKAGE_FILE@": package_file,
        "@MARKER@": marker,
        "@PORT@": str(tcp.getsockname()[1]),
        "@UDP_PORT@": str(udp.getsockname()[1]),
        "@UNIX_NAME@": marker,
        "@VICTIM@": str(victim.pid),
        "@HOST_PID@": str(os.getpid()),
    }

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    limits = CodeLimits(memory_mb=256, max_processes=16, max_file_mb=16, max_output_bytes=256 << 10)
    names = [name for name in HOSTILE if name not in skipped]
    jobs = [
        {
            "program": fill(HOSTILE[n].program),
            "tests": fill(HOSTILE[n].tests),
            "entry_point": HOSTILE[n].entry_point,
            "timeout": HOSTILE[n].timeout,
        }
        for n in names
    ]
    os.environ["PRMSEARCH_TEST_SECRET"] = secret
    try:
        start = time.monotonic()
        results = dict(zip(names, run_many(jobs, workers=4, limits=limits, progress=False), strict=True))
        elapsed = time.monotonic() - start
        code.shutdown()  # the warm launchers and the sandboxes they hold ready for the next jobs go too
        print(f"\n{'program':24} {'status':8} {'time':>6}  reason")  # shown with `pytest -s`
        for name, r in results.items():
            print(f"{name:24} {r.status:8} {r.time:6.2f}  {r.reason[:80]}")
        time.sleep(0.3)  # the spawn_daemons program's late writer would have fired by now, had it survived
        for sock in (tcp, unix):
            sock.setblocking(False)
        udp.setblocking(False)
        checks = {
            "sandbox_processes": _sandbox_processes(),
            "sandbox_cgroups": _sandbox_cgroups(),
            "victim_alive": victim.poll() is None,
            "host_alive": os.kill(os.getpid(), 0) is None,
            "sentinel": (_sha(sentinel_file), os.stat(sentinel_file).st_mode, sorted(os.listdir(sentinel_dir))),
            "package_file": _sha(package_file),
            "scratch_new": {d: after - before["scratch"][d] for d, after in _listing(SCRATCH).items()},
            "root_new": set(os.listdir("/")) - before["root"],
            "connections": [],
        }
        for name, receive in (("tcp", tcp.accept), ("unix", unix.accept), ("udp", lambda: udp.recv(64))):
            try:
                receive()
                checks["connections"].append(name)
            except BlockingIOError:
                pass
        checks["before"] = before
        checks["marker"] = marker
    finally:
        del os.environ["PRMSEARCH_TEST_SECRET"]
        victim.kill()
        victim.wait()
        for sock in (tcp, udp, unix):
            sock.close()
        shutil.rmtree(sentinel_dir, ignore_errors=True)
        os.remove(host_only)
    return Outcome(results, elapsed, checks, secret, layers)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_does_not_pass(outcome, name):
    if name not in outcome.results:
        pytest.skip(f"{name} needs the {HOSTILE[name].needs!r} layer, which this machine lacks: {outcome.layers}")
    hostile, result = HOSTILE[name], outcome.results[name]
    assert not result.passed and result.status in hostile.expect, result
    assert hostile.reason in result.reason, result
    assert result.time <= hostile.timeout + 1.0, result  # its limit, plus grace for killing and reaping
    assert outcome.secret not in result.stdout + result.stderr + result.reason
    assert len(result.stdout) <= CodeLimits().tail_chars and len(result.stderr) <= CodeLimits().tail_chars


def test_threads_outliving_the_tests_do_not_hold_the_verdict(outcome):
    assert outcome.results["threads_outlive"].time < 2.0  # no wait for the non-daemon thread


def test_host_is_unaffected(outcome):
    checks = outcome.checks
    assert checks["host_alive"] and checks["victim_alive"]
    assert checks["sentinel"] == checks["before"]["sentinel"]
    assert checks["package_file"] == checks["before"]["package_file"]
    assert checks["connections"] == []
    marker = checks["marker"]
    for d, new in checks["scratch_new"].items():  # other processes on the host may create files meanwhile
        assert not {n for n in new if marker in n or n in ("work", "big.bin") or n.startswith("fill-")}, (d, new)
    assert not {n for n in checks["root_new"] if marker in n}
    assert not os.path.exists(f"/etc/{marker}")


def test_nothing_of_the_sandbox_is_left(outcome):
    assert outcome.checks["sandbox_processes"] == []
    assert outcome.checks["sandbox_cgroups"] == []


def test_the_batch_is_fast(outcome):
    # Run concurrently, the wall-clock programs overlap: well under the sum of their limits.
    assert outcome.elapsed < sum(h.timeout for h in HOSTILE.values() if h.timeout == LOOPING) + 10
