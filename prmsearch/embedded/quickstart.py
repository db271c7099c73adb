"""`prmsearch quickstart`: the main job on the embedded default. Every strategy over held-out problems of the
bundled task, with the embedded policy, PRM and ORM, then the accuracy-against-compute table and plot.

What runs (the `PLAN`): greedy; majority, best-of-N (ORM) and weighted best-of-N (PRM) at N = 1, 4, 16; beam
(PRM) at N = 4, 16; DVTS and MCTS (PRM) at N = 16. Each is an ordinary `prmsearch search` run (settings from
`search/quickstart.yaml`'s keys, `QUICKSTART_SEARCH` below) into OUTPUT/prm or OUTPUT/orm, resumable, and
`prmsearch report` turns both into OUTPUT/summary.{json,md} and OUTPUT/accuracy.png. One policy serves all runs
through a `MemoGenerator`, so the samples majority, best-of-N and weighted best-of-N share (and N=4 shares with
N=16) are drawn once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..recipes import option

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
    "batch_problems": 100,
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

    def __post_init__(self) -> None:
        if self.problems < 1:
            raise ValueError(f"problems must be at least 1, got {self.problems}")


def run_quickstart(cfg: QuickstartConfig, *, resume: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Run the plan into `cfg.output` and return the summary rows (see `bench.report`)."""
    from ..bench.datasets import load_problems
    from ..bench.report import report
    from ..search.generators import HFGenerator
    from ..search.load import load_scorer
    from ..search.memo import MemoGenerator
    from ..search.runner import SearchConfig, search_dataset

    out = Path(cfg.output)
    models = {"policy": cfg.policy, "prm": cfg.prm, "orm": cfg.orm}
    if cfg.retrain:
        from .retrain import retrain

        models = retrain(cfg.models or str(out / "models"), progress=progress)
    problems = load_problems("chains", limit=cfg.problems)
    started = time.perf_counter()
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
    rows = report([out / "prm", out / "orm"], output=out)
    seconds = time.perf_counter() - started
    (out / "quickstart.txt").write_text(f"search wall time: {seconds:.1f} s\nmodels: {models}\n")
    return rows
