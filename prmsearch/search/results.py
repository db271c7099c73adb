"""The output folder of `prmsearch search`: what a run writes, how a resume finds where it stopped, and how the
parts of a run split over several processes (`shard.py`) read as one.

- `results.jsonl` (`results.shard-I-of-K.jsonl` for part I of K): one line per (problem, strategy, N) once that
  problem is searched and graded, appended a batch at a time (`prmsearch.files`), so a killed run loses at most the
  batch in flight; `--resume` cuts a torn last line and skips what any part has done.
- `trees.jsonl` (per part likewise, `save_trees`): every node of every search tree, for `prmsearch show-tree`.
- `samples.jsonl` (per part likewise): the whole samples drawn for majority / best-of-N / weighted best-of-N
  (`samples.py`), so a resume does not draw them again and `--samples-from` lets another run judge them.
- `search_config.yaml`: the settings, checked on `--resume` so a resumed run cannot mix two configurations; every
  part writes the same file.
- `shard-I-of-K.done`: part I has finished. The part that sees all K finished writes the summary
  (`search.report`: summary.md / summary.json / accuracy.png), so the summary of a split run is always whole.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ..errors import PrmsearchError
from ..files import read_rows, whole_lines, write_atomic
from ..resume import check_settings, read_record, refuse_restart
from .report import result_files
from .samples import SAMPLES
from .shard import Shard

RESULTS, TREES, CONFIG = "results.jsonl", "trees.jsonl", "search_config.yaml"

Key = tuple[str, str, int]  # (problem id, strategy, N)


class RunFolderError(PrmsearchError):
    """An output folder that cannot take this run: results without --resume, or other settings."""


def prepare(out: Path, identity: dict[str, Any], shard: Shard, resume: bool, free: Collection[str] = ()) -> set[Key]:
    """The (problem, strategy, N) already done by any part; checks that a resumed folder holds these settings
    (`free`: keys a resume may change) and records them. Cuts this part's torn last line and drops its trees whose
    results were never written (a kill between the two writes)."""
    import yaml

    mine = out / shard.name(RESULTS)
    if not resume:
        # The other parts of this launch may have written already; anything else is an earlier run.
        siblings = {Shard(i, shard.count).name(RESULTS) for i in range(shard.count)}
        earlier = [p for p in result_files(out) if p.name not in siblings - {mine.name}]
        for path in earlier:
            refuse_restart(path, "results", RunFolderError)
    out.mkdir(parents=True, exist_ok=True)
    stored = out / CONFIG
    if resume and stored.exists():
        before = read_record(stored, RunFolderError)
        check_settings(out, before, identity, verb="run", free=free, error=RunFolderError)
    write_atomic(stored, yaml.safe_dump(identity, sort_keys=False))
    read_rows(mine, repair=True)
    if not resume:
        (out / shard.name(SAMPLES)).unlink(missing_ok=True)  # an earlier run's, killed before its first result
    (out / _done(shard)).unlink(missing_ok=True)
    done = {_key(r) for r in read_results(out)}
    trees = out / shard.name(TREES)
    if trees.exists():
        kept = [ln for ln in whole_lines(trees) if _key(json.loads(ln)) in done]
        write_atomic(trees, "".join(ln + "\n" for ln in kept))
    return done


def read_results(out: str | Path) -> list[dict[str, Any]]:
    """Every record of a run folder, all parts together (a torn last line is skipped, not cut)."""
    return [row for path in result_files(Path(out)) for row in read_rows(path)]


def mark_done(out: Path, shard: Shard) -> bool:
    """Record that this part has finished; True when every part of the run has (this one is the last, or one of
    the last: then it writes the summary)."""
    (out / _done(shard)).touch()
    return all((out / _done(Shard(i, shard.count))).exists() for i in range(shard.count))


def read_trees(path: str | Path, problem: str, strategy: str | None = None, n: int | None = None) -> list[dict]:
    """The saved trees of one problem (a run folder, all parts, or one trees file), optionally of one strategy / N."""
    path = Path(path)
    files = sorted(path.glob("trees*.jsonl")) if path.is_dir() else [path]
    if not any(f.exists() for f in files):
        missing = path / TREES if path.is_dir() else path
        raise RunFolderError(f"{missing} does not exist: run the search with --save-trees")
    found = []
    for f in files:
        for line in whole_lines(f):
            row = json.loads(line)
            if row["problem_id"] != problem or (strategy and row["strategy"] != strategy) or (n and row["n"] != n):
                continue
            found.append(row)
    if not found:
        raise RunFolderError(f"{path}: no tree for problem {problem!r}" + (f" ({strategy}, n={n})" if strategy else ""))
    return found


def _key(row: dict[str, Any]) -> Key | None:
    try:
        return (row["problem_id"], row["strategy"], row["n"])
    except (KeyError, TypeError):
        return None


def _done(shard: Shard) -> str:
    return f"shard-{shard.index}-of-{shard.count}.done"
