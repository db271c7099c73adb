"""`LabelConfig`: everything `prmsearch label` takes, as flags and YAML recipe keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from ..data_builders.readers import ReaderOptions
from ..recipes import option, read_recipe
from ..search.load import PolicyConfig, Sampling
from ..steps import StepFormat

LABEL_METHODS = ("mc", "first-error", "judge")


SECOND_OPINIONS = ("arithmetic", "judge")


LABELS = ("hard", "soft")


CONSENSUS = ("off", "drop", "mark")


@dataclass
class LabelConfig(PolicyConfig, ReaderOptions, Sampling):
    """Everything `prmsearch label` needs; every field is a flag (`--gold-field` -> `gold_field`) and a key of a
    YAML recipe (`--config`). The policy's fields (model, backend, devices, prompt layout) are `PolicyConfig`'s,
    shared with `prmsearch search`; how `--input` is read is `ReaderOptions`', shared with `prmsearch build`
    (`skip_bad` also leaves out traces without a gold answer); how rollouts are sampled is `Sampling`'s, shared with
    `prmsearch search`."""

    # where the traces come from, where the labels go
    sample: int = option(0, "instead of reading traces, sample N solutions per problem of --problems from the policy")
    problems: str = option(
        "", "problem file or dataset (load_problems) to --sample from; without --sample, gold answers by prompt"
    )
    gold_field: str | None = option(None, "field of the input rows holding the gold answer (dotted: a.b)")
    output: str = option("", "labelled traces (.jsonl, stepwise format); provenance in OUTPUT.label.json")
    limit: int | None = option(None, "only the first N traces (with --sample: the first N problems)")
    split: str | None = option(None, "split of a hub dataset or save_to_disk folder")
    # how to label
    method: str = option(
        "mc", "mc: K rollouts from every step; first-error: binary search for the first bad step; judge: a step critic"
    )
    k: int = option(8, "rollouts per step prefix")
    labels: str = option("hard", "hard: 1 if some rollout reached the gold answer; soft: the fraction that did (mc)")
    consensus: str = option("off", "drop or mark traces whose first error the second opinion places elsewhere")
    second_opinion: str = option(
        "arithmetic", "what consensus asks: arithmetic (check_arithmetic_steps) or judge (the step critic --judge)"
    )
    judge: str = option("", "the judge LM (folder, hub id or embedded name) of method=judge or second_opinion=judge")
    judge_max_tokens: int = option(24, "tokens the judge writes after its prefilled verdict line")
    # the policy that writes rollouts (the model, backend and prompt layout: `PolicyConfig`; its sampling: `Sampling`)
    sample_temperature: float | None = option(
        None, "sampling temperature of the traces --sample draws (default: temperature); rollouts keep temperature"
    )
    max_tokens: int = option(512, "tokens per rollout (or sample); a cut rollout counts as not reaching the answer")
    batch_traces: int = option(16, "traces per chunk: one generate call per round, one write per chunk")
    workers: int = option(1, "processes the problems are split over (each loads the policy); the labels are the same")
    # grading
    grade_timeout: float = option(5.0, "seconds per answer comparison")
    code_timeout: float = option(10.0, "seconds per program run (code tasks)")
    code_workers: int | None = option(None, "sandboxed program runs in parallel (default: CPU count)")
    # steps, and the readers' options (as in `prmsearch build`)
    separator: str = option("\n\n", "step separator of math solutions (programs: lines)")

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        **PolicyConfig.CHOICES,
        **ReaderOptions.CHOICES,
        "method": LABEL_METHODS,
        "labels": LABELS,
        "consensus": CONSENSUS,
        "second_opinion": SECOND_OPINIONS,
    }
    # Settings that do not change the labels, so a resumed run may change them.
    NOT_IDENTITY: ClassVar[frozenset[str]] = frozenset(
        {"output", "limit", "batch_traces", "workers", "skip_bad", "code_workers", *PolicyConfig.RUNTIME}
    )

    def __post_init__(self) -> None:
        self.check_reader()
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name, low in (
            ("k", 1),
            ("sample", 0),
            ("batch_traces", 1),
            ("max_tokens", 1),
            ("limit", 0),
            ("judge_max_tokens", 1),
            ("workers", 1),
        ):
            value = getattr(self, name)
            if name == "limit" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.check_policy()
        self.check_sampling()
        if self.workers > 1 and self.backend == "vllm":
            raise ValueError("workers > 1 splits the problems over CPU processes: with --backend vllm keep --workers 1")
        if self.labels == "soft" and self.method != "mc":
            raise ValueError(
                "labels=soft needs method=mc: first-error search only learns whether a step is recoverable"
            )
        if self.second_opinion == "judge" and (self.consensus == "off" or self.method == "judge"):
            raise ValueError(
                "second_opinion=judge compares rollout labels with the judge: it needs --consensus drop or mark and "
                "--method mc or first-error"
            )
        if self.sample_temperature is not None:
            from ..search.generators import check_sampling

            check_sampling(self.sample_temperature, self.top_p, name="sample_temperature")

    @classmethod
    def from_yaml(cls, path: str, **overrides: Any) -> LabelConfig:
        return cls(**{**read_recipe(path, cls), **overrides})

    def step_format(self) -> StepFormat:
        return StepFormat(separator=self.separator)

    @property
    def uses_judge(self) -> bool:
        return self.method == "judge" or self.second_opinion == "judge"

    @property
    def uses_policy(self) -> bool:
        """Rollouts or samples need the policy; a judge labelling given traces does not."""
        return self.method != "judge" or self.sample > 0

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NOT_IDENTITY}
