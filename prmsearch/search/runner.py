"""`prmsearch search`: run strategies at several N over a dataset, grade the answers, write results you can resume.

What the output folder holds, and how a resume and a run split over processes use it, is `results.py`; which
problems a process takes is `shard.py`; the summary is `search.report`'s. Seeds depend on the problem and the node,
never on the batch or the process, so a resumed or a split run writes exactly what one uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..devices import short_of_memory
from ..errors import InputError
from ..files import append_rows
from ..models.formats import FORMATS
from ..recipes import option, read_recipe
from ..records import Problem
from ..resume import exclusive
from ..scoring import DEFAULT_STEP_AGGREGATION, STEP_AGGREGATIONS
from ..search.report import report, summarize
from ..tasks import load_problems
from . import sal_recipe
from .engine import Search, SearchParams, SearchSettings, State
from .load import JUDGE_PROTOCOLS, PolicyConfig, load_generator, load_judge, load_scorer, rank_device
from .memo import MemoGenerator
from .results import RESULTS, TREES, RunFolderError, mark_done, prepare, read_results
from .routing import RoutingTable
from .samples import SAMPLE_SETTINGS, SAMPLES, SampleStore, samples_of
from .select import SELECTIONS
from .shard import Shard
from .strategies import STRATEGIES, run_strategy

# Settings that do not change what a run computes, so a resume may change them.
_NOT_IDENTITY = {
    "output",
    "start",
    "limit",
    "batch_problems",
    "save_trees",
    "max_cache_tokens",
    "shard",
    "samples_from",
    *PolicyConfig.RUNTIME,
}


@dataclass
class SearchConfig(SearchSettings, PolicyConfig):
    """A search run; the YAML recipes in `search/` hold these keys, and every key is a `prmsearch search` flag. The
    strategy settings (width, temperature, agg, ...) are `SearchSettings`' fields, shared with `SearchParams`; the
    policy's (model, backend, devices, prompt layout) are `PolicyConfig`'s, shared with `prmsearch label`."""

    scorer: str | None = option(
        None, "the reward model (strategies that score need one): a prmsearch-trained folder or hub id, embedded:prm"
    )
    scorer_adapter: str | None = option(None, "read --scorer in this format (default: the one its config declares)")
    judge: str | None = option(None, "instead of --scorer, this causal LM as a judge (folder, hub id, embedded name)")
    judge_protocol: str = option(
        "critic", "how --judge judges: critic (step scores: every strategy), pointwise or pairwise (best-of-N)"
    )
    dataset: str = option(
        "", "problems: math500, gsm8k, humaneval, chains, or a .jsonl/.json/.parquet/.csv file or save_to_disk folder"
    )
    output: str = option("", "run folder: results.jsonl (one line per finished problem), summary, trees")
    strategy: list[str] = field(
        default_factory=lambda: ["beam"],
        metadata={
            "help": "strategies, each run at every N: " + "; ".join(f"{k}: {s.help}" for k, s in STRATEGIES.items())
        },
    )
    n: list[int] = field(
        default_factory=lambda: [4],
        metadata={"help": "the N each strategy runs at: samples, beams x width, or MCTS simulations (e.g. 1,4,16)"},
    )
    split: str | None = option(None, "dataset split (default: test, or a local file's only split)")
    start: int = option(0, "skip the first N problems of the dataset (with limit: problems start .. start + limit)")
    limit: int | None = option(None, "only the first N problems")
    batch_problems: int = option(16, "problems searched together: one generate and one score call serve them all")
    save_trees: bool = option(False, "also write every node of every search tree to trees.jsonl (prmsearch show-tree)")
    full_rescore: bool = option(False, "baseline: re-score every path from its start at each step, no prefix cache")
    max_cache_tokens: int = option(2_000_000, "tokens of prefix states the PRM scorer keeps between steps (LRU)")
    grade_timeout: float = option(5.0, "seconds per answer comparison when grouping and grading answers")
    samples_from: str | None = option(
        None,
        "a run folder whose stored samples majority / best-of-N / weighted best-of-N judge instead of drawing them "
        "again (same policy and sampling settings: checked), e.g. to rank one set of samples with an ORM and a PRM",
    )
    shard: str | None = field(
        default=None,
        metadata={
            "help": "I/K: search part I (from 0) of K of the problems, next to the other parts in --output "
            "(default: RANK/WORLD_SIZE under torchrun or accelerate launch, else all)"
        },
    )

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        **PolicyConfig.CHOICES,
        "agg": STEP_AGGREGATIONS,
        "final": SELECTIONS,
        "scorer_adapter": tuple(FORMATS),
        "judge_protocol": JUDGE_PROTOCOLS,
    }

    def __post_init__(self) -> None:
        if isinstance(self.strategy, str):
            self.strategy = [s for s in self.strategy.split(",") if s]
        if isinstance(self.n, (int, str)):
            self.n = [self.n] if isinstance(self.n, int) else [v for v in str(self.n).split(",") if v]  # type: ignore
        try:
            self.n = [int(v) for v in self.n]
        except ValueError as e:
            raise ValueError(f"n must be integers, e.g. 1,4,16: {e}") from e
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) is not None and getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        unknown = [s for s in self.strategy if s not in STRATEGIES]
        if unknown or not self.strategy:
            raise ValueError(f"unknown strategy {unknown or self.strategy}; choose from {', '.join(STRATEGIES)}")
        for name in ("policy", "dataset", "output"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        needs = [s for s in self.strategy if STRATEGIES[s].scorer]
        if needs and not (self.scorer or self.judge):
            raise ValueError(f"strategies {needs} need a reward model: give scorer (or judge)")
        if self.scorer and self.judge:
            raise ValueError("give scorer or judge, not both")
        if self.start < 0:
            raise ValueError(f"start must be at least 0, got {self.start}")
        if self.batch_problems < 1:
            raise ValueError("batch_problems must be at least 1")
        if "routed" in self.strategy:
            if not self.route_table:
                raise ValueError("strategy routed needs --route-table (made by `prmsearch route fit`)")
            RoutingTable.load(self.route_table)  # a bad table fails here, before anything is loaded
        self.check_policy()
        self.check_sampling()
        Shard.parse(self.shard)  # a bad I/K fails here, before anything is loaded
        for n in self.n:
            params = self.params(n)
            params.check()
            if any(STRATEGIES[s].whole_beams for s in self.strategy):
                params.beam_width()

    @classmethod
    def from_yaml(cls, path: str, **overrides: Any) -> SearchConfig:
        """A recipe of these keys, or a search-and-learn recipe as it is (`sal_recipe`); `overrides` (flags) win."""
        values = read_recipe(path)
        if sal_recipe.is_recipe(values):
            values = sal_recipe.translate(values, path)
        else:
            read_recipe(path, cls)  # refuses keys that are not fields, in one line naming the file
        return cls(**{**values, **overrides})

    def params(self, n: int) -> SearchParams:
        return SearchParams(budget=n, **{f.name: getattr(self, f.name) for f in dataclasses.fields(SearchSettings)})

    def runs(self) -> list[tuple[str, int]]:
        """(strategy, N) pairs to run; a strategy without N (greedy, routed) runs once, as N=1."""
        pairs = [(s, n if STRATEGIES[s].sweeps_n else 1) for s in self.strategy for n in self.n]
        return list(dict.fromkeys(pairs))

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_IDENTITY}


def search_dataset(
    cfg: SearchConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    generator: Any = None,
    scorer: Any = None,
    problems: Sequence[Problem] | None = None,
) -> list[dict[str, Any]]:
    """Run every (strategy, N) of `cfg` over its dataset into `cfg.output`; returns the summary rows. `generator`,
    `scorer` and `problems` may be given already loaded (notebooks, tests); otherwise they come from `cfg`. One
    run writes a part of a run folder at a time: a second one at once is refused."""
    out = Path(cfg.output)
    shard = Shard.parse(cfg.shard)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--output {out} is a file; a search writes a run folder: choose a new --output")
    check_memory(cfg)
    with exclusive(out / shard.name(RESULTS), RunFolderError):
        return _search_dataset(cfg, out, shard, resume, progress, generator, scorer, problems)


def _search_dataset(
    cfg: SearchConfig,
    out: Path,
    shard: Shard,
    resume: bool,
    progress: bool,
    generator: Any,
    scorer: Any,
    problems: Sequence[Problem] | None,
) -> list[dict[str, Any]]:
    theirs = samples_of(cfg.samples_from, {k: getattr(cfg, k) for k in SAMPLE_SETTINGS}) if cfg.samples_from else []
    done = prepare(out, cfg.identity(), shard, resume, free=(*_NOT_IDENTITY, "strategy", "n"))
    end = None if cfg.limit is None else cfg.start + cfg.limit
    if problems is None:
        problems = load_problems(cfg.dataset, split=cfg.split, limit=end)
    problems = list(problems)[cfg.start : end]
    if not problems:
        raise InputError(
            f"--dataset {cfg.dataset}: no problems to search (the dataset is empty, or --start / --limit leave none)"
        )
    problems = shard.take(problems)
    if generator is None:
        generator = load_generator(cfg)
    if scorer is None and any(STRATEGIES[s].scorer for s in cfg.strategy):
        scorer = _load_scorer(cfg)
    runs = cfg.runs()
    params = {n: cfg.params(n) for _, n in runs}
    todo = {key: [p for p in problems if (p.id, *key) not in done] for key in runs}
    total = sum(len(ps) for ps in todo.values())
    bar = _bar(total, progress, "search" if shard.whole else f"search {shard}")
    # Whole-sample strategies go largest N first through one memory of samples: a smaller N's samples are the
    # first of a larger N's (same seeds), so `--n 1,4,16` draws 16 samples a problem, not 21, and majority, best-of-N
    # and weighted best-of-N share them.
    if isinstance(generator, MemoGenerator):
        sampler = generator  # the caller's own memory of samples (quickstart): no store is read or written
    else:
        sampler = MemoGenerator(generator, store=SampleStore(out / shard.name(SAMPLES), read=theirs))
    order = sorted(todo, key=lambda key: -key[1] if STRATEGIES[key[0]].samples_whole else 0)
    results, trees = out / shard.name(RESULTS), out / shard.name(TREES)
    for strategy, n in order:
        pending = todo[strategy, n]
        policy = sampler if STRATEGIES[strategy].samples_whole else generator
        for start in range(0, len(pending), cfg.batch_problems):
            chunk = pending[start : start + cfg.batch_problems]
            records, chunk_trees = _search_chunk(cfg, strategy, params[n], chunk, policy, scorer)
            if cfg.save_trees:
                append_rows(trees, chunk_trees)
            append_rows(results, records)
            if bar is not None:
                bar.update(len(chunk))
                bar.set_postfix_str(f"{strategy} n={n}")
    if bar is not None:
        bar.close()
    results.touch()  # an empty share still gets its (empty) rows
    if mark_done(out, shard):  # summary.json / summary.md / accuracy.png, as `prmsearch report` writes them
        return report(out, settings=runs, need_plot=False)
    return summarize(read_results(out), runs)


# What one sampled token costs in memory while its batch is searched (a Python int in a token list, its text, its
# share of the tree), and one sample besides its tokens. Measured: majority N=512 against N=8 on 16 bundled problems
# with the embedded policy peaks 15 MB higher for 354k more tokens (about 43 bytes a token, samples included).
BYTES_PER_TOKEN, BYTES_PER_SAMPLE = 48, 1024


def check_memory(cfg: SearchConfig) -> None:
    """Refuse, before anything loads, a run whose largest N cannot be held: a batch keeps up to N samples of
    `max_tokens` for each of its problems (an upper bound: most samples end sooner), and `--n 1000000` would
    otherwise grow for minutes until the machine kills it."""
    n = max(cfg.n)
    need = n * cfg.batch_problems * (cfg.max_tokens * BYTES_PER_TOKEN + BYTES_PER_SAMPLE)
    free = short_of_memory(need)
    if free is not None:
        raise InputError(
            f"--n {n} with --batch-problems {cfg.batch_problems} and --max-tokens {cfg.max_tokens} can hold about "
            f"{need / 2**30:.1f} GiB of samples at once; {free / 2**30:.1f} GiB is free: lower --n, --batch-problems "
            "or --max-tokens"
        )


def _load_scorer(cfg: SearchConfig) -> Any:
    """The reward model a run names: a judge (`--judge`), a reward model (`--scorer`, read through its adapter with
    `--scorer-adapter`), or None."""
    if cfg.judge:
        agg = cfg.agg or DEFAULT_STEP_AGGREGATION
        return load_judge(cfg.judge, cfg.judge_protocol, device=rank_device(cfg.device), agg=agg)
    if cfg.scorer:
        return load_scorer(
            cfg.scorer,
            adapter=cfg.scorer_adapter,
            device=rank_device(cfg.device),
            dtype=cfg.dtype,
            full_rescore=cfg.full_rescore,
            agg=cfg.agg,
            max_cache_tokens=cfg.max_cache_tokens,
        )
    return None


def _search_chunk(
    cfg: SearchConfig, strategy: str, params: SearchParams, chunk: list[Problem], generator: Any, scorer: Any
) -> tuple[list[dict], list[dict]]:
    started = time.perf_counter()
    options = {"prompt_template": cfg.prompt_template, "system_prompt": cfg.system_prompt, "timeout": cfg.grade_timeout}
    search = Search(generator, scorer if STRATEGIES[strategy].scorer else None, params, **options)
    states = run_strategy(search, chunk, strategy)
    grades = search.grade(states)
    seconds = (time.perf_counter() - started) / len(chunk)
    records, trees = [], []
    for st, grade in zip(states, grades, strict=True):
        chosen = st.chosen
        records.append(
            {
                "problem_id": st.problem.id,
                "strategy": strategy,
                "n": params.budget,
                "answer": grade.answer,
                "correct": grade.correct,
                "grade_reason": grade.reason,
                "score": None if chosen is None else _score(search, st, chosen, strategy),
                "candidates": len(st.candidates),
                "nodes": len(st.tree.nodes) - 1,
                **st.counts,
                "seconds": round(seconds, 4),
                "solution": None if chosen is None else search.solution(st, chosen),
                **st.info,
            }
        )
        trees.append({"strategy": strategy, "n": params.budget, **st.tree.to_dict()})
    return records, trees


def _score(search: Search, st: State, node: Any, strategy: str) -> float | None:
    return search.path_score(st, node) if STRATEGIES[strategy].path_score else node.score


def _bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="problem")
