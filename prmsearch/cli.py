"""The `prmsearch` command. Subcommands map their flags one-to-one onto config dataclasses, which can also be
loaded from a YAML recipe (`--config`); flags given on the command line win over the recipe.

Two promises the command keeps:
- It starts fast. The parser adds the flags of the one subcommand being run (its config class must be imported for
  them), so `prmsearch --help` imports no config module, and `verify`, `report` and `build` never import torch
  (`build --tokenizer` does, through transformers' AutoTokenizer); `search`, `label`, `train` and `quickstart`
  import it because they run models.
- Bad input ends in one line on stderr, `prmsearch COMMAND: error: WHAT`, and exit code 2: a `PrmsearchError`
  (or another ValueError from a config's checks) says what and where, a missing file says PATH: REASON. A traceback
  means a bug.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
import types
import typing
from collections.abc import Callable
from typing import Any

from . import __version__
from .errors import InputError, PrmsearchError, require_local

# Separators and markers are mostly whitespace: let users type them as escapes ("\n\n", "\t").
_ESCAPED = ("separator", "marker", "prompt_separator", "gap")


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


def _base_type(tp: Any) -> Any:
    """`int | None` → int; `list[str]` → list."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return typing.get_origin(tp) or tp


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _default_note(f: dataclasses.Field) -> str:
    """The help's tail, "(default: X)" with X as a user types it; nothing when empty, or when the help says it."""
    default = _default(f)
    if isinstance(default, list):
        return f" (comma-separated; default: {','.join(map(str, default))})"
    if default == "" or "default" in f.metadata.get("help", ""):
        return ""
    return f" (default: {default!r})"


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()) -> None:
    """One `--flag` per dataclass field, defaulting to None so that only flags actually given override a recipe.
    The help is the field's `metadata["help"]` and its default; allowed values come from the class's `CHOICES`."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "").replace("%", "%%") + _default_note(f)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind is list:
            parser.add_argument(flag, default=None, help=help_text)
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


def require_paths(cfg: Any, **kinds: str) -> None:
    """Refuse a mistyped local path (`--input ./nope.jsonl`) at once: a loader would take it for a hub id and
    answer, after a round-trip, about a repository nobody meant. `kinds` maps a field to what it names."""
    for name, what in kinds.items():
        value = getattr(cfg, name)
        if value:
            require_local(value, what, "--" + name.replace("_", "-"))


# ---- what each subcommand runs -------------------------------------------------------------------------------------


def _build(args: argparse.Namespace) -> int:
    from .data_builders.build import BuildConfig, format_summary, run_build

    cfg = config_from_args(BuildConfig, args, target=args.target)
    require_paths(cfg, input="file or folder", tokenizer="tokenizer")
    summary = run_build(cfg, progress=not args.quiet)
    print(format_summary(summary))
    print(f"wrote {cfg.output}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from .label import LabelConfig, run_label
    from .label.traces import format_label_summary

    cfg = config_from_args(LabelConfig, args)
    require_paths(cfg, input="file or folder", problems="file or folder", policy="model", judge="model")
    summary = run_label(cfg, resume=args.resume, progress=not args.quiet)
    print(format_label_summary(summary))
    print(f"wrote {cfg.output}")
    return 0


def _verify_math(args: argparse.Namespace) -> int:
    from .verifiers.results import VerifyMathConfig, format_verify_summary, verify_math_file

    cfg = config_from_args(VerifyMathConfig, args)  # its checks refuse a missing or mistyped --input
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
    from .search.report import format_table
    from .search.runner import SearchConfig, search_dataset

    cfg = config_from_args(SearchConfig, args)
    require_paths(cfg, policy="model", scorer="model")
    summary = search_dataset(cfg, resume=args.resume, progress=not args.quiet)
    print(format_table(summary))
    print(f"wrote {cfg.output}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    import time

    from .embedded.quickstart import QuickstartConfig, run_quickstart
    from .search.report import format_table

    started = time.perf_counter()
    cfg = config_from_args(QuickstartConfig, args)
    rows = run_quickstart(cfg, resume=args.resume, progress=not args.quiet)
    print(format_table(rows))
    print(f"wrote summary.json, summary.md and accuracy.png to {cfg.output} ({time.perf_counter() - started:.0f} s)")
    return 0


def _route_fit(args: argparse.Namespace) -> int:
    from .search.route_fit import RouteFitConfig, fit_runs, format_fit

    cfg = config_from_args(RouteFitConfig, args)
    print(format_fit(fit_runs(cfg)))
    print(f"wrote {cfg.output}; use it with: prmsearch search --strategy routed --route-table {cfg.output} ...")
    return 0


def _eval_processbench(args: argparse.Namespace) -> int:
    from .eval.processbench import ProcessBenchConfig, format_result, run_processbench

    cfg = config_from_args(ProcessBenchConfig, args)
    result = run_processbench(cfg)
    print(format_result(result))
    if cfg.output:
        print(f"wrote {cfg.output}")
    return 0


def _eval_canary(args: argparse.Namespace) -> int:
    from .eval.canary import CanaryConfig, format_canary, run_canary

    cfg = config_from_args(CanaryConfig, args)
    result = run_canary(cfg)
    print(format_canary(result))
    print(f"wrote canary.json and reliability.png to {cfg.output}")
    return 1 if result.get("drift") else 0


def _eval_aggregation(args: argparse.Namespace) -> int:
    from .eval.aggregation import AggregationConfig, format_aggregation, run_aggregation

    cfg = config_from_args(AggregationConfig, args)
    print(format_aggregation(run_aggregation(cfg)))
    if cfg.output:
        print(f"wrote {cfg.output}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .serve import ServeConfig, load_app, server_config

    cfg = config_from_args(ServeConfig, args)
    sock = _listen(cfg.host, cfg.port)  # first: a port in use is one line before the model loads
    app = load_app(cfg)
    routes = ", ".join(f"{'/'.join(sorted(r.methods - {'HEAD'}))} {r.path}" for r in app.routes)
    print(f"serving {cfg.scorer} on http://{cfg.host}:{cfg.port} ({routes})", flush=True)
    uvicorn.Server(server_config(app)).run(sockets=[sock])
    return 0


def _listen(host: str, port: int) -> Any:
    """A socket bound to host:port, for uvicorn to listen on."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise InputError(
            f"cannot listen on {host}:{port} ({e.strerror or e}): choose another --port or --host"
        ) from None
    sock.set_inheritable(True)
    return sock


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .search.overoptimization import report_runs
    from .search.report import format_table, report

    rows = report(args.run_dir[0] if len(args.run_dir) == 1 else args.run_dir, args.output)
    print(format_table(rows))
    first = Path(args.run_dir[0])
    where = args.output or (first if first.is_dir() else first.parent)
    found = report_runs(args.run_dir, where)
    print("\n".join(found))
    extra = ", overoptimization.json and overoptimization.png" if found else ""
    print(f"wrote summary.json, summary.md, accuracy.png{extra} to {where}")
    return 0


def _show_tree(args: argparse.Namespace) -> int:
    from .search.results import read_trees
    from .search.tree import Tree

    for row in read_trees(args.result, args.problem, args.strategy, args.n):
        print(f"== {row['strategy']} n={row['n']}")
        print(Tree.from_dict(row).render(max_chars=args.max_chars))
    return 0


# ---- each subcommand's arguments: the imports they need happen here, for the subcommand being run only ------------


def _build_args(p: argparse.ArgumentParser) -> None:
    from .data_builders.build import TARGETS, BuildConfig

    target = next(f for f in dataclasses.fields(BuildConfig) if f.name == "target")
    p.add_argument("target", choices=TARGETS, help=target.metadata["help"])
    p.add_argument("--config", help="YAML recipe of BuildConfig keys (see data_builders/); flags override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, BuildConfig, skip=("target",))
    p.set_defaults(func=_build)


def _label_args(p: argparse.ArgumentParser) -> None:
    from .label import LabelConfig

    p.add_argument("--config", help="YAML recipe of LabelConfig keys; flags override it")
    p.add_argument("--resume", action="store_true", help="continue the labels in --output, skipping what is done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, LabelConfig)
    p.set_defaults(func=_label)


def _verify_args(p: argparse.ArgumentParser) -> None:
    from .verifiers.results import VerifyMathConfig

    kinds = p.add_subparsers(dest="kind", required=True, metavar="{math}")
    about = "extract final answers and compare them with gold answers (math-verify)"
    math = kinds.add_parser("math", help=about, description=about[0].upper() + about[1:] + ".")
    math.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(math, VerifyMathConfig)
    math.set_defaults(func=_verify_math)


def _train_args(p: argparse.ArgumentParser) -> None:
    from .train.options import TrainOptions

    p.add_argument(
        "kind", choices=("bt", "orm", "prm"), help="the reward model: bt (pairs), orm (outcome), prm (steps)"
    )
    p.add_argument("recipe", help="YAML recipe (train/*.yaml) of the keys listed below")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe keys to override (values read as YAML)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint folder, or the latest checkpoint-* in output_dir when no path is given",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    # Recipe keys are not flags (they are key=value), so their help goes below the flags, one key a line.
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = textwrap.fill(p.description or "", 116)
    p.epilog = (
        "recipe keys (TrainConfig):\n"
        + _keys_help(TrainOptions)
        + "\n  ...and every other key of transformers' TrainingArguments (gradient_accumulation_steps, max_steps,\n"
        "  lr_scheduler_type, weight_decay, seed, bf16, activation_checkpointing, deepspeed, save_steps, eval_steps,\n"
        "  report_to, optim, ...), with transformers' defaults."
    )
    p.set_defaults(func=_train)


def _keys_help(config_cls: type) -> str:
    """`  key  help (one of ...; default: ...)` per field the class declares itself, wrapped: the keys of a command
    that takes no flags (what it inherits, e.g. TrainingArguments', is documented where it is declared)."""
    choices = getattr(config_cls, "CHOICES", {})
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    lines = []
    for f in (fields[name] for name in vars(config_cls).get("__annotations__", {}) if name in fields):
        help, default = f.metadata.get("help", ""), _default(f)
        notes = [f"one of {', '.join(choices[f.name])}"] if f.name in choices else []
        notes += [] if default == "" or "default" in help else [f"default: {default!r}"]  # a YAML value, lists too
        text = help + (f" ({'; '.join(notes)})" if notes else "")
        lines.append(textwrap.fill(text, 116, initial_indent=f"  {f.name:<28}", subsequent_indent=" " * 30))
    return "\n".join(lines)  # an epilog is not %-formatted, unlike an argument's help


def _search_args(p: argparse.ArgumentParser) -> None:
    from .search.runner import SearchConfig

    p.add_argument("--config", help="YAML recipe of SearchConfig keys (see search/); flags override it")
    p.add_argument("--resume", action="store_true", help="continue the run in --output, skipping what is done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, SearchConfig)
    p.set_defaults(func=_search)


def _quickstart_args(p: argparse.ArgumentParser) -> None:
    from .embedded.quickstart import QuickstartConfig

    p.add_argument("--resume", action="store_true", help="continue the runs in --output, skipping what is done")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(p, QuickstartConfig)
    p.set_defaults(func=_quickstart)


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir",
        nargs="+",
        help="the --output folder of `prmsearch search` (or its results.jsonl); several go into "
        "one table (then give --output)",
    )
    p.add_argument("--output", help="folder for the summary and the plot (default: RUN_DIR)")
    p.set_defaults(func=_report)


def _eval_args(p: argparse.ArgumentParser) -> None:
    from .eval.aggregation import AggregationConfig
    from .eval.canary import CanaryConfig
    from .eval.processbench import ProcessBenchConfig

    evals = [  # name, its config (every flag a field), the function it runs, its help, the rest of its description
        (
            "processbench",
            ProcessBenchConfig,
            _eval_processbench,
            "does a step scorer find the first wrong step? ProcessBench's error / correct accuracy and F1",
            ".",
        ),
        (
            "canary",
            CanaryConfig,
            _eval_canary,
            "has a reward model drifted? accuracy, AUROC or margin, ECE and a reliability diagram on a canary set",
            ". The set is JSONL in the model kind's TRL format: preference rows (prompt, chosen, rejected) for a BT "
            "model, outcome rows (prompt, completion, label) for an ORM, stepwise rows (prompt, completions, labels) "
            "for a PRM. With --baseline, a fall in accuracy or a rise in ECE beyond the allowed amounts is drift and "
            "the command exits 1.",
        ),
        (
            "aggregation",
            AggregationConfig,
            _eval_aggregation,
            "which step-score aggregation (last, min, prod, mean) picks right solutions? with --write, save the best",
            " in the PRM's config, where search, rerank, reward_function and serve read it. The samples are JSONL: "
            "outcome rows (prompt, completion, label), several per prompt, or stepwise rows (prompt, completions, "
            "labels). Reported: best-of-N accuracy and AUROC per aggregation.",
        ),
    ]
    kinds = p.add_subparsers(dest="kind", required=True, metavar="{" + ",".join(e[0] for e in evals) + "}")
    for name, config, run, about, rest in evals:
        sub = kinds.add_parser(name, help=about, description=about[0].upper() + about[1:] + rest)
        add_config_flags(sub, config)
        sub.set_defaults(func=run)


def _route_args(p: argparse.ArgumentParser) -> None:
    from .search.route_fit import RouteFitConfig

    actions = p.add_subparsers(dest="action", required=True, metavar="{fit}")
    about = "fit a routing table (difficulty bin -> strategy and N) on training-split search runs, within a budget"
    sub = actions.add_parser("fit", help=about, description=about[0].upper() + about[1:] + ".")
    add_config_flags(sub, RouteFitConfig)
    sub.set_defaults(func=_route_fit)


def _serve_args(p: argparse.ArgumentParser) -> None:
    from .serve import ServeConfig

    add_config_flags(p, ServeConfig)
    p.set_defaults(func=_serve)


def _show_tree_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", help="the run's output folder (or its trees.jsonl)")
    p.add_argument("--problem", required=True, help="problem id")
    p.add_argument("--strategy", help="only this strategy")
    p.add_argument("--n", type=int, help="only this N")
    p.add_argument("--max-chars", type=int, default=80, help="step text shown per node (default 80)")
    p.set_defaults(func=_show_tree)


# name: (one-line help, description, the function that adds its arguments)
COMMANDS: dict[str, tuple[str, str | None, Callable[[argparse.ArgumentParser], None]]] = {
    "build": (
        "build PRM / ORM / pair / stepwise label sets from traces or public data",
        "Reads --input with the --source reader, labels it for TARGET and writes --output, with a summary beside it "
        "(OUTPUT.build.json, or build.json in a folder) that training reads the tokenizer and step format from.",
        _build_args,
    ),
    "label": (
        "automatic process labels from policy rollouts: Monte Carlo (Math-Shepherd), first-error search "
        "(OmegaPRM), or a step-critic judge; consensus with arithmetic checks or a judge",
        "Writes OUTPUT (.jsonl, the stepwise format `prmsearch build prm --source stepwise` reads) "
        "and OUTPUT.label.json; --resume continues a killed run.",
        _label_args,
    ),
    "verify": ("grade model outputs against gold answers", None, _verify_args),
    "train": (
        "train a BT / ORM / PRM reward model from a YAML recipe (runs under `accelerate launch` too)",
        "Recipes live in train/ (see TrainConfig); key=value pairs override recipe keys, e.g. "
        "learning_rate=1e-5 model_config.hidden_size=64.",
        _train_args,
    ),
    "search": (
        "reward-guided search over a dataset: greedy, majority, best-of-N, weighted best-of-N, beam, DVTS, MCTS, "
        "particle filtering, routed per problem",
        "Strategies and N take comma-separated lists (--strategy beam,dvts --n 4,16); every "
        "(strategy, N) runs over the dataset. Results are appended to OUTPUT/results.jsonl; --resume continues.",
        _search_args,
    ),
    "quickstart": (
        "the main job on the embedded default: every strategy with the bundled policy, PRM and ORM",
        "Runs greedy, majority, best-of-N (ORM), weighted best-of-N (PRM), beam, DVTS and MCTS over "
        "held-out problems of the bundled chained-arithmetic task with the embedded tiny policy and reward models "
        "(no model hub), then writes the accuracy-against-compute table (summary.md, summary.json) and plot "
        "(accuracy.png). --retrain first rebuilds those models from scratch with prmsearch's own commands.",
        _quickstart_args,
    ),
    "report": (
        "accuracy against compute for a search run: summary.json, summary.md and accuracy.png",
        "Reads RUN_DIR/results.jsonl (a finished or a partial run; the inputs are never modified) and "
        "writes, per strategy and N, accuracy with its 95% Wilson interval, mean generated / scored tokens and "
        "wall time as summary.json (a list of rows) and summary.md, plus accuracy.png (accuracy against N and "
        "against generated tokens).",
        _report_args,
    ),
    "route": (
        "compute-optimal routing: fit which strategy and N each difficulty of problem gets, within a token budget",
        "route fit reads training-split runs that tried each (strategy, N) on the same problems, estimates each "
        "problem's difficulty from a probe (1 - the mean reward-model score of its first P samples), cuts difficulty "
        "into bins and picks per bin the (strategy, N) that gets the most problems right within --budget mean "
        "tokens. `prmsearch search --strategy routed --route-table TABLE` follows it.",
        _route_args,
    ),
    "eval": (
        "evaluate a reward model: ProcessBench-style first-error F1 of a step scorer; drift on a canary set",
        "eval processbench scores the steps of solutions annotated with their first wrong step (CHAMP, from the "
        "champ-dataset package, or a ProcessBench file) and reports accuracy on erroneous and on correct solutions "
        "and their harmonic mean; the flagging threshold is tuned on a held-out half unless --threshold is given. "
        "eval canary scores a fixed held-out set, reports the kind's accuracy and calibration with a reliability "
        "diagram, and with --baseline flags a drop against an earlier run (exit 1).",
        _eval_args,
    ),
    "serve": (
        "serve a reward model over HTTP with dynamic batching (OpenRLHF's remote reward model API)",
        'POST /score takes OpenRLHF\'s {"query": [...], "prompts": [...]} and answers {"rewards": [...]}; '
        "POST /score_steps takes prompts and step lists and answers per-step scores; GET /health. Requests that "
        "arrive while the model is busy are scored together in one forward pass.",
        _serve_args,
    ),
    "show-tree": (
        "print the search tree of one problem from a run saved with --save-trees",
        None,
        _show_tree_args,
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `prmsearch` parser. Every subcommand is listed with its one-line help; with `command`, only that one
    gets its arguments (the others would parse nothing, and adding them costs their imports). None: all of them."""
    parser = argparse.ArgumentParser(prog="prmsearch", description="Reward models for reasoning and guided search.")
    parser.add_argument("--version", action="version", version=f"prmsearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help, description, add_arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=description or help)
        if command is None or command == name:
            add_arguments(p)
    return parser


def error_line(e: BaseException) -> str:
    """What bad input prints: the error's message on one line, or for an OS error PATH: REASON (a third-party
    message, such as a transformers OSError, can span lines)."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The subcommand is the first word that is not an option (the top level's options take no values); with none
    # (`prmsearch --help`), "" gives no subcommand its arguments.
    parser = build_parser(next((a for a in argv if not a.startswith("-")), ""))
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
    # PrmsearchError is the contract; a plain ValueError is still caught because some configs' checks (BuildConfig,
    # LabelConfig, SearchConfig choices) raise it, and OSError covers files that are missing or unreadable.
    except (PrmsearchError, ValueError, OSError) as e:
        print(f"prmsearch {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
