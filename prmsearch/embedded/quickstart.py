"""`prmsearch quickstart`: the main job on the embedded default. Every strategy over held-out problems of the
bundled task, with the embedded policy, PRM and ORM, then the accuracy-against-compute table and plot.

What runs (the `PLAN`): greedy; majority, best-of-N (ORM) and weighted best-of-N (PRM) at N = 1, 4, 16; beam
(PRM) at N = 4, 16; DVTS and MCTS (PRM) at N = 16. Each is an ordinary `prmsearch search` run (settings from
`search/quickstart.yaml`'s keys, `QUICKSTART_SEARCH` below) into OUTPUT/prm or OUTPUT/orm, resumable, and
`prmsearch report` turns both into OUTPUT/summary.{json,md} and OUTPUT/accuracy.png. One policy serves all runs
through a `MemoGenerator`, so the samples majority, best-of-N and weighted best-of-N share (and N=4 shares with
N=16) are drawn once.

The plan is split over `workers` processes (the search runner's shards: worker I takes every K-th problem), each
with its share of the CPU threads. The embedded models are so small that a forward pass is mostly Python and
per-operator overhead, which a second torch thread barely shortens but a second process halves; the records are
the ones a single process writes (seeds come from the problem and the node), so only the wall time changes.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..recipes import option
from ..search.report import report
from ..search.shard import Shard, exit_with_parent
from ..tasks import load_problems

# (run folder, reward model, strategies, N values). Larger N first: smaller N then reuse its samples from memory.
PLAN: list[tuple[str, str, list[str], list[int]]] = [
    ("prm", "prm", ["greedy", "majority", "weighted_best_of_n"], [16, 4, 1]),
    ("prm", "prm", ["beam"], [16, 4]),
    ("prm", "prm", ["dvts", "mcts"], [16]),
    ("orm", "orm", ["best_of_n"], [16, 4, 1]),
]

# search/quickstart.yaml holds the same settings for running one strategy by hand.
QUICKSTART_SEARCH: dict[str, Any] = {
    "width": 4,
    "max_steps": 8,
    "max_step_tokens": 24,
    "max_tokens": 80,
    "temperature": 0.7,
    "agg": "min",
    "final": "weighted_best_of_n",
    "prompt_template": "plain",
    "batch_problems": 300,
}


@dataclass
class QuickstartConfig:
    """`prmsearch quickstart`: every flag is a field."""

    output: str = option("out/quickstart", "where the runs, summary.json, summary.md and accuracy.png go")
    problems: int = option(300, "held-out problems of the bundled task (its test split)")
    policy: str = option("embedded:policy", "the policy: an embedded name, a folder or a hub id")
    prm: str = option("embedded:prm", "the process reward model (steers beam, DVTS, MCTS, weighted best-of-N)")
    orm: str = option("embedded:orm", "the outcome reward model (best-of-N)")
    retrain: bool = option(False, "first rebuild the tokenizer, policy, labels, PRM and ORM from scratch")
    models: str | None = option(None, "where --retrain writes its models (None: OUTPUT/models)")
    seed: int = option(0, "the search seed")
    device: str | None = option(None, "cpu or cuda (None: cuda when available)")
    workers: int = option(2, "processes the problems are split over, each with its share of the CPU threads")

    def __post_init__(self) -> None:
        if self.problems < 1:
            raise ValueError(f"problems must be at least 1, got {self.problems}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


def run_quickstart(cfg: QuickstartConfig, *, resume: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Run the plan into `cfg.output` and return the summary rows (see `search.report`)."""
    import multiprocessing

    out = Path(cfg.output)
    models = {"policy": cfg.policy, "prm": cfg.prm, "orm": cfg.orm}
    if cfg.retrain:
        from .retrain import retrain

        models = retrain(cfg.models or str(out / "models"), progress=progress)
    started = time.perf_counter()
    workers = min(cfg.workers, cfg.problems)
    if workers == 1:
        run_plan(cfg, models, None, resume=resume, progress=progress)
    else:
        # spawn, not fork: a forked child would inherit torch's thread pool state from a parent that used it
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, context, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            shares = [
                pool.submit(run_plan, cfg, models, f"{i}/{workers}", resume=resume, progress=progress and i == 0)
                for i in range(workers)
            ]
            for share in shares:
                share.result()  # a worker's exception is raised here, after the others have finished theirs
    rows = report([out / "prm", out / "orm"], output=out)
    seconds = time.perf_counter() - started
    (out / "quickstart.txt").write_text(
        f"search wall time: {seconds:.1f} s ({workers} worker{'s' * (workers > 1)})\nmodels: {models}\n"
    )
    return rows


def run_plan(cfg: QuickstartConfig, models: dict[str, str], shard: str | None, *, resume: bool, progress: bool) -> None:
    """Every run of the `PLAN` over the problems of `shard` ("I/K", None: all). A worker of `run_quickstart`
    takes the K-th part of the CPU threads the machine has."""
    from ..search.generators import HFGenerator
    from ..search.load import load_scorer
    from ..search.memo import MemoGenerator
    from ..search.runner import SearchConfig, search_dataset

    Shard.parse(shard).share_threads()
    out = Path(cfg.output)
    problems = load_problems("chains", limit=cfg.problems)
    generator = MemoGenerator(HFGenerator.from_pretrained(models["policy"], device=cfg.device, batch_size=256))
    scorers = {
        kind: load_scorer(models[kind], device=cfg.device, agg=QUICKSTART_SEARCH["agg"]) for kind in ("prm", "orm")
    }
    done: set[str] = set()
    for folder, kind, strategies, ns in PLAN:
        search = SearchConfig(
            **QUICKSTART_SEARCH,
            policy=models["policy"],
            scorer=models[kind],
            dataset="chains",
            limit=cfg.problems,
            output=str(out / folder),
            strategy=strategies,
            n=ns,
            seed=cfg.seed,
            device=cfg.device,
            shard=shard,
        )
        search_dataset(
            search,
            resume=resume or folder in done,
            progress=progress,
            generator=generator,
            scorer=scorers[kind],
            problems=problems,
        )
        done.add(folder)
