"""Which share of a search run this process takes, when one run is split over several processes or machines.

A run split K ways is K processes that each search every K-th problem (problem i goes to part i mod K, so each part
gets easy and hard problems alike) and append to a results file of their own in the shared output folder. Seeds
come from the problem and the node, never from the batch or the process, so the K parts together hold exactly the
records one process would have written. Nothing is exchanged between the processes: the folder is the only meeting
point, so `--shard I/K` works across machines that share a filesystem as well as under `torchrun` or
`accelerate launch`, whose RANK and WORLD_SIZE variables give the part when `--shard` is not given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Part `index` (0-based) of `count`."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str | None, env: Mapping[str, str] | None = None) -> Shard:
        """ "I/K" (e.g. "0/2"); None: the launcher's RANK / WORLD_SIZE (torchrun, accelerate launch), else the whole
        run."""
        if spec is None:
            env = os.environ if env is None else env
            if "RANK" in env and "WORLD_SIZE" in env:
                spec = f"{env['RANK']}/{env['WORLD_SIZE']}"
                where = "RANK/WORLD_SIZE"
            else:
                return cls()
        else:
            where = "shard"
        index, _, count = str(spec).partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"{where} must be I/K, part I (from 0) of K, e.g. 0/2; got {spec!r}") from None
        if not 0 <= shard.index < shard.count:
            raise ValueError(f"{where} {spec!r}: the part I of I/K must be in 0..K-1")
        return shard

    @property
    def whole(self) -> bool:
        return self.count == 1

    def take(self, items: Sequence[T]) -> list[T]:
        """This part's items: every K-th, starting at I."""
        return list(items[self.index :: self.count])

    def name(self, filename: str) -> str:
        """The file this part writes in place of `filename`: "results.jsonl" -> "results.shard-0-of-2.jsonl"."""
        if self.whole:
            return filename
        stem, dot, ext = filename.partition(".")
        return f"{stem}.shard-{self.index}-of-{self.count}{dot}{ext}"

    def parts(self, path: Path) -> list[Path]:
        """The part files beside `path` of split runs of any number of parts: those written, and those whose lock
        alone is there (a part that has not written yet: `resume.exclusive` names it `.NAME.lock`)."""
        stem, dot, ext = path.name.partition(".")
        part = re.escape(stem) + r"\.shard-\d+-of-\d+" + re.escape(dot + ext)
        name, lock = re.compile(part), re.compile(r"\." + part + r"\.lock")
        if not path.parent.is_dir():
            return []
        found = {p.name for p in path.parent.iterdir() if name.fullmatch(p.name)}
        found |= {p.name[1 : -len(".lock")] for p in path.parent.iterdir() if lock.fullmatch(p.name)}
        return [path.with_name(n) for n in sorted(found)]

    def share_threads(self) -> None:
        """In a process that runs one of `count` parts side by side on this machine: take its share of the CPU
        threads, so the parts do not fight over the cores (`prmsearch quickstart` and `label --workers`)."""
        if self.count > 1:
            import torch

            from ..verifiers.workers import default_workers

            torch.set_num_threads(max(1, default_workers() // self.count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def exit_with_parent(parent: int) -> None:
    """A worker process's watch on the run that started it (a process pool's initializer): once that process is
    gone (killed), the worker ends too, rather than work on for nobody or wait forever for its next task."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
