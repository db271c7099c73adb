"""Automatic process labels: `prmsearch label` and `label_traces`.

Two ways to turn a policy's rollouts into step labels (see `rollouts` for how a rollout is drawn and graded):

- Monte Carlo (`method: mc`, Math-Shepherd): K rollouts from every step prefix of a trace. The hard label of step
  i is 1 when some rollout from steps[: i + 1] reached the gold answer; the soft label is the fraction that did,
  kept as a float. The final step is labelled by the trace's own outcome, with no rollouts.
- First-error search (`method: first-error`, OmegaPRM): a binary search over the prefixes of a wrong trace for the
  first step after which none of K rollouts reaches the gold answer. Steps before it are 1, it is 0, the steps
  after it follow `after_error`. A right trace is all 1 with no rollouts. When labels are monotone (once no
  rollout recovers, none recovers later) this gives the Monte Carlo hard labels up to the first error, with
  about log2(steps) probes instead of steps - 1; the rollouts it used are reported. Probes draw exactly the
  rollouts Monte Carlo would draw at those steps (same seeds), so the two compare like for like.

- judge (`method: judge`, `judge: MODEL`): no rollouts; a step critic (`judges.CriticJudge`, ProcessBench's
  protocol, temperature 0) names each trace's earliest wrong step, which becomes the first error (steps after it
  follow `after_error`, as for first-error search); a trace whose verdict cannot be parsed is not labelled: it
  goes to `<output>.dropped.jsonl` with status `invalid`, and the summary counts it.

Consensus (`consensus: drop | mark`) compares the labels' first error with a second opinion (`second_opinion`):
- `arithmetic` (default, costs nothing): `check_arithmetic_steps`. When it finds a step with wrong arithmetic and
  the labels put the first error elsewhere, the trace is dropped (kept for inspection in `<output>.dropped.jsonl`)
  or marked. Status per trace: `agree` (same first error, or none by both), `disagree`, `unconfirmed` (the labels
  found an error where the arithmetic is fine: a reasoning error the checker cannot see), `unchecked` (code).
- `judge` (the Qwen2.5-Math-PRM recipe: Monte Carlo labels kept only where an LLM judge agrees): the step critic
  `judge` names the earliest wrong step of every trace; `agree` (the same step, or none by both), `disagree`, or
  `invalid` (no parseable verdict: nothing confirms the labels, so `drop` drops it too).

Output (`run_label`): one JSON line per trace in TRL's stepwise format (`prompt`, `completions`, `labels`), which
`read_stepwise` reads, so `prmsearch build prm --source stepwise` turns it into training data, plus `id`,
`group_id`, `source`, `task`, `gold`, `outcome`, `first_error`, `correct_rollouts` (per step, how many of the K
rollouts reached the gold; null where none ran), `rollouts`, `generated_tokens`, `cut_rollouts`, `num_steps`,
`consensus`. Provenance goes to `<output>.label.json`.

`--workers N` splits a run over N processes, worker I labelling every N-th problem into a part file of its own; the
parts are merged into the output in input order, so it is byte for byte what one process writes (seeds come from
the run seed and the trace alone).

The files: `rollouts` (drawing and grading rollouts), `methods` (the algorithms and the second opinions), `traces`
(labelling traces in memory, the records), `command` (the command: reading, chunks, workers), `outputs` (the files a
run writes, resume, the workers' parts and their merge), `config`.
"""

from .command import run_label
from .config import LabelConfig
from .traces import LabelResult, label_traces

__all__ = ["LabelConfig", "LabelResult", "label_traces", "run_label"]
