"""A load test of `prmsearch serve`: many concurrent keep-alive clients send OpenRLHF `/score` requests, some of
them malformed, and every answer is checked: a well-formed request must get, in order, the rewards its queries got
when scored alone (so nothing is dropped, mixed up between batch-mates, or changed by padding), a malformed one a
4xx with a message. Used by `tests/test_serve.py` and `benchmarks/serve_load.py`.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prmsearch.serve import Client

# (name, body, the status it must get). The 422 case is a query longer than the model reads.
MALFORMED: list[tuple[str, Callable[[str], bytes | dict], int]] = [
    ("not JSON", lambda q: b"{query: nope", 400),
    ("not an object", lambda q: [q], 400),
    ("no query field", lambda q: {"queries": [q]}, 400),
    ("query not a list", lambda q: {"query": q}, 400),
    ("query item not a string", lambda q: {"query": [q, 7]}, 400),
    ("prompts of another length", lambda q: {"query": [q], "prompts": ["a", "b"]}, 400),
    ("query not starting with its prompt", lambda q: {"query": [q], "prompts": ["?" + q]}, 400),
    ("too long for the model", lambda q: {"query": ["Add.\n\n" + "1 + 1 = 2\n\n" * 400]}, 422),
]


@dataclass
class Outcome:
    index: int
    status: int
    answer: dict
    seconds: float


def chain_queries(n: int, *, seed: int = 0) -> list[str]:
    """`n` full query texts (prompt, blank line, steps) on the bundled task's test problems: the worked solution,
    or with one step's result off by one, so rewards differ from query to query."""
    from prmsearch.tasks import load_problems

    rng = random.Random(seed)
    texts = []
    for problem in load_problems("chains", limit=n):
        steps = list(problem.meta["steps"])
        if rng.random() < 0.5:
            k = rng.randrange(len(steps))
            head, _, result = steps[k].rpartition(" = ")
            if result.lstrip("-").isdigit():
                steps[k] = f"{head} = {int(result) + 1}"
        texts.append(problem.prompt + "\n\n" + "\n\n".join(steps))
    return texts


def score_alone(scorer: Any, texts: Sequence[str], empty: float = 0.0) -> list[float]:
    """Each text's reward scored by itself (no batch-mates), as the server reads a query without prompts."""
    from prmsearch.serve import split_query

    out = []
    for text in texts:
        prompt, response = split_query(text, None, scorer.format.prompt_separator)
        got = scorer.score_solutions([prompt.rstrip()], [scorer.format.split(response)]).scores[0]
        out.append(empty if got is None else float(got))
    return out


def make_load(
    texts: Sequence[str], requests: int, *, malformed_every: int = 10, max_queries: int = 4, seed: int = 0
) -> list[tuple[bytes | dict, Any]]:
    """`requests` bodies over `texts` (full query texts): each well-formed one carries 1..max_queries queries and
    expects their indices in `texts`; every `malformed_every`-th is one of MALFORMED and expects its status."""
    rng = random.Random(seed)
    load: list[tuple[bytes | dict, Any]] = []
    for i in range(requests):
        if malformed_every and i % malformed_every == malformed_every - 1:
            name, body, status = MALFORMED[(i // malformed_every) % len(MALFORMED)]
            load.append((body(rng.choice(texts)), status))
        else:
            picks = [rng.randrange(len(texts)) for _ in range(rng.randint(1, max_queries))]
            load.append(({"query": [texts[j] for j in picks]}, picks))
    return load


def hammer(url: str, load: Sequence[tuple[bytes | dict, Any]], clients: int) -> tuple[list[Outcome | None], float]:
    """Send `load` from `clients` threads (each takes the next request when its last one is answered); returns
    each request's outcome (None: no answer) and the wall time."""
    outcomes: list[Outcome | None] = [None] * len(load)
    next_index = iter(range(len(load)))
    lock = threading.Lock()

    def client() -> None:
        c = Client(url)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            body = load[i][0]
            started = time.perf_counter()
            try:
                status, answer = c.post("/score", body)
            except Exception as e:  # noqa: BLE001 - a dropped connection is an outcome to count, not a crash
                c.close()
                c = Client(url)
                status, answer = -1, {"error": repr(e)}
            outcomes[i] = Outcome(i, status, answer, time.perf_counter() - started)
        c.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes, time.perf_counter() - started


def check(
    load: Sequence[tuple[bytes | dict, Any]],
    outcomes: Sequence[Outcome | None],
    alone: Sequence[float],
    seconds: float,
    tolerance: float = 1e-5,
) -> dict[str, Any]:
    """The load test's figures: requests, well-formed / malformed, `wrong` (a well-formed request whose rewards are
    not those its queries got alone, within `tolerance`, or a malformed one without its status and message), lost
    (no answer), the largest reward difference, p50 / p99 latency of well-formed requests and requests per second."""
    wrong, lost, worst, latencies, problems = 0, 0, 0.0, [], []
    for (_, expect), outcome in zip(load, outcomes, strict=True):
        if outcome is None or outcome.status == -1:
            lost += 1
            continue
        if isinstance(expect, int):
            if outcome.status != expect or not outcome.answer.get("error"):
                wrong += 1
                problems.append(f"request {outcome.index}: status {outcome.status} ({outcome.answer}), want {expect}")
            continue
        latencies.append(outcome.seconds)
        got = outcome.answer.get("rewards") if outcome.status == 200 else None
        if got is None or len(got) != len(expect):
            wrong += 1
            problems.append(f"request {outcome.index}: status {outcome.status} ({outcome.answer})")
            continue
        diff = max(abs(g - alone[j]) for g, j in zip(got, expect, strict=True))
        worst = max(worst, diff)
        if diff > tolerance:
            wrong += 1
            problems.append(f"request {outcome.index}: rewards {got}, alone {[alone[j] for j in expect]}")
    latencies.sort()
    return {
        "requests": len(load),
        "well_formed": sum(not isinstance(e, int) for _, e in load),
        "malformed": sum(isinstance(e, int) for _, e in load),
        "wrong": wrong,
        "lost": lost,
        "max_reward_diff": worst,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None,
        "requests_per_s": len(load) / seconds,
        "seconds": seconds,
        "problems": problems[:10],
    }
