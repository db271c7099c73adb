"""prmsearch: reward models for reasoning (BT, ORM, PRM) and reward-guided test-time search.

Every public name is imported on first use (PEP 562), so `import prmsearch` and the `prmsearch` command's parser
cost almost nothing: the readers, verifiers and datasets stack (~0.4 s) and torch (~3 s) load only when a name that
needs them is touched. `from prmsearch import StepFormat` works as with eager imports.
"""

from __future__ import annotations

from .lazy import lazy_names

__version__ = "0.1.0"

# name -> the module that defines (or re-exports) it
_LAZY = {
    "InputError": "prmsearch.errors",
    "OutputError": "prmsearch.errors",
    "PrmsearchError": "prmsearch.errors",
    "Grade": "prmsearch.records",
    "Problem": "prmsearch.records",
    "Trace": "prmsearch.records",
    "EncodedSteps": "prmsearch.steps",
    "StepFormat": "prmsearch.steps",
    "StepFormatError": "prmsearch.steps",
    "TooLongError": "prmsearch.steps",
    "READERS": "prmsearch.data_builders",
    "BadRowError": "prmsearch.data_builders",
    "BuildConfig": "prmsearch.data_builders",
    "BuildReport": "prmsearch.data_builders",
    "LabelConfig": "prmsearch.label",
    "ReadReport": "prmsearch.data_builders",
    "build_orm": "prmsearch.data_builders",
    "build_pairs": "prmsearch.data_builders",
    "build_prm": "prmsearch.data_builders",
    "build_stepwise": "prmsearch.data_builders",
    "label_traces": "prmsearch.label",
    "run_build": "prmsearch.data_builders",
    "run_label": "prmsearch.label",
    "CodeLimits": "prmsearch.verifiers",
    "CodeResult": "prmsearch.verifiers",
    "check_arithmetic_steps": "prmsearch.verifiers",
    "extract_answer": "prmsearch.verifiers",
    "extract_many": "prmsearch.verifiers",
    "grade": "prmsearch.verifiers",
    "grade_many": "prmsearch.verifiers",
    "is_equivalent": "prmsearch.verifiers",
    "pass_at_k": "prmsearch.verifiers",
    "run_many": "prmsearch.verifiers",
    "run_tests": "prmsearch.verifiers",
    "TASKS": "prmsearch.tasks",
    "DATASETS": "prmsearch.tasks",
    "Task": "prmsearch.tasks",
    "load_problems": "prmsearch.tasks",
    "task_of": "prmsearch.tasks",
    "load_tokenizer": "prmsearch.models",
    "RewardModel": "prmsearch.models.reward_model",
    "load_adapter": "prmsearch.models.formats",
    "load_reward_model": "prmsearch.models.formats",
    "TrainConfig": "prmsearch.train.config",
    "rerank": "prmsearch.search.rerank",
    "CriticJudge": "prmsearch.judges",
    "PairwiseJudge": "prmsearch.judges",
    "PointwiseJudge": "prmsearch.judges",
    "load_judge": "prmsearch.search.load",
    "ServeConfig": "prmsearch.serve",
    "create_app": "prmsearch.serve",
    "RewardFunction": "prmsearch.rewards",
    "reward_function": "prmsearch.rewards",
    "MemoGenerator": "prmsearch.search.memo",
    "report": "prmsearch.search.report",
    "format_table": "prmsearch.search.report",
    "plot": "prmsearch.search.report",
    "RoutingTable": "prmsearch.search.routing",
    "fit_routing": "prmsearch.search.route_fit",
    "CanaryConfig": "prmsearch.eval.canary",
    "run_canary": "prmsearch.eval.canary",
    "QuickstartConfig": "prmsearch.embedded.quickstart",
    "run_quickstart": "prmsearch.embedded.quickstart",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
