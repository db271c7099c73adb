"""The code verifier's API: pass@k, limits, verdicts and reasons, batching, and the sandbox's view of the machine.
The hostile programs are in test_code_hostile.py."""

import math
import os
import shutil
import subprocess
import sys
import time
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmsearch.verifiers import code
from prmsearch.verifiers.code import CodeLimits, CodeResult, SandboxError, isolation, pass_at_k, run_many, run_tests

ADD = "def add(a, b):\n    return a + b\n"
CHECK_ADD = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
ROOT_ON_LINUX = sys.platform.startswith("linux") and os.geteuid() == 0


# ------------------------------------------------------------------------------------------------------ pass@k


def _exact(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (10, 3, 8), (200, 13, 10), (5, 5, 5)])
def test_pass_at_k_matches_the_binomial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(float(_exact(n, c, k)), abs=1e-12)


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_properties(nck):
    n, c, k = nck
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(float(_exact(n, c, k)), abs=1e-9)
    if c == 0:
        assert value == 0.0
    if n - c < k:
        assert value == 1.0
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_at_k_is_stable_for_large_n():
    # C(10000, 5000) overflows a float; the product form does not need it.
    assert pass_at_k(10_000, 1, 5_000) == pytest.approx(0.5)
    assert pass_at_k(10_000, 9_000, 1) == pytest.approx(0.9)


@pytest.mark.parametrize(
    "n,c,k,match",
    [
        (0, 0, 1, "n .samples."),
        (5, 6, 1, "c .correct"),
        (5, -1, 1, "c .correct"),
        (5, 2, 0, "k must"),
        (5, 2, 6, "k must"),
    ],
)
def test_pass_at_k_rejects_bad_arguments(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


@pytest.mark.parametrize("args", [(5.0, 1, 1), (5, True, 1), (5, 1, "2")])
def test_pass_at_k_wants_ints(args):
    with pytest.raises(ValueError, match="must be an int"):
        pass_at_k(*args)


# ------------------------------------------------------------------------------------------------------ limits


def test_limits_defaults_and_validation():
    assert CodeLimits().resolved()["cpu_seconds"] == 11  # ceil(10) + 1: a busy loop ends on the wall clock
    assert CodeLimits(timeout=2.5).resolved()["cpu_seconds"] == 4
    assert CodeLimits(cpu_seconds=3).resolved()["cpu_seconds"] == 3
    with pytest.raises(ValueError, match="timeout"):
        CodeLimits(timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        CodeLimits(memory_mb=16)
    with pytest.raises(ValueError, match="max_processes"):
        CodeLimits(max_processes=0)
    with pytest.raises(ValueError, match="cpu_seconds"):
        CodeLimits(cpu_seconds=1.5)


def test_run_tests_validates_its_arguments():
    with pytest.raises(TypeError, match="must be str"):
        run_tests(b"x = 1", "")
    with pytest.raises(ValueError, match="identifier"):
        run_tests(ADD, CHECK_ADD, entry_point="add()")


# ----------------------------------------------------------------------------------------------------- verdicts


def test_verdicts_and_reasons():
    jobs = {
        "pass": (ADD, CHECK_ADD, "add"),
        "fail": ("def add(a, b):\n    return a - b\n", CHECK_ADD, "add"),
        "plain_asserts": (ADD, "assert add(1, 1) == 2\nassert add(0, 0) == 1\n"),
        "program_raises": ("x = 1\ny = undefined_name\n", ""),
        "candidate_raises": ("def add(a, b):\n    return a + None\n", CHECK_ADD, "add"),
        "syntax": ("def add(a, b)\n    return a + b\n", CHECK_ADD, "add"),
        "tests_syntax": (ADD, "assert add(1, 2) ==\n"),
        "no_entry_point": (ADD, CHECK_ADD, "mul"),
        "no_check": (ADD, "assert add(1, 2) == 3\n", "add"),
        "sys_exit": ("import sys\nsys.exit(0)\n", "assert True\n"),
        "os_exit": ("import os\nos._exit(0)\n", "assert True\n"),
        "input": ("x = input()\n", ""),
        "assert_message": (ADD, "assert add(1, 2) == 4, 'add is off'\n"),
    }
    results = dict(zip(jobs, run_many(jobs.values(), workers=4, progress=False), strict=True))
    expect = {
        "pass": ("passed", "all tests passed"),
        "fail": ("failed", "AssertionError at test line 2"),
        "plain_asserts": ("failed", "AssertionError at test line 2"),
        "program_raises": ("error", "NameError: name 'undefined_name' is not defined (program line 2)"),
        "candidate_raises": (
            "error",
            "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType' (test line 2",
        ),
        "syntax": ("error", "SyntaxError: expected ':' (program line 1)"),
        "tests_syntax": ("error", "SyntaxError: invalid syntax (test line 1)"),
        "no_entry_point": ("error", "the program defines no 'mul' (the entry point)"),
        "no_check": ("error", "the tests define no check(candidate) function"),
        "sys_exit": ("error", "SystemExit: 0 (program line 2)"),
        "os_exit": ("error", "exited with code 0 without reporting a verdict"),
        "input": ("error", "EOFError"),
        "assert_message": ("failed", "AssertionError at test line 1: add is off"),
    }
    for name, (status, reason) in expect.items():
        result = results[name]
        assert (result.status, result.passed) == (status, status == "passed"), (name, result)
        assert result.reason.startswith(reason), (name, result.reason)
    assert "raised at program line 2" in results["candidate_raises"].reason


def test_entry_point_semantics():
    # Tests see the program's helpers (HumanEval/38 checks decode with the prompt's encode); the program's
    # __main__ block does not run; exit() exists as in any script.
    program = "def enc(s):\n    return s[::-1]\n\ndef dec(s):\n    return s[::-1]\n\n"
    program += "if __name__ == '__main__':\n    1 / 0\n"
    tests = "def check(candidate):\n    assert candidate(enc('abc')) == 'abc'\n"
    assert run_tests(program, tests, "dec").passed
    assert run_tests("import builtins\nassert callable(exit) and callable(builtins.print)\n", "").passed


def test_output_is_captured_and_tailed():
    program = "import sys\nprint('a' * 5000 + 'END')\nprint('oops', file=sys.stderr)\n"
    result = run_tests(program, "", limits=CodeLimits(tail_chars=100))
    assert result.passed
    assert len(result.stdout) == 100 and result.stdout.endswith("END\n")
    assert result.stderr == "oops\n"
    # Output printed just before a crash is kept: the candidate's stdout is line-buffered.
    result = run_tests("print('progress 1')\nimport os\nos._exit(3)\n", "")
    assert result.stdout == "progress 1\n" and "code 3" in result.reason


def test_timeout_overrides_the_limits():
    result = run_tests("import time\ntime.sleep(30)\n", "", timeout=1.0, limits=CodeLimits(timeout=20))
    assert (result.status, result.reason) == ("timeout", "wall clock 1 s")
    assert 0.9 < result.time < 2.0


def test_run_many_keeps_order_and_takes_both_job_forms():
    jobs = [{"program": f"X = {i}\n", "tests": f"assert X == {i}\n" if i % 2 else "assert X == -1\n"} for i in range(6)]
    jobs.append((ADD, CHECK_ADD, "add"))
    jobs.append({"program": "import time\ntime.sleep(5)\n", "tests": "", "timeout": 0.5})
    results = run_many(jobs, workers=3, progress=False)
    assert [r.passed for r in results] == [False, True, False, True, False, True, True, False]
    assert results[-1].status == "timeout"
    assert all(isinstance(r, CodeResult) for r in results)
    assert run_many([], progress=False) == []


@pytest.mark.parametrize(
    "job,error",
    [({"program": "", "test": ""}, ValueError), (("only program",), ValueError), ("program", TypeError)],
)
def test_run_many_rejects_malformed_jobs(job, error):
    with pytest.raises(error, match="job 0"):
        run_many([job], progress=False)


def test_sandbox_failure_is_a_sandbox_error(monkeypatch):
    monkeypatch.setattr(code, "_JAIL", "/nonexistent/_jail.py")
    with pytest.raises(SandboxError, match="launcher failed"):
        run_tests(ADD, CHECK_ADD, "add")


# ------------------------------------------------------------------------------------------------ the sandbox


def test_isolation_reports_every_layer():
    layers = isolation()
    expected = {
        "mode",
        "network_namespace",
        "pid_namespace",
        "mount_namespace",
        "fresh_proc",
        "private_tmp",
        "readonly_fs",
        "minimal_root",
        "uid_drop",
        "capabilities_dropped",
        "no_new_privs",
        "process_limit",
        "memory_cgroup",
        "pids_cgroup",
        "rlimits",
    }
    assert set(layers) == expected
    if ROOT_ON_LINUX:  # what CI (root on Linux) must get; elsewhere the layers degrade and say so
        assert layers["mode"] == "root"
        strong = ["network_namespace", "pid_namespace", "mount_namespace", "fresh_proc", "private_tmp", "readonly_fs"]
        strong.append("minimal_root")
        assert all(layers[k] is True for k in [*strong, "uid_drop", "no_new_privs", "process_limit"]), layers


SANDBOX_VIEW = r"""
import json, os, socket, sys
view = {
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "pid": os.getpid(), "ppid": os.getppid(),
    "cwd": os.getcwd(), "cwd_files": os.listdir("."), "tmp": sorted(os.listdir("/tmp")), "env": dict(os.environ),
    "hostname": socket.gethostname(), "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "interfaces": [name for _, name in socket.if_nameindex()],
}
open("scratch.txt", "w").write("the work dir is writable")
with open("/proc/self/status") as f:
    status = {k: v.strip() for k, v in (line.split(":", 1) for line in f)}
view["status"] = {k: status[k] for k in ("NoNewPrivs", "CapEff", "CapPrm", "CapBnd")}
print(json.dumps(view))
"""


@pytest.mark.skipif(not ROOT_ON_LINUX, reason="the root-mode sandbox view; other modes are checked in test_non_root_*")
def test_the_candidate_sees_a_private_machine():
    import json

    before = set(os.listdir("/tmp"))
    result = run_tests(SANDBOX_VIEW, "")
    assert result.passed, result
    view = json.loads(result.stdout)
    assert view["uid"] >= 2_000_000_000 and view["gid"] == view["uid"] and view["groups"] == []
    assert view["pid"] == 2 and view["ppid"] == 1 and view["procs"] == [1, 2]  # only init and itself
    assert view["cwd"] == "/tmp/work" and view["cwd_files"] == []
    assert set(view["tmp"]) <= {"work"} | {p.split("/")[2] for p in sys.path if p.startswith("/tmp/")}
    assert set(view["env"]) == {"PATH", "LANG", "HOME", "TMPDIR", "USER", "LOGNAME"}
    assert view["hostname"] == "sandbox" and view["interfaces"] == ["lo"]
    status = view["status"]
    assert status["NoNewPrivs"] == "1" and status["CapEff"] == status["CapPrm"] == "0000000000000000"
    assert "scratch.txt" not in os.listdir("/tmp") and not os.path.exists("/tmp/work")
    assert not {name for name in set(os.listdir("/tmp")) - before if name.startswith("prmsearch")}


@pytest.mark.skipif(not ROOT_ON_LINUX, reason="cgroups are made only as root")
def test_the_run_sits_in_its_own_cgroups():
    """The program names its cgroups (/sys is not in its root); the host reads their limits while it runs."""
    import glob
    import threading

    layers = isolation()
    assert layers["memory_cgroup"] == layers["pids_cgroup"] == "v1", layers  # this machine's hierarchy
    seen: dict[str, str] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for path in glob.glob("/sys/fs/cgroup/*/**/prmsearch-*", recursive=True):
                for limit in ("memory.limit_in_bytes", "pids.max"):
                    try:
                        seen[path] = open(os.path.join(path, limit)).read().strip()
                    except OSError:
                        pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        program = "import time\nprint(open('/proc/self/cgroup').read())\ntime.sleep(1)\n"
        result = run_tests(program, "", limits=CodeLimits(memory_mb=300, max_processes=9))
    finally:
        stop.set()
        watcher.join()
    assert result.passed, result
    paths = dict(line.split(":")[1:] for line in result.stdout.split())
    assert seen[f"/sys/fs/cgroup/memory{paths['memory']}"] == str(300 << 20)
    assert seen[f"/sys/fs/cgroup/pids{paths['pids']}"] == "10"  # the candidate's 9 + init


def _non_root_python() -> str | None:
    """A Python an unprivileged user can run (the dev venv may live under /root, which it cannot enter)."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and os.path.exists(candidate):
            probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", candidate, "-c", "import ctypes"]
            if subprocess.run(probe, capture_output=True).returncode == 0:
                return candidate
    return None


@pytest.mark.skipif(not ROOT_ON_LINUX or not shutil.which("setpriv"), reason="needs root and setpriv to become nobody")
@pytest.mark.parametrize("mode", ["auto", "none"])
def test_non_root_modes_degrade_and_still_contain(mode, tmp_path):
    """The launcher run as nobody: an unprivileged user namespace ("auto"), or rlimits only ("none", the last
    resort, forced here). Either way the verdict works and the process limit holds."""
    import json

    python = _non_root_python()
    if python is None:
        pytest.skip("no Python interpreter runnable by nobody")
    program = (
        "import os, time\nkids = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(2)\n        os._exit(0)\n"
        "    kids += 1\nprint(kids)\n"
    )
    job = {"program": program, "tests": "assert kids < 40\n", "entry_point": None, "mode": mode}
    job["limits"] = CodeLimits(timeout=5, max_processes=6).resolved()
    os.chmod(tmp_path, 0o755)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-I", code._JAIL]
    proc = subprocess.run(cmd, input=json.dumps(job).encode(), capture_output=True, timeout=30, cwd=tmp_path)
    result = json.loads(proc.stdout)
    assert result["status"] == "passed", result
    assert 0 < int(result["stdout"]) < 6
    layers = result["layers"]
    assert layers["uid_drop"] is False and layers["rlimits"] is True
    if mode == "none":
        assert layers["mode"] == "none" and layers["network_namespace"] is False
        assert layers["process_limit"] == "RLIMIT_NPROC, shared with the host user"
    elif layers["mode"] == "userns":  # where unprivileged user namespaces are allowed, as here
        assert layers["network_namespace"] and layers["pid_namespace"] and layers["private_tmp"]
        assert layers["capabilities_dropped"] is True and layers["process_limit"] is True
        assert int(result["stdout"]) == 5  # the harness + 5 children = max_processes


def test_resource_limits_are_named_in_the_reason():
    hog = (
        "for d in ('/tmp', '/var/tmp', '/dev/shm'):\n    open(d + '/fill', 'wb').write(bytes(15 << 20))\n"
        "b = bytearray(100 << 20)\nb[::4096] = b'x' * len(b[::4096])\n"
    )  # 45 MB of tmpfs + 100 MB of heap, each under RLIMIT_AS: only the run's memory cgroup stops them
    jobs = [
        {"program": "while True:\n    pass\n", "tests": "", "limits": CodeLimits(timeout=10, cpu_seconds=1)},
        {
            "program": "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n",
            "tests": "",
            "limits": CodeLimits(timeout=10, cpu_seconds=1),
        },
        {"program": "x = bytearray(300 << 20)\n", "tests": "", "limits": CodeLimits(memory_mb=128)},
        {"program": "open('f', 'wb').write(bytes(2 << 20))\n", "tests": "", "limits": CodeLimits(max_file_mb=1)},
    ]
    if isolation()["memory_cgroup"]:
        jobs.append({"program": hog, "tests": "", "limits": CodeLimits(memory_mb=128)})
    results = run_many(jobs, workers=len(jobs), progress=False)
    assert [(r.status, r.reason) for r in results[:4]] == [
        ("killed", "killed by SIGXCPU (cpu limit 1 s)"),
        ("killed", "killed by SIGKILL (cpu limit 1 s)"),  # SIGXCPU ignored: the hard limit a second later
        ("error", "MemoryError (program line 1)"),
        ("error", "OSError: [Errno 27] File too large (program line 1)"),
    ]
    if len(results) == 5:
        assert (results[4].status, results[4].reason) == ("killed", "killed by SIGKILL (memory limit 128 MB)")


def test_ordinary_programs_work_in_the_sandbox():
    # multiprocessing pickles the program's functions by module name; numpy starts BLAS threads at import, so the
    # tests run in a fork of the harness; subprocesses, temp files and threads work as usual.
    program = (
        "import multiprocessing, subprocess, sys, tempfile, threading\nimport numpy\n\ndef square(x):\n"
        "    return x * x\n\nwith multiprocessing.Pool(2) as pool:\n    squares = pool.map(square, range(5))\n"
        "with tempfile.NamedTemporaryFile('w', delete=False) as f:\n    f.write('kept')\nsaved = f.name\nseen = []\n"
        "t = threading.Thread(target=seen.append, args=(1,))\nt.start()\nt.join()\n"
        "child = subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout\n"
        "total = int(numpy.arange(4).sum())\n"
    )
    tests = (
        "assert squares == [0, 1, 4, 9, 16]\nassert open(saved).read() == 'kept'\nassert seen == [1]\n"
        "assert child == '42\\n'\nassert total == 6\n"
    )
    result = run_tests(program, tests)
    assert result.passed, result
