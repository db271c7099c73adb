"""The loop every strategy shares: expand nodes with the policy, score new steps with the reward model, count what
it cost, pick the answer. Strategies (sampling.py, beam.py, mcts.py) differ only in which nodes they expand and keep.

Everything is batched across problems: one `expand` call sends the frontier of every problem to the generator in
one `generate`, one `score` call sends every new step to the scorer. Seeds come from (run seed, problem id, node
path), so a problem's tree does not depend on which problems share its batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..records import Problem
from ..steps import StepFormat
from ..verifiers.math import extract_answer
from .adapter_scorer import AdapterScorer
from .generators import Completion, Generator, derive_seed
from .scorer import OutcomeScorer, ScoreCounts, StepScorer
from .select import AGGREGATIONS, METHODS, aggregate, group_answers_many, select_from_groups
from .tree import COMPLETE, CUT, EMPTY, STEP, Node, Tree

Scorer = StepScorer | AdapterScorer | OutcomeScorer

SYSTEM_PROMPT = (
    "Solve the following math problem efficiently and clearly. Think step by step, separating steps with a blank "
    "line, and end with: Therefore, the final answer is: $\\boxed{answer}$."
)


class SearchError(ValueError):
    """Settings a strategy cannot run with (a strategy that needs step scores given an ORM, N not a multiple of
    the width, ...)."""


@dataclass
class SearchSettings:
    """What a strategy runs with, at any N; `SearchParams` adds N, and `runner.SearchConfig` (recipes and CLI flags)
    takes these same fields. `width` (M): children per expansion in beam / DVTS / MCTS. `max_tokens` bounds a whole
    solution (greedy, sampling, the last step, rollouts), `max_step_tokens` one step. `agg` turns a path's step
    scores into a score for selection and ranking; `final` picks the answer among the complete solutions a tree
    search found."""

    width: int = 4
    max_steps: int = 40
    max_step_tokens: int = 256
    max_tokens: int = 1024
    temperature: float = 0.8
    top_p: float = 1.0
    seed: int = 0
    agg: str = "last"
    final: str = "weighted_best_of_n"
    lookahead: int = 0
    puct: float = 1.0
    rollout: bool = True


@dataclass
class SearchParams(SearchSettings):
    """One strategy at one N: beam keeps N/M beams, DVTS grows N/M subtrees, MCTS runs N simulations."""

    n: int = 4

    def check(self) -> None:
        if self.n < 1:
            raise SearchError(f"n must be at least 1, got {self.n}")
        if self.agg not in AGGREGATIONS:
            raise SearchError(f"agg must be one of {AGGREGATIONS}, got {self.agg!r}")
        if self.final not in METHODS:
            raise SearchError(f"final must be one of {METHODS}, got {self.final!r}")
        if self.width < 1 or self.max_steps < 1 or self.lookahead < 0:
            raise SearchError("width and max_steps must be at least 1, lookahead at least 0")

    def beam_width(self) -> int:
        """M, clamped to N (N=1 runs one beam of width 1); N must be a multiple of it."""
        width = min(self.width, self.n)
        if self.n % width:
            raise SearchError(f"n={self.n} is not a multiple of width={width}: beam and DVTS need N/M whole beams")
        return width


@dataclass
class State:
    """One problem under search."""

    problem: Problem
    tree: Tree
    policy_prompt: str
    uid: int
    counts: dict[str, int] = field(
        default_factory=lambda: {"generated_tokens": 0, "scored_tokens": 0, "generate_calls": 0, "score_passes": 0}
    )
    candidates: list[Node] = field(default_factory=list)  # complete solutions the strategy offers
    chosen: Node | None = None

    @property
    def task(self) -> str:
        return self.problem.meta.get("task", "math")


def policy_prompt(problem: Problem, tokenizer: Any, template: str = "auto", system: str | None = None) -> str:
    """The text the policy continues. "auto": the tokenizer's chat template when it has one, else "plain";
    "chat": the chat template (with `system`, default `SYSTEM_PROMPT`, for math); "plain": the problem and a blank
    line (code: the prompt as is, the policy continues the function); any other string is a format with
    `{problem}`."""
    task = problem.meta.get("task", "math")
    if template == "auto":
        template = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    if template == "plain":
        return problem.prompt if task == "code" else problem.prompt.rstrip() + "\n\n"
    if template == "chat":
        system = SYSTEM_PROMPT if system is None and task == "math" else system
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": problem.prompt}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if "{problem}" not in template:
        raise SearchError(f"prompt template must be 'auto', 'chat', 'plain' or contain {{problem}}: {template!r}")
    return template.format(problem=problem.prompt)


class Search:
    """What strategies call: `expand` (policy), `score` (reward model), `select_answer`, plus per-problem counts."""

    _uids = itertools.count()

    def __init__(
        self,
        generator: Generator,
        scorer: Scorer | None,
        params: SearchParams,
        *,
        step_format: StepFormat | None = None,
        prompt_template: str = "auto",
        system_prompt: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        params.check()
        self.generator, self.scorer, self.params = generator, scorer, params
        self.format = step_format or (scorer.format if scorer is not None else StepFormat())
        # StepScorer (our PRMs) or AdapterScorer (public PRMs): keyed steps, scored as the tree grows
        self.scores_steps = scorer is not None and scorer.kind == "prm"
        self.prompt_template, self.system_prompt, self.timeout = prompt_template, system_prompt, timeout

    def start(self, problems: Sequence[Problem]) -> list[State]:
        states = []
        for problem in problems:
            prompt = policy_prompt(problem, self.generator.tokenizer, self.prompt_template, self.system_prompt)
            state = State(problem, Tree(problem.id), prompt, next(self._uids))
            if self.scores_steps:
                self.scorer.add_prompt(self.key(state, state.tree.root), problem.prompt)
            states.append(state)
        return states

    def key(self, state: State, node: Node) -> tuple[int, int]:
        return (state.uid, node.id)

    def needs_step_scorer(self, strategy: str) -> StepScorer | AdapterScorer:
        if not self.scores_steps:
            got = "no scorer" if self.scorer is None else f"a {self.scorer.kind.upper()} scorer"
            raise SearchError(f"{strategy} needs a PRM (it prunes by step scores); got {got}")
        return self.scorer

    # ---- the policy ---------------------------------------------------------------------------------------------

    def prefix(self, state: State, node: Node) -> str:
        steps = state.tree.steps(node)
        return state.policy_prompt + "".join(s + self.format.separator for s in steps)

    def expand(
        self,
        requests: Sequence[tuple[State, Node, int]],
        *,
        whole: bool = False,
        temperature: float | None = None,
        salt: str = "",
        **meta: Any,
    ) -> list[list[Node]]:
        """Children for every (state, node, count): new steps, or (`whole`) the rest of the solution. One
        `generate` call for all of them. Sample j of a node always comes from seed (run seed, problem, path[, salt])
        and index j."""
        if not requests:
            return []
        p = self.params
        completions = self.generator.generate(
            [self.prefix(st, node) for st, node, _ in requests],
            n=max(c for _, _, c in requests),
            stop=None if whole else [self.format.separator],
            max_tokens=p.max_tokens if whole else p.max_step_tokens,
            temperature=p.temperature if temperature is None else temperature,
            top_p=p.top_p,
            seed=[derive_seed(p.seed, st.problem.id, node.path, salt) for st, node, _ in requests],
        )
        for st in {st.uid: st for st, _, _ in requests}.values():
            st.counts["generate_calls"] += 1
        out = []
        for (st, node, count), outs in zip(requests, completions, strict=True):
            children = []
            for c in outs[:count]:
                st.counts["generated_tokens"] += c.num_tokens
                text = c.text if st.task == "code" else c.text.strip()
                children.append(st.tree.add(node, text, _finish(c), c.num_tokens, **meta))
            out.append(children)
        return out

    # ---- the reward model ---------------------------------------------------------------------------------------

    def score_steps(self, items: Sequence[tuple[State, Node]]) -> None:
        """PRM score of each node's step, read on top of its parent's cached prefix. A node without text (the
        solution ended right after its parent) takes its parent's score."""
        scorer = self.needs_step_scorer("step scoring")
        todo = [(st, n) for st, n in items if n.text.strip() and n.finish in (STEP, COMPLETE)]
        if todo:
            scores, counts = scorer.score(
                [(self.key(st, st.tree.nodes[n.parent]), [(self.key(st, n), n.text)]) for st, n in todo]
            )
            for (_, n), s in zip(todo, scores, strict=True):
                n.score = s[0]
            count_scoring(todo, counts)
        for st, n in items:
            if n.finish == COMPLETE and not n.text.strip() and n.parent:
                n.score = st.tree.nodes[n.parent].score

    def score_solutions(self, items: Sequence[tuple[State, Node]]) -> None:
        """Whole-solution scores for sampled solutions (node text = the solution): PRM step scores aggregated by
        `agg` (kept in meta), or the ORM / BT score."""
        if self.scorer is None:
            raise SearchError("scoring solutions needs a scorer (--scorer)")
        todo = [(st, n) for st, n in items if n.complete]
        got = self.scorer.score_solutions(
            [st.problem.prompt for st, _ in todo], [self.format.split(n.text) for _, n in todo]
        )
        for (_, n), score, steps in zip(todo, got.scores, got.step_scores, strict=True):
            n.score = score
            if steps:
                n.meta["step_scores"] = steps
        count_scoring(todo, got.counts)

    def path_score(self, state: State, node: Node) -> float | None:
        """The score a tree strategy ranks `node` by: `agg` of the step scores on its path."""
        scores = state.tree.step_scores(node)
        return aggregate(scores, self.params.agg) if scores else node.score

    def release(self, state: State, nodes: Sequence[Node]) -> None:
        if self.scores_steps:
            self.scorer.release([self.key(state, n) for n in nodes])

    def finish(self, states: Sequence[State]) -> None:
        """Drop the trees from the scorer's cache once their search is over."""
        if self.scores_steps:
            self.scorer.release([self.key(st, n) for st in states for n in st.tree.nodes])

    # ---- the answer ---------------------------------------------------------------------------------------------

    def solution(self, state: State, node: Node) -> str:
        """The text a candidate stands for: its steps joined (a sampled solution is one node); for code tasks the
        program, prompt included (code steps are kept unstripped, indentation being syntax)."""
        steps = state.tree.steps(node)
        if state.task == "code":
            return state.problem.prompt + self.format.separator.join(steps)
        return self.format.join(steps)

    def answer(self, state: State, node: Node) -> str | None:
        text = self.solution(state, node)
        return text if state.task == "code" else extract_answer(text)

    def select_answer(self, states: Sequence[State], method: str, scores: str = "path") -> None:
        """Set `chosen` among each state's candidates by `method` (majority / best_of_n / weighted_best_of_n),
        candidates' scores being their path score (tree search) or own score (sampling); equivalent answers are
        grouped in one batched pass over all problems."""
        answers = [[self.answer(st, n) for n in st.candidates] for st in states]
        values = [[self.path_score(st, n) if scores == "path" else n.score for n in st.candidates] for st in states]
        groups: list[list[int | None]] = [[] for _ in states]
        for task in {st.task for st in states}:
            which = [i for i, st in enumerate(states) if st.task == task]
            for i, g in zip(
                which, group_answers_many([answers[i] for i in which], task, timeout=self.timeout), strict=True
            ):
                groups[i] = g
        for st, v, g in zip(states, values, groups, strict=True):
            index = select_from_groups(method, g, v) if st.candidates else None
            st.chosen = None if index is None else st.candidates[index]
            if st.chosen is not None:
                st.chosen.selected = True


def _finish(c: Completion) -> str:
    if c.finish_reason == "eos":
        return COMPLETE
    if c.finish_reason == "length":
        return CUT
    return STEP if c.text.strip() else EMPTY


def count_scoring(items: Sequence[tuple[State, Node]], counts: ScoreCounts) -> None:
    """Add a score call's cost to each problem: its tokens, and the forward passes any of its rows took part in."""
    passes: dict[int, set[int]] = {}
    states = {}
    for (st, _), tokens, ids in zip(items, counts.tokens, counts.passes, strict=True):
        st.counts["scored_tokens"] += tokens
        passes.setdefault(st.uid, set()).update(ids)
        states[st.uid] = st
    for uid, ids in passes.items():
        states[uid].counts["score_passes"] += len(ids)
