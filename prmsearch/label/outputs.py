"""The files of a `prmsearch label` run, and how a run split over processes (`--workers N`) writes them.

- `OUTPUT` (.jsonl): the kept records, in input order (problem by problem, sample by sample, for `--sample`);
- `OUTPUT.dropped.jsonl`: the records consensus dropped, in the same order;
- `OUTPUT.label.json`: the settings while the run goes ("running"), then the summary ("done").

A split run is N processes, worker I labelling every N-th problem (`search.shard.Shard`, as `prmsearch search
--shard` splits a search). Each appends its records to part files of its own beside the output
(`labels.shard-I-of-N.jsonl` and its `.dropped.jsonl`), which only it writes (it holds their lock). When every
worker has finished, `merge_parts` puts their records into the output in the order one process writes them and
removes the parts: seeds come from the run seed and the trace alone, so the output is byte for byte the one a
single process writes. A killed run leaves its parts; `--resume` (with any number of workers) skips what any file
holds and merges them all.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..files import read_rows, whole_lines, write_atomic
from ..resume import check_settings, exclusive, lock_path, read_record, refuse_restart
from ..search.shard import Shard
from .config import LabelConfig


def sidecar_path(output: str | Path) -> Path:
    return Path(f"{output}.label.json")


def dropped_path(output: str | Path) -> Path:
    return Path(f"{output}.dropped.jsonl")


def part_path(out: Path, shard: Shard) -> Path:
    """The file worker `shard` appends its kept records to: labels.jsonl -> labels.shard-0-of-2.jsonl."""
    return out.with_name(shard.name(out.name))


def part_files(out: Path) -> list[Path]:
    """The part files beside `out` of split runs (of any number of workers), written or only locked."""
    return Shard().parts(out)


def record_files(out: Path) -> list[Path]:
    """Every file that holds records of the run writing `out`: the output, its parts, and their dropped records."""
    kept = [out, *part_files(out)]
    return [*kept, *(dropped_path(p) for p in kept)]


def prepare_output(out: Path, cfg: LabelConfig, resume: bool) -> set[str]:
    """The ids already labelled (kept or dropped, in the output or a part); refuses to overwrite a finished run
    without --resume and to resume one written with other settings. Cuts torn last lines, then records the
    settings."""
    for part in part_files(out):
        with exclusive(part):  # a worker of a killed run still writing its part is refused here
            pass
    held = [p for p in (out, *part_files(out)) if p.exists() and p.stat().st_size > 0]
    if not resume:
        for path in held:
            refuse_restart(path, "labels")
    side = sidecar_path(out)
    if resume and held:
        if not side.exists():
            raise ValueError(f"{out} has no {side.name}, so its settings are unknown: label into a new --output")
        before = read_record(side).get("config", {})
        check_settings(out, before, cfg.identity(), verb="labelled", new_keys_free=True)
    if not resume or not held:
        remove_records(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {r["id"] for path in record_files(out) for r in read_rows(path, repair=True)}
    write_json(side, {"status": "running", "config": dataclasses.asdict(cfg)})
    return done


def remove_records(out: Path) -> None:
    """Remove every file of records of `out` (a fresh run), the parts' lock files with them."""
    for part in part_files(out):
        lock_path(part).unlink(missing_ok=True)
    for path in record_files(out):
        path.unlink(missing_ok=True)


def merge_parts(out: Path, order: list[str]) -> None:
    """Move the records of every part file into the output (and the dropped ones into its dropped file) in the
    order one process writes them: `order` lists the ids so. A record already in the output (a kill between this
    merge's writes and its removing the parts) is kept once. Does nothing when there are no parts."""
    parts = part_files(out)
    if not parts:
        return
    rank: dict[str, int] = {}
    for i, trace in enumerate(order):
        rank.setdefault(trace, i)
    for target, sources in ((out, parts), (dropped_path(out), [dropped_path(p) for p in parts])):
        lines = _lines_by_id(target)
        have = {trace for trace, _ in lines}
        for source in sources:
            lines.extend((trace, line) for trace, line in _lines_by_id(source) if trace not in have)
        if lines or target.exists():
            lines.sort(key=lambda pair: rank.get(pair[0], len(order)))  # ids outside `order` keep their place last
            write_atomic(target, "".join(line + "\n" for _, line in lines))
    for part in parts:  # every worker has ended, and this run holds the output's lock
        for path in (dropped_path(part), part, lock_path(part)):
            path.unlink(missing_ok=True)


def _lines_by_id(path: Path) -> list[tuple[str, str]]:
    """(id, line) of each whole line of a records file, the line as written (so a merge moves bytes, not values)."""
    return [(json.loads(line)["id"], line) for line in whole_lines(path)] if path.exists() else []


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
