"""`files.append_rows` under a full disk: a batch the file cannot take whole is undone, never left half written
(the kernel's own partial write, made real by a file-size limit in a child process)."""

import json
import subprocess
import sys

CHILD = """
import json, os, resource, signal, sys
from prmsearch.files import WriteError, append_rows

path = sys.argv[1]
append_rows(path, [{"row": 0}])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of killing us
limit = os.path.getsize(path) + 100
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    append_rows(path, [{"row": i, "pad": "x" * 40} for i in range(1, 6)])  # ~300 bytes: the first 100 fit
except WriteError as e:
    print(e)
"""


def test_a_batch_the_disk_cannot_take_whole_is_undone(tmp_path):
    path = tmp_path / "rows.jsonl"
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"row": 0}]
    assert f"cannot write {path}: File too large; the 5 rows of this batch were not kept" in done.stdout, done
