"""Particle filtering and particle Gibbs over steps (Puri et al., 2025, "A Probabilistic Inference Approach to
Inference-Time Scaling of LLMs using Particle-Based Monte Carlo Methods"; its_hub implements it too).

Beam search keeps the best-scored paths, so one confident PRM mistake can take every beam. A particle filter keeps N
particles (partial solutions) and after every step draws the next N from them, with replacement, in proportion to
softmax(logit(score) / T), the score being the path's (`agg`; the paper ranks by the last step's: `--agg last`).
A well-scored particle is copied, a poor one usually dropped but not always, so the population follows the PRM
without collapsing onto its errors; T (`pf_temperature`) sets how hard it follows. A particle drawn c times is
extended into c different next steps (samples 0..c-1 of its seed). A particle that ended the solution stays in the
population with its weight and is not extended; one cut off or empty has weight 0. The filter stops when no particle
can be extended, or at `max_steps`, whose expansion writes the rest of the solution. The final population, copies
included, is the candidate list, and `final` picks the answer (a weighted vote counts a copied particle once a copy).

Particle Gibbs runs the filter `iterations` times. After each pass one particle of the final population is drawn
by weight as the reference; the next pass runs N-1 fresh particles beside it: at every step the reference's prefix
at that depth joins the pool the N-1 are drawn from, and the reference itself always stays, so a good solution once
found is never lost while the others search around it.

Resampling (`resampling`): `multinomial` draws N independent indices; `systematic` draws one uniform offset and
takes N evenly spaced points of the cumulative weights (a particle of weight w gets floor(N·w) or ceil(N·w) copies:
less noise for the same N). Every draw comes from (run seed, problem, pass, depth), so a problem's search is the
same batched or alone.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence

from .engine import RESAMPLING, Search, SearchError, State
from .generators import derive_seed
from .tree import Node


def particle_filter(search: Search, states: list[State]) -> None:
    _passes(search, states, 1)


def particle_gibbs(search: Search, states: list[State]) -> None:
    _passes(search, states, search.params.iterations)


def resample(probs: Sequence[float], count: int, rng: random.Random, scheme: str = "multinomial") -> list[int]:
    """`count` indices drawn with replacement, index i with probability probs[i] (which sum to 1), in order."""
    if scheme not in RESAMPLING:
        raise SearchError(f"resampling must be one of {RESAMPLING}, got {scheme!r}")
    if scheme == "multinomial":
        return sorted(rng.choices(range(len(probs)), weights=probs, k=count))
    cumulative = list(itertools.accumulate(probs))
    offset = rng.random()
    last = len(probs) - 1
    return [min(bisect.bisect_right(cumulative, (j + offset) / count), last) for j in range(count)]


def resampling_probs(scores: Sequence[float | None], temperature: float) -> list[float]:
    """softmax(logit(score) / T) over the particles; a particle without a score (cut off, empty) gets 0. Scores are
    the PRM's P(correct), clamped to [1e-6, 1 - 1e-6] before the logit."""
    logits = [None if s is None else _logit(s) / temperature for s in scores]
    live = [x for x in logits if x is not None]
    if not live:
        return [0.0] * len(scores)
    top = max(live)
    weights = [0.0 if x is None else math.exp(x - top) for x in logits]
    total = sum(weights)
    return [w / total for w in weights]


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _passes(search: Search, states: list[State], passes: int) -> None:
    strategy = "particle filtering" if passes == 1 else "particle gibbs"
    search.needs_step_scorer(strategy)
    p = search.params
    refs: dict[int, list[Node]] = {}  # problem -> the reference particle's lineage (particle Gibbs)
    final: dict[int, list[Node]] = {}
    for i in range(passes):
        final = _filter(search, states, i, refs, hold=passes > 1)
        if i == passes - 1:
            break
        for st in states:
            pool = final[st.uid]
            probs = resampling_probs(_scores(search, st, pool), p.pf_temperature)
            if sum(probs):  # else nothing finished: the old reference, if any, stays
                rng = random.Random(derive_seed(p.seed, st.problem.id, i, "reference"))
                (pick,) = resample(probs, 1, rng)
                refs[st.uid] = st.tree.lineage(pool[pick])
                pool[pick].meta["reference"] = i + 1
            # Only now is it known which steps the next pass grows again: the reference's, each of which the
            # scorer must still hold (one whose only child was an empty last step would have been dropped).
            keep = {n.id for n in refs.get(st.uid, [])}
            search.release(st, [n for n in st.tree.nodes if n.parent is not None and n.id not in keep])
    for st in states:
        st.candidates = [n for n in final[st.uid] if n.complete]
    search.select_answer(states, p.final)


def _filter(
    search: Search, states: list[State], n_pass: int, refs: dict[int, list[Node]], hold: bool = False
) -> dict[int, list[Node]]:
    """One pass of the filter over every problem at once; returns each problem's final population (the reference
    last, where there is one). `hold`: release nothing (particle Gibbs releases after the pass, keeping the
    reference it draws)."""
    p = search.params
    salt = f"pass{n_pass}" if n_pass else ""
    fresh = {st.uid: p.budget - (1 if st.uid in refs else 0) for st in states}
    population: dict[int, list[Node]] = {st.uid: [] for st in states}  # the particles besides the reference
    for depth in range(p.max_steps):
        # a problem goes on while a particle can grow, or its reference has a step at this depth
        live = [
            st
            for st in states
            if not depth or any(n.alive for n in population[st.uid]) or len(refs.get(st.uid, ())) > depth
        ]
        if not live:
            break
        work: list[tuple[State, Node, int]] = []
        for st in live:
            if depth == 0:
                if fresh[st.uid]:
                    work.append((st, st.tree.root, fresh[st.uid]))
                continue
            copies = Counter(n.id for n in population[st.uid] if n.alive)
            work += [(st, st.tree.nodes[i], c) for i, c in copies.items()]
        children = search.expand(work, whole=depth == p.max_steps - 1, salt=salt)
        search.score_steps([(st, c) for (st, _, _), cs in zip(work, children, strict=True) for c in cs])
        grown: dict[int, list[Node]] = {}
        parents: dict[int, list[Node]] = {}
        for (st, parent, _), cs in zip(work, children, strict=True):
            grown.setdefault(st.uid, []).extend(cs)
            if parent.parent is not None:
                parents.setdefault(st.uid, []).append(parent)
        for st in live:  # one release a problem: each call looks over the problem's whole tree
            if st.uid in parents and not hold:
                search.release(st, parents[st.uid])
        for st in live:
            pool = [n for n in population[st.uid] if not n.alive] + grown.get(st.uid, [])
            ref = refs.get(st.uid)
            if ref:
                pool.append(ref[min(depth, len(ref) - 1)])
            probs = resampling_probs(_scores(search, st, pool), p.pf_temperature)
            drawn: list[Node] = []
            if sum(probs):
                rng = random.Random(derive_seed(p.seed, st.problem.id, n_pass, depth, "resample"))
                drawn = [pool[j] for j in resample(probs, fresh[st.uid], rng, p.resampling)]
            kept = {n.id for n in drawn} | ({n.id for n in ref} if ref else set())
            if not hold:
                search.release(st, list({n.id: n for n in pool if n.id not in kept}.values()))
            population[st.uid] = drawn
    out = {}
    for st in states:
        ref = refs.get(st.uid)
        out[st.uid] = population[st.uid] + ([ref[-1]] if ref else [])
        for n in out[st.uid]:
            n.selected = True
    return out


def _scores(search: Search, state: State, nodes: Sequence[Node]) -> list[float | None]:
    """The score each particle is weighed by: its path score; None for one that can neither go on nor answer."""
    return [search.path_score(state, n) if (n.alive or n.complete) and n.score is not None else None for n in nodes]
