"""The loop every strategy shares: expand nodes with the policy, score new steps with the reward model, count what
it cost, pick the answer. Strategies (sampling.py, beam.py, mcts.py; registered in strategies.py) differ only in
which nodes they expand and keep.

Two contracts meet here. `Generator` (generators.py) is the policy: prompts in, seeded completions out. `Scorer`
(`prmsearch.scoring`) is the reward model: whole solutions in, scores out; a `TreeScorer` also scores steps as a
tree grows, keeping per-node state under keys the search picks. `StepScorer` (our PRMs), `AdapterScorer` (public
PRMs), `OutcomeScorer` (ORM / BT) and the judges implement them; the engine imports none of them.

Everything is batched across problems: one `expand` call sends the frontier of every problem to the generator in
one `generate`, one `score` call sends every new step to the scorer. Seeds come from (run seed, problem id, node
path), so a problem's tree does not depend on which problems share its batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import PrmsearchError
from ..recipes import option
from ..records import Grade, Problem
from ..scoring import (
    DEFAULT_STEP_AGGREGATION,
    STEP_AGGREGATIONS,
    ScoreCounts,
    Scorer,
    TreeScorer,
    aggregate_steps,
)
from ..steps import StepFormat
from ..tasks import Checks, Task, by_task, task_of
from .generators import Completion, Generator, derive_seed
from .load import Sampling
from .select import SELECTIONS, select_from_groups
from .tree import COMPLETE, CUT, EMPTY, STEP, Node, Tree

RESAMPLING = ("multinomial", "systematic")  # particle filtering's ways to redraw particles (particles.py)


class SearchError(PrmsearchError):
    """Settings a strategy cannot run with (a strategy that needs step scores given an ORM, N not a multiple of
    the width, ...)."""


@dataclass
class SearchSettings(Sampling):
    """What a strategy runs with, at any N; `SearchParams` adds N, and `runner.SearchConfig` (recipes and CLI flags)
    takes these same fields. `width` (M): children per expansion in beam / DVTS / MCTS. `max_tokens` bounds a whole
    solution (greedy, sampling, the last step, rollouts), `max_step_tokens` one step. `agg` turns a path's step
    scores into a score for selection and ranking; `final` picks the answer among the complete solutions a tree
    search found."""

    width: int = option(4, "M: children per expansion in beam, DVTS and MCTS (beam and DVTS need N a multiple of M)")
    max_steps: int = option(40, "beam, DVTS: depth limit; the expansion at this depth writes the rest of the solution")
    max_step_tokens: int = option(256, "tokens per step of a tree search")
    max_tokens: int = option(1024, "tokens per whole solution: greedy, sampling, a tree search's last step, rollouts")
    agg: str | None = option(
        None,
        "a path's step scores to one score: last step, min, prod (of probabilities), mean (default: the reward "
        "model's own, saved with it; min for a model that saved none)",
    )
    final: str = option(
        "weighted_best_of_n", "how a tree search picks the answer among the complete solutions it found"
    )
    lookahead: int = option(0, "beam, DVTS: rank a child by its greedy continuation this many steps on (0: off)")
    filter_duplicates: bool = option(
        False, "beam, DVTS: of children whose paths are the same text, keep the best-ranked one only"
    )
    puct: float = option(1.0, "MCTS exploration weight c in Q + c * P * sqrt(N(parent)) / (1 + N(child))")
    rollout: bool = option(True, "MCTS: value a new leaf by a rollout to a full solution (no: by its own path score)")
    pf_temperature: float = option(
        1.0, "particle filtering: resampling weights are softmax(logit(path score) / T); lower T follows the PRM harder"
    )
    resampling: str = option("multinomial", "particle filtering: how particles are redrawn: multinomial or systematic")
    iterations: int = option(4, "particle Gibbs: passes of the filter, each beside the last pass's reference particle")
    route_table: str | None = option(None, "routed: the routing table (difficulty bins -> strategy and N) to follow")


@dataclass
class SearchParams(SearchSettings):
    """One strategy at one N (`budget`): best-of-N draws N samples, beam keeps N/M beams, DVTS grows N/M subtrees,
    MCTS runs N simulations. (`SearchConfig.n`, the `--n` flag, is the list of N a run sweeps.)"""

    budget: int = 4

    def check(self) -> None:
        if self.budget < 1:
            raise SearchError(f"n must be at least 1, got {self.budget}")
        if self.agg is not None and self.agg not in STEP_AGGREGATIONS:
            raise SearchError(f"agg must be one of {STEP_AGGREGATIONS}, got {self.agg!r}")
        if self.final not in SELECTIONS:
            raise SearchError(f"final must be one of {SELECTIONS}, got {self.final!r}")
        if self.width < 1 or self.max_steps < 1 or self.lookahead < 0:
            raise SearchError("width and max_steps must be at least 1, lookahead at least 0")
        if not self.pf_temperature > 0 or self.iterations < 1:
            raise SearchError("pf_temperature must be above 0 and iterations at least 1")
        if self.resampling not in RESAMPLING:
            raise SearchError(f"resampling must be one of {RESAMPLING}, got {self.resampling!r}")

    def beam_width(self) -> int:
        """M, clamped to N (N=1 runs one beam of width 1); N must be a multiple of it."""
        width = min(self.width, self.budget)
        if self.budget % width:
            raise SearchError(f"n={self.budget} is not a multiple of width={width}: beam and DVTS need N/M whole beams")
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
    released: set[int] = field(default_factory=set)  # nodes the strategy will not extend again
    info: dict[str, Any] = field(default_factory=dict)  # what a strategy reports per problem (a result row's fields)

    @property
    def task(self) -> Task:
        return task_of(self.problem)


def policy_prompt(problem: Problem, tokenizer: Any, template: str = "auto", system: str | None = None) -> str:
    """The text the policy continues. "auto": the tokenizer's chat template when it has one, else "plain";
    "chat": the chat template (with `system`, default the task's own system prompt); "plain": the task's plain
    layout (math: the problem and a blank line; code: the prompt as is, the policy continues the function); any
    other string is a format with `{problem}`."""
    task = task_of(problem)
    if template == "auto":
        template = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    if template == "plain":
        return task.plain_prompt(problem)
    if template == "chat":
        system = task.system_prompt if system is None else system
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
        # a PRM scores keyed steps as the tree grows; an ORM / BT model only whole solutions
        self.scores_steps = scorer is not None and scorer.kind == "prm"
        if self.scores_steps and not isinstance(scorer, TreeScorer):
            name = type(scorer).__name__
            raise SearchError(f"{name} says it is a PRM but cannot score steps (no add_prompt / score / release)")
        self.prompt_template, self.system_prompt, self.timeout = prompt_template, system_prompt, timeout
        # a path's step scores to its score: as asked, else as the scorer aggregates them (the model's own)
        self.agg = params.agg or getattr(scorer, "agg", None) or DEFAULT_STEP_AGGREGATION

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

    def needs_step_scorer(self, strategy: str) -> TreeScorer:
        if not self.scores_steps:
            got = "no scorer" if self.scorer is None else f"a {self.scorer.kind.upper()} scorer"
            raise SearchError(f"{strategy} needs a PRM (it prunes by step scores); got {got}")
        return self.scorer  # type: ignore[return-value]

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
        `generate` call for each distinct count: a call draws the same n for every prompt, and drawing the largest
        count for all would throw most of the work away where counts vary (particle filtering's copies). Sample j of
        a node always comes from seed (run seed, problem, path[, salt]) and index j, whatever call it is in."""
        if not requests:
            return []
        p = self.params
        by_count: dict[int, list[int]] = {}
        for i, (_, _, count) in enumerate(requests):
            by_count.setdefault(count, []).append(i)
        completions: list[list[Completion]] = [[] for _ in requests]
        for count, members in sorted(by_count.items()):
            if count < 1:
                continue
            drawn = self.generator.generate(
                [self.prefix(requests[i][0], requests[i][1]) for i in members],
                n=count,
                stop=None if whole else [self.format.separator],
                max_tokens=p.max_tokens if whole else p.max_step_tokens,
                temperature=p.temperature if temperature is None else temperature,
                top_p=p.top_p,
                seed=[derive_seed(p.seed, requests[i][0].problem.id, requests[i][1].path, salt) for i in members],
            )
            for i, outs in zip(members, drawn, strict=True):
                completions[i] = outs
            for st in {requests[i][0].uid: requests[i][0] for i in members}.values():
                st.counts["generate_calls"] += 1
        out = []
        for (st, node, count), outs in zip(requests, completions, strict=True):
            children = []
            for c in outs[:count]:
                st.counts["generated_tokens"] += c.num_tokens
                text = st.task.step_text(c.text)
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

    def score_rollouts(self, items: Sequence[tuple[State, Node]]) -> None:
        """PRM scores of nodes that hold several steps (MCTS rollouts: the rest of a solution in one node), each step
        read on top of the parent's path; the node keeps them in meta["step_scores"] and its score is the last one.
        Nothing of them is kept in the scorer afterwards."""
        scorer = self.needs_step_scorer("rollout scoring")
        todo = [(st, n, self.format.split(n.text)) for st, n in items]
        todo = [t for t in todo if t[2]]
        if not todo:
            return
        requests = [
            (self.key(st, st.tree.nodes[n.parent]), [((*self.key(st, n), j), s) for j, s in enumerate(steps)])
            for st, n, steps in todo
        ]
        scores, counts = scorer.score(requests)
        for (_, n, _), s in zip(todo, scores, strict=True):
            n.meta["step_scores"] = s
            n.score = s[-1]
        count_scoring([(st, n) for st, n, _ in todo], counts)
        scorer.release([k for _, steps in requests for k, _ in steps])

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
        return aggregate_steps(scores, self.agg) if scores else node.score

    def release(self, state: State, nodes: Sequence[Node]) -> None:
        """These nodes will not be extended again (pruned, or their children taken): the scorer and the policy may
        free what they keep for them."""
        if self.scores_steps:
            self.scorer.release([self.key(state, n) for n in nodes])  # type: ignore[union-attr]
        release = getattr(self.generator, "release", None)  # optional in the Generator contract
        if release is None:
            return
        state.released.update(n.id for n in nodes)
        # A sampled step can repeat a sibling's (or a cousin's) path word for word: its states are then the live
        # twin's too. Twins have the same depth and step text, so only those paths are compared.
        ends = {(n.depth, n.text) for n in nodes if n.alive}
        twins = [n for n in state.tree.nodes if (n.depth, n.text) in ends and n.alive and n.id not in state.released]
        gone = {self.prefix(state, n) for n in nodes if n.alive} - {self.prefix(state, n) for n in twins}
        if gone:
            release(sorted(gone))

    def finish(self, states: Sequence[State]) -> None:
        """Drop the trees from the scorer's and the policy's caches once their search is over."""
        if self.scores_steps:
            self.scorer.release([self.key(st, n) for st in states for n in st.tree.nodes])  # type: ignore[union-attr]
        release = getattr(self.generator, "release", None)
        if release is not None:
            release([st.policy_prompt for st in states], subtree=True)

    # ---- the answer ---------------------------------------------------------------------------------------------

    def solution(self, state: State, node: Node) -> str:
        """The text a candidate stands for (`Task.solution` of its steps; a sampled solution is one node)."""
        return state.task.solution(state.problem, state.tree.steps(node), self.format.separator)

    def answers(self, items: Sequence[tuple[State, Node]]) -> list[str | None]:
        """What each candidate answers (`Task.answers`: a math solution's final answer, a program itself), one
        batch per task."""
        out: list[str | None] = [None] * len(items)
        for task, which in by_task([st.problem for st, _ in items]):
            solutions = [self.solution(*items[i]) for i in which]
            for i, answer in zip(which, task.answers(solutions, timeout=self.timeout), strict=True):
                out[i] = answer
        return out

    def grade(self, states: Sequence[State]) -> list[Grade]:
        """How each state's chosen solution fares (`Task.grade`; no solution chosen: graded as none), one batch
        per task."""
        out: list[Grade | None] = [None] * len(states)
        for task, which in by_task([st.problem for st in states]):
            solutions = [
                None if states[i].chosen is None else self.solution(states[i], states[i].chosen) for i in which
            ]
            grades = task.grade([states[i].problem for i in which], solutions, Checks(timeout=self.timeout))
            for i, grade in zip(which, grades, strict=True):
                out[i] = grade
        return out  # type: ignore[return-value]

    def select_answer(self, states: Sequence[State], method: str, scores: str = "path") -> None:
        """Set `chosen` among each state's candidates by `method` (majority / best_of_n / weighted_best_of_n),
        candidates' scores being their path score (tree search) or own score (sampling); equivalent answers are
        grouped in one batched pass over all problems."""
        flat = self.answers([(st, n) for st in states for n in st.candidates])
        answers, at = [], 0
        for st in states:
            answers.append(flat[at : at + len(st.candidates)])
            at += len(st.candidates)
        values = [[self.path_score(st, n) if scores == "path" else n.score for n in st.candidates] for st in states]
        groups: list[list[int | None]] = [[] for _ in states]
        for task, which in by_task([st.problem for st in states]):
            for i, g in zip(which, task.group([answers[i] for i in which], timeout=self.timeout), strict=True):
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
