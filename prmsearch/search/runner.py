"""`prmsearch search`: run strategies at several N over a dataset, grade the answers, write results you can resume.

Output folder:
- `results.jsonl`: one line per (problem, strategy, N) once that problem is searched and graded. Each batch of
  problems is written with one `write` call and flushed, so a killed run loses at most the batch in flight;
  `--resume` drops a torn last line and skips what is done. Seeds depend on the problem and the node, never on
  the batch, so a resumed run writes exactly what the uninterrupted run would have.
- `trees.jsonl` (`save_trees`): every node of every search tree, for `prmsearch show-tree`.
- `summary.md` / `summary.json` / `accuracy.png`: accuracy against compute per strategy and N (`bench.report`,
  the same files `prmsearch report` writes; the plot only where matplotlib is installed).
- `search_config.yaml`: the settings, checked on `--resume` so a resumed run cannot mix two configurations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..bench.report import format_table, report
from ..bench.report import summarize as summarize_records
from ..models.adapters import ADAPTERS
from ..recipes import read_recipe
from ..records import Problem
from . import NEEDS_SCORER, SAMPLES_WHOLE, STRATEGIES, run_search
from .engine import Search, SearchError, SearchParams, SearchSettings, State
from .memo import MemoGenerator
from .select import AGGREGATIONS, METHODS

RESULTS, TREES, CONFIG = "results.jsonl", "trees.jsonl", "search_config.yaml"
# Settings that do not change what a run computes, so a resume may change them.
_NOT_IDENTITY = {
    "output",
    "limit",
    "batch_problems",
    "save_trees",
    "device",
    "max_cache_tokens",
    "policy_cache_tokens",
    "gpu_memory_utilization",
    "kv_cache_gb",
}


@dataclass
class SearchConfig(SearchSettings):
    """A search run; the YAML recipes in `search/` hold these keys, and every key is a `prmsearch search` flag. The
    strategy settings (width, temperature, agg, ...) are `SearchSettings`' fields, shared with `SearchParams`."""

    policy: str = ""
    scorer: str | None = None
    scorer_adapter: str | None = None  # a public PRM's format (models.adapters.ADAPTERS) for `scorer`
    dataset: str = ""
    output: str = ""
    strategy: list[str] = field(default_factory=lambda: ["beam"])
    n: list[int] = field(default_factory=lambda: [4])
    backend: str = "hf"
    split: str | None = None
    limit: int | None = None
    prompt_template: str = "auto"
    system_prompt: str | None = None
    batch_problems: int = 16
    save_trees: bool = False
    full_rescore: bool = False
    max_cache_tokens: int = 2_000_000
    policy_cache_tokens: int = field(
        default=200_000,
        metadata={
            "help": "--backend hf: tokens of prefix states the policy keeps between steps (0: re-feed every path)"
        },
    )
    device: str | None = None
    dtype: str | None = None
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    kv_cache_gb: float | None = None
    grade_timeout: float = 5.0

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "backend": ("hf", "vllm"),
        "agg": AGGREGATIONS,
        "final": METHODS,
        "scorer_adapter": tuple(ADAPTERS),
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
            if getattr(self, name) not in allowed and not (name == "scorer_adapter" and self.scorer_adapter is None):
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        unknown = [s for s in self.strategy if s not in STRATEGIES]
        if unknown or not self.strategy:
            raise ValueError(f"unknown strategy {unknown or self.strategy}; choose from {', '.join(STRATEGIES)}")
        for name in ("policy", "dataset", "output"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        needs = [s for s in self.strategy if s in NEEDS_SCORER]
        if needs and not self.scorer:
            raise ValueError(f"strategies {needs} need a reward model: give scorer")
        if self.batch_problems < 1:
            raise ValueError("batch_problems must be at least 1")
        if self.policy_cache_tokens < 0:
            raise ValueError(
                f"policy_cache_tokens must be >= 0 (0 turns the cache off), got {self.policy_cache_tokens}"
            )
        for n in self.n:
            self.params(n).check()
            if any(s in ("beam", "dvts") for s in self.strategy):
                self.params(n).beam_width()

    @classmethod
    def from_yaml(cls, path: str, **overrides: Any) -> SearchConfig:
        return cls(**{**read_recipe(path, cls), **overrides})

    def params(self, n: int) -> SearchParams:
        return SearchParams(n=n, **{f.name: getattr(self, f.name) for f in dataclasses.fields(SearchSettings)})

    def settings(self) -> list[tuple[str, int]]:
        """(strategy, N) pairs to run; greedy decoding has no N and runs once, as N=1."""
        pairs = [(s, 1 if s == "greedy" else n) for s in self.strategy for n in self.n]
        return list(dict.fromkeys(pairs))

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_IDENTITY}


def load_generator(cfg: SearchConfig) -> Any:
    if cfg.backend == "vllm":
        from .vllm_generator import VLLMGenerator

        return VLLMGenerator(
            cfg.policy,
            tensor_parallel_size=cfg.tensor_parallel_size,
            dtype=cfg.dtype or "auto",
            seed=cfg.seed,
            max_model_len=cfg.max_model_len,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            kv_cache_memory_bytes=None if cfg.kv_cache_gb is None else int(cfg.kv_cache_gb * 2**30),
        )
    from .generators import HFGenerator

    return HFGenerator.from_pretrained(
        cfg.policy, device=cfg.device, dtype=cfg.dtype, prefix_cache_tokens=cfg.policy_cache_tokens
    )


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
    `scorer` and `problems` may be given already loaded (notebooks, tests); otherwise they come from `cfg`."""
    from ..bench.datasets import load_problems
    from .scorer import load_scorer

    out = Path(cfg.output)
    done = _prepare_output(out, cfg, resume)
    if problems is None:
        problems = load_problems(cfg.dataset, split=cfg.split, limit=cfg.limit)
    elif cfg.limit is not None:
        problems = list(problems)[: cfg.limit]
    if generator is None:
        generator = load_generator(cfg)
    if scorer is None and cfg.scorer and any(s in NEEDS_SCORER for s in cfg.strategy):
        scorer = load_scorer(
            cfg.scorer,
            adapter=cfg.scorer_adapter,
            device=cfg.device,
            dtype=cfg.dtype,
            full_rescore=cfg.full_rescore,
            agg=cfg.agg,
            max_cache_tokens=cfg.max_cache_tokens,
        )
    settings = cfg.settings()
    todo = {key: [p for p in problems if (p.id, *key) not in done] for key in settings}
    total = sum(len(ps) for ps in todo.values())
    bar = _bar(total, progress)
    # Whole-sample strategies go largest N first through one memory of samples: a smaller N's samples are the
    # first of a larger N's (same seeds), so `--n 1,4,16` draws 16 samples a problem, not 21, and majority, best-of-N
    # and weighted best-of-N share them.
    sampler = generator if isinstance(generator, MemoGenerator) else MemoGenerator(generator)
    order = sorted(todo, key=lambda key: -key[1] if key[0] in SAMPLES_WHOLE else 0)
    for strategy, n in order:
        pending = todo[strategy, n]
        policy = sampler if strategy in SAMPLES_WHOLE else generator
        for start in range(0, len(pending), cfg.batch_problems):
            chunk = pending[start : start + cfg.batch_problems]
            records, trees = _search_chunk(cfg, strategy, n, chunk, policy, scorer)
            if cfg.save_trees:
                append_rows(out / TREES, trees)
            append_rows(out / RESULTS, records)
            if bar is not None:
                bar.update(len(chunk))
                bar.set_postfix_str(f"{strategy} n={n}")
    if bar is not None:
        bar.close()
    # summary.json / summary.md / accuracy.png, exactly as `prmsearch report` writes them
    (out / RESULTS).touch()  # an empty dataset still gets its (empty) rows
    return report(out, settings=settings, need_plot=False)


def _search_chunk(
    cfg: SearchConfig, strategy: str, n: int, chunk: list[Problem], generator: Any, scorer: Any
) -> tuple[list[dict], list[dict]]:
    started = time.perf_counter()
    options = {"prompt_template": cfg.prompt_template, "system_prompt": cfg.system_prompt}
    states = run_search(
        chunk, generator, scorer if strategy in NEEDS_SCORER else None, strategy, cfg.params(n), **options
    )
    search = Search(generator, scorer, cfg.params(n), **options, timeout=cfg.grade_timeout)
    grades = grade_states(search, states)
    seconds = (time.perf_counter() - started) / len(chunk)
    records, trees = [], []
    for st, (answer, correct, reason) in zip(states, grades, strict=True):
        chosen = st.chosen
        records.append(
            {
                "problem_id": st.problem.id,
                "strategy": strategy,
                "n": n,
                "answer": answer,
                "correct": correct,
                "grade_reason": reason,
                "score": None if chosen is None else _score(search, st, chosen, strategy),
                "candidates": len(st.candidates),
                "nodes": len(st.tree.nodes) - 1,
                **st.counts,
                "seconds": round(seconds, 4),
                "solution": None if chosen is None else search.solution(st, chosen),
            }
        )
        trees.append({"strategy": strategy, "n": n, **st.tree.to_dict()})
    return records, trees


def _score(search: Search, st: State, node: Any, strategy: str) -> float | None:
    if strategy in ("beam", "dvts", "mcts"):
        return search.path_score(st, node)
    return node.score


def grade_states(search: Search, states: Sequence[State]) -> list[tuple[str | None, bool | None, str]]:
    """(answer, correct, reason) for each state's chosen solution: math answers through `verifiers.math` (None
    when the problem has no gold answer), programs through `verifiers.code` (the problem's unit tests)."""
    from ..verifiers.code import run_many
    from ..verifiers.math import compare_many, gold_answer

    out: list[tuple[str | None, bool | None, str]] = [(None, False, "no solution")] * len(states)
    math_rows, code_rows = [], []
    for i, st in enumerate(states):
        if st.chosen is None:
            continue
        answer = search.answer(st, st.chosen)
        if st.task == "code":
            code_rows.append((i, answer))
        elif st.problem.answer is None:
            out[i] = (answer, None, "no gold answer")
        else:
            math_rows.append((i, answer))
    if math_rows:
        golds = [gold_answer(states[i].problem.answer) for i, _ in math_rows]  # type: ignore[arg-type]
        verdicts = compare_many([a for _, a in math_rows], golds, timeout=search.timeout)
        for (i, answer), (ok, why) in zip(math_rows, verdicts, strict=True):
            out[i] = (answer, ok, why)
    if code_rows:
        jobs = [
            (program, states[i].problem.meta["test"], states[i].problem.meta.get("entry_point"))
            for i, program in code_rows
        ]
        for (i, _program), result in zip(code_rows, run_many(jobs, progress=False), strict=True):
            out[i] = (None, result.passed, result.status)
    return out


# ---- the output folder ---------------------------------------------------------------------------------------------


def _prepare_output(out: Path, cfg: SearchConfig, resume: bool) -> set[tuple[str, str, int]]:
    """The (problem, strategy, N) already done; checks that a resumed folder holds this configuration."""
    import yaml

    results = out / RESULTS
    stored = out / CONFIG
    if results.exists() and results.stat().st_size and not resume:
        raise SearchError(f"{results} already holds results: pass --resume to continue it, or choose a new --output")
    out.mkdir(parents=True, exist_ok=True)
    if resume and stored.exists():
        before = yaml.safe_load(stored.read_text()) or {}
        now = cfg.identity()
        changed = sorted(k for k in set(before) | set(now) if k not in _NOT_IDENTITY and before.get(k) != now.get(k))
        # More strategies or N may be added to a run; anything else would mix two experiments in one file.
        changed = [k for k in changed if k not in ("strategy", "n")]
        if changed:
            diff = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise SearchError(f"{out} was run with other settings ({diff}); resume it with the same ones")
    stored.write_text(yaml.safe_dump(cfg.identity(), sort_keys=False))
    done = {(r["problem_id"], r["strategy"], r["n"]) for r in read_results(results, repair=True)}
    if (out / TREES).exists():  # trees written just before a kill, whose results never were
        lines = [ln for ln in _lines(out / TREES) if _tree_key(ln) in done]
        (out / TREES).write_text("".join(ln + "\n" for ln in lines))
    return done


def _tree_key(line: str) -> tuple[str, str, int] | None:
    try:
        row = json.loads(line)
        return (row["problem_id"], row["strategy"], row["n"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [ln for ln in text.split("\n")[:-1] if ln.strip()]  # a last piece without "\n" is a torn write


def read_results(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a results file. `repair` cuts a torn last line (a run killed mid-write) off the file."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if repair and text and not text.endswith("\n"):
        with open(path, "r+", encoding="utf-8") as f:
            f.truncate(len(text[: text.rfind("\n") + 1].encode()))
    records = []
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SearchError(f"{path}: line {number}: not JSON ({e})") from e
    return records


def append_rows(path: Path, rows: list[dict]) -> None:
    """All rows in one write, flushed and synced: a kill leaves whole batches or a torn last line, never a gap."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _bar(total: int, enabled: bool) -> Any:
    if not enabled or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="search", unit="problem")


# ---- the summary ---------------------------------------------------------------------------------------------------


def summarize(path: str | Path, settings: Sequence[tuple[str, int]] | None = None) -> list[dict[str, Any]]:
    """Accuracy (with its 95% Wilson interval) and mean compute per (strategy, N) of a results file: the rows of
    summary.json (`bench.report.summarize`), plus an empty row for each of `settings` not run yet."""
    return summarize_records(read_results(path), settings or ())


def format_summary(summary: list[dict[str, Any]]) -> str:
    """The summary rows as a markdown table (`bench.report.format_table`)."""
    return format_table(summary)


def read_trees(path: str | Path, problem: str, strategy: str | None = None, n: int | None = None) -> list[dict]:
    """The saved trees of one problem (a run folder or its trees.jsonl), optionally of one strategy / N."""
    path = Path(path)
    if path.is_dir():
        path = path / TREES
    if not path.exists():
        raise SearchError(f"{path} does not exist: run the search with --save-trees")
    found = []
    for line in _lines(path):
        row = json.loads(line)
        if row["problem_id"] != problem or (strategy and row["strategy"] != strategy) or (n and row["n"] != n):
            continue
        found.append(row)
    if not found:
        raise SearchError(f"{path}: no tree for problem {problem!r}" + (f" ({strategy}, n={n})" if strategy else ""))
    return found
