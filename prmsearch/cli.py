"""The `prmsearch` command. Subcommands map their flags one-to-one onto config dataclasses, which can also be
loaded from a YAML recipe (`--config`); flags given on the command line win over the recipe."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from typing import Any

from . import __version__

# Separators and markers are mostly whitespace: let users type them as escapes ("\n\n", "\t").
_ESCAPED = ("separator", "marker", "prompt_separator", "gap")


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


def _base_type(tp: Any) -> Any:
    """`int | None` → int; `list[str]` → list."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return typing.get_origin(tp) or tp


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()) -> None:
    """One `--flag` per dataclass field, defaulting to None so that only flags actually given override a recipe."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        described = f.metadata.get("help", "").replace("%", "%%")
        help_text = f"{described} (default: {default!r})".strip()
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind is list:
            parser.add_argument(flag, default=None, help="comma-separated " + help_text)
        else:
            choices = getattr(config_cls, "CHOICES", {}).get(f.name)
            parser.add_argument(flag, type=kind, default=None, choices=choices, help=help_text)


def config_from_args(config_cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    given = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name in _ESCAPED:
            value = _unescape(value)
        if isinstance(value, str) and f.name.endswith("_fields"):
            value = [v for v in value.split(",") if v]
        given[f.name] = value
    given.update(fixed)
    if getattr(args, "config", None):
        return config_cls.from_yaml(args.config, **given)
    return config_cls(**given)


def _build(args: argparse.Namespace) -> int:
    from .data_builders.build import BuildConfig, format_summary, run_build

    cfg = config_from_args(BuildConfig, args, target=args.target)
    summary = run_build(cfg, progress=not args.quiet)
    print(format_summary(summary))
    print(f"wrote {cfg.output}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from .data_builders.autolabel import LabelConfig, format_label_summary, run_label

    cfg = config_from_args(LabelConfig, args)
    summary = run_label(cfg, resume=args.resume, progress=not args.quiet)
    print(format_label_summary(summary))
    print(f"wrote {cfg.output}")
    return 0


def _verify_math(args: argparse.Namespace) -> int:
    from .verifiers.results import VerifyMathConfig, format_verify_summary, verify_math_file

    cfg = config_from_args(VerifyMathConfig, args)
    summary = verify_math_file(cfg, progress=not args.quiet)
    print(format_verify_summary(summary))
    print(f"wrote {cfg.output}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train.config import TrainConfig, parse_overrides
    from .train.run import train

    cfg = TrainConfig.from_yaml(args.recipe, parse_overrides(args.overrides), kind=args.kind)
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    if result.eval_metrics:
        print("final eval: " + ", ".join(f"{k}={v:.4g}" for k, v in result.eval_metrics.items()))
    print(f"wrote {result.output_dir}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from .bench.report import format_table
    from .search.runner import SearchConfig, search_dataset

    cfg = config_from_args(SearchConfig, args)
    summary = search_dataset(cfg, resume=args.resume, progress=not args.quiet)
    print(format_table(summary))
    print(f"wrote {cfg.output}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    import time

    from .bench.report import format_table
    from .embedded.quickstart import QuickstartConfig, run_quickstart

    started = time.perf_counter()
    cfg = config_from_args(QuickstartConfig, args)
    rows = run_quickstart(cfg, resume=args.resume, progress=not args.quiet)
    print(format_table(rows))
    print(f"wrote summary.json, summary.md and accuracy.png to {cfg.output} ({time.perf_counter() - started:.0f} s)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench.report import format_table, report

    rows = report(args.run_dir[0] if len(args.run_dir) == 1 else args.run_dir, args.output)
    print(format_table(rows))
    first = Path(args.run_dir[0])
    where = args.output or (first if first.is_dir() else first.parent)
    print(f"wrote summary.json, summary.md and accuracy.png to {where}")
    return 0


def _show_tree(args: argparse.Namespace) -> int:
    from .search.results import read_trees
    from .search.tree import Tree

    for row in read_trees(args.result, args.problem, args.strategy, args.n):
        print(f"== {row['strategy']} n={row['n']}")
        print(Tree.from_dict(row).render(max_chars=args.max_chars))
    return 0


def main(argv: list[str] | None = None) -> int:
    from .data_builders.build import TARGETS, BuildConfig
    from .verifiers.results import VerifyMathConfig

    parser = argparse.ArgumentParser(prog="prmsearch", description="Reward models for reasoning and guided search.")
    parser.add_argument("--version", action="version", version=f"prmsearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build PRM / ORM / pair / stepwise label sets from traces or public data")
    build.add_argument("target", choices=TARGETS)
    build.add_argument("--config", help="YAML recipe (see data_builders/); flags override it")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(build, BuildConfig, skip=("target",))
    build.set_defaults(func=_build)

    from .data_builders.autolabel import LabelConfig

    label = sub.add_parser(
        "label",
        help="automatic process labels from policy rollouts: Monte Carlo (Math-Shepherd), first-error search "
        "(OmegaPRM), arithmetic consensus",
        description="Writes OUTPUT (.jsonl, the stepwise format `prmsearch build prm --source stepwise` reads) "
        "and OUTPUT.label.json; --resume continues a killed run.",
    )
    label.add_argument("--config", help="YAML recipe of LabelConfig keys; flags override it")
    label.add_argument("--resume", action="store_true", help="continue the labels in --output, skipping what is done")
    label.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(label, LabelConfig)
    label.set_defaults(func=_label)

    verify = sub.add_parser("verify", help="grade model outputs against gold answers")
    kinds = verify.add_subparsers(dest="kind", required=True)
    math = kinds.add_parser("math", help="extract final answers and compare them with gold answers (math-verify)")
    math.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(math, VerifyMathConfig)
    math.set_defaults(func=_verify_math)

    train = sub.add_parser(
        "train",
        help="train a BT / ORM / PRM reward model from a YAML recipe (runs under `accelerate launch` too)",
        description="Recipes live in train/ (see TrainConfig); key=value pairs override recipe keys, e.g. "
        "learning_rate=1e-5 model_config.hidden_size=64.",
    )
    train.add_argument("kind", choices=("bt", "orm", "prm"))
    train.add_argument("recipe", help="YAML recipe (train/*.yaml)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="recipe keys to override")
    train.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint folder, or the latest checkpoint-* in output_dir when no path is given",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    from .bench.datasets import DatasetUnavailableError
    from .search.runner import SearchConfig

    search = sub.add_parser(
        "search",
        help="reward-guided search over a dataset: greedy, majority, best-of-N, weighted best-of-N, beam, DVTS, MCTS",
        description="Strategies and N take comma-separated lists (--strategy beam,dvts --n 4,16); every "
        "(strategy, N) runs over the dataset. Results are appended to OUTPUT/results.jsonl; --resume continues.",
    )
    search.add_argument("--config", help="YAML recipe (see search/); flags override it")
    search.add_argument("--resume", action="store_true", help="continue the run in --output, skipping what is done")
    search.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(search, SearchConfig)
    search.set_defaults(func=_search)

    from .embedded.quickstart import QuickstartConfig

    quick = sub.add_parser(
        "quickstart",
        help="the main job on the embedded default: every strategy with the bundled policy, PRM and ORM",
        description="Runs greedy, majority, best-of-N (ORM), weighted best-of-N (PRM), beam, DVTS and MCTS over "
        "held-out problems of the bundled chained-arithmetic task with the embedded tiny policy and reward models "
        "(no model hub), then writes the accuracy-against-compute table (summary.md, summary.json) and plot "
        "(accuracy.png). --retrain first rebuilds those models from scratch with prmsearch's own commands.",
    )
    quick.add_argument("--resume", action="store_true", help="continue the runs in --output, skipping what is done")
    quick.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(quick, QuickstartConfig)
    quick.set_defaults(func=_quickstart)

    rep = sub.add_parser(
        "report",
        help="accuracy against compute for a search run: summary.json, summary.md and accuracy.png",
        description="Reads RUN_DIR/results.jsonl (a finished or a partial run; the inputs are never modified) and "
        "writes, per strategy and N, accuracy with its 95%% Wilson interval, mean generated / scored tokens and "
        "wall time as summary.json (a list of rows) and summary.md, plus accuracy.png (accuracy against N and "
        "against generated tokens).",
    )
    rep.add_argument(
        "run_dir",
        nargs="+",
        help="the --output folder of `prmsearch search` (or its results.jsonl); several go into "
        "one table (then give --output)",
    )
    rep.add_argument("--output", help="folder for the summary and the plot (default: RUN_DIR)")
    rep.set_defaults(func=_report)

    show = sub.add_parser("show-tree", help="print the search tree of one problem from a run saved with --save-trees")
    show.add_argument("result", help="the run's output folder (or its trees.jsonl)")
    show.add_argument("--problem", required=True, help="problem id")
    show.add_argument("--strategy", help="only this strategy")
    show.add_argument("--n", type=int, help="only this N")
    show.add_argument("--max-chars", type=int, default=80, help="step text shown per node (default 80)")
    show.set_defaults(func=_show_tree)

    # `key=value` overrides may come after flags (`train prm r.yaml --quiet lr=1e-4`), which argparse does not
    # collect into a positional list once an optional flag has ended it.
    args, extra = parser.parse_known_args(argv)
    if extra:
        stray = [a for a in extra if a.startswith("-") or "=" not in a or args.command != "train"]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, DatasetUnavailableError) as e:
        print(f"prmsearch {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
