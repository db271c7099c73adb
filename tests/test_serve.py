"""`prmsearch serve` over the loopback: OpenRLHF's /score against the scorer called directly, malformed requests,
a concurrent load where nothing may be lost or mixed up, and the command itself as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from benchmarks.load_client import MALFORMED, chain_queries, check, hammer, make_load, score_alone  # noqa: E402
from prmsearch.serve import Batcher, Client, Job, ServeConfig, create_app, running, split_query  # noqa: E402

TOL = 1e-4  # a batch of another shape rounds differently in the last float bits; scores are probabilities


@pytest.fixture(scope="module")
def prm():
    from prmsearch.search.load import load_scorer

    return load_scorer("embedded:prm", agg="min", device="cpu")


@pytest.fixture(scope="module")
def texts():
    return chain_queries(40)


@pytest.fixture(scope="module")
def alone(prm, texts):
    return score_alone(prm, texts)


def test_score_answers_openrlhf_requests_with_the_scorers_rewards(prm, texts, alone):
    with running(create_app(prm, ServeConfig(empty=-1.0))) as url:
        c = Client(url)
        got = c.score(texts[:6])
        assert got == pytest.approx(alone[:6], abs=TOL)
        assert len(set(round(g, 3) for g in got)) > 3  # the rewards differ, so an order mix-up would show
        # With prompts, the response is what follows each prompt: the same rewards.
        prompts = [split_query(t, None, "\n\n")[0] for t in texts[:6]]
        assert c.score(texts[:6], prompts) == pytest.approx(alone[:6], abs=TOL)
        assert c.score([]) == []
        assert c.score(["Compute 1 + 2 from left to right.\n\n"]) == [-1.0]  # no steps: `empty`
        # /score_steps: every step's score, the same numbers the scorer gives.
        prompt, response = split_query(texts[0], None, "\n\n")
        steps = prm.format.split(response)
        status, answer = c.post("/score_steps", {"prompts": [prompt], "steps": [steps]})
        direct = prm.score_solutions([prompt], [steps])
        assert status == 200
        assert answer["step_scores"][0] == pytest.approx(direct.step_scores[0], abs=TOL)
        assert answer["scores"][0] == pytest.approx(min(direct.step_scores[0]), abs=TOL)
        status, health = c.get("/health")
        assert status == 200 and health["status"] == "ok" and health["kind"] == "prm"


def test_the_readme_examples_answer_what_the_readme_shows():
    from prmsearch.search.load import load_scorer

    prompt = "Compute 29 - 6 - 6 - 3 - 9 from left to right."
    right = "\n\n".join([prompt, "29 - 6 = 23", "23 - 6 = 17", "17 - 3 = 14", "14 - 9 = 5", "The answer is 5."])
    with running(create_app(load_scorer("embedded:prm", device="cpu"), ServeConfig())) as url:  # every default
        c = Client(url)
        assert c.score([right]) == [pytest.approx(0.7826, abs=1e-4)]
        got, answer = c.post("/score_steps", {"prompts": [prompt], "steps": [["29 - 6 = 23", "23 - 6 = 18"]]})
        assert got == 200 and answer["scores"] == [pytest.approx(0.0288, abs=1e-4)]
        assert answer["step_scores"] == [[pytest.approx(0.9794, abs=1e-4), pytest.approx(0.0288, abs=1e-4)]]


def test_malformed_requests_get_a_4xx_with_a_message_and_the_server_stays_up(prm, texts, alone):
    cfg = ServeConfig(max_body_bytes=20_000, max_queries=8)
    with running(create_app(prm, cfg)) as url:
        c = Client(url)
        for name, body, status in MALFORMED:
            got, answer = c.post("/score", body(texts[0]))
            assert got == status and answer["error"], name
        got, answer = c.post("/score", {"query": ["x" * 30_000]})
        assert got == 413 and "max_body_bytes" in answer["error"]
        got, answer = c.post("/score", {"query": texts[:9]})
        assert got == 413 and "max_queries" in answer["error"]
        got, answer = c.post("/score_steps", {"prompts": ["p"], "steps": ["not a list"]})
        assert got == 400 and '"steps"[0]' in answer["error"]
        got, answer = c.post("/score", b"[" * 9_000 + b"]" * 9_000)
        assert got == 400 and "nests arrays or objects too deep" in answer["error"]
        got, answer = c.post("/score", {"query": ["plain text with no blank line to cut at " * 50]})
        assert got == 400 and answer["error"].startswith('"query"[0] has no prompt separator')
        assert c.score(texts[:2]) == pytest.approx(alone[:2], abs=TOL)


def test_under_concurrent_load_nothing_is_lost_or_mixed_up(prm, texts, alone):
    """32 clients, 2,000 requests of 1-4 queries, every tenth malformed (a too-long query among them, which must
    fail alone and not its batch-mates): every well-formed request gets its queries' rewards scored alone."""
    load = make_load(texts, 2000, malformed_every=10)
    app = create_app(prm, ServeConfig())
    with running(app) as url:
        outcomes, seconds = hammer(url, load, clients=32)
        assert Client(url).get("/health")[0] == 200
    result = check(load, outcomes, alone, seconds, tolerance=TOL)
    assert result["lost"] == 0 and result["wrong"] == 0, result["problems"]
    assert result["well_formed"] == 1800 and result["malformed"] == 200
    batcher = app.state.batcher
    assert batcher.batches < batcher.requests / 2  # concurrent requests were scored together


def test_a_request_the_model_cannot_score_fails_alone_in_few_passes(prm, texts, alone):
    """One too-long request among 32 queued together: it gets its error, the 31 others their rewards, and the
    batch is split in halves around it (5 scored passes here) rather than rescored request by request (31)."""
    loop = asyncio.new_event_loop()
    batcher = Batcher(prm, max_batch_tokens=10**6, max_batch_requests=256, max_queued=100)
    jobs = []
    for i in range(32):
        text = "Add.\n\n" + "1 + 1 = 2\n\n" * 400 if i == 20 else texts[i]
        prompt, response = split_query(text, None, "\n\n")
        jobs.append(Job([prompt.rstrip()], [prm.format.split(response)], loop, loop.create_future()))
        batcher.submit(jobs[-1])
    batcher.start()
    try:
        answers = asyncio.gather(*(j.future for j in jobs), return_exceptions=True)
        loop.run_until_complete(asyncio.wait_for(answers, 120))
    finally:
        batcher.stop()
        loop.close()
    for i, job in enumerate(jobs):
        if i == 20:
            assert "more than the" in str(job.future.exception())
        else:
            assert job.future.result()[0][0] == pytest.approx(alone[i], abs=TOL)
    assert batcher.requests == 31 and batcher.batches <= 2 * 5
    assert len(prm.steps) == 0  # the failed passes left nothing behind in the scorer


def test_an_orm_is_served_too(texts):
    from prmsearch.search.load import load_scorer

    orm = load_scorer("embedded:orm", device="cpu")
    with running(create_app(orm, ServeConfig())) as url:
        assert Client(url).score(texts[:4]) == pytest.approx(score_alone(orm, texts[:4]), abs=TOL)


def test_an_orm_answers_on_get_reward_as_on_score(texts):
    from prmsearch.search.load import load_scorer

    orm = load_scorer("embedded:orm", device="cpu")
    with running(create_app(orm, ServeConfig())) as url:
        status, answer = Client(url).post("/get_reward", {"query": texts[:3]})
    assert status == 200 and answer["rewards"] == pytest.approx(score_alone(orm, texts[:3]), abs=TOL)


def test_serve_math_grades_responses_against_their_labels():
    """`--scorer math`: verifiable rewards from OpenRLHF's `labels` (the gold answers), on /score and /get_reward,
    with no model; a request without labels is refused in one line."""
    from prmsearch.serve import load_app

    prompts = ["What is 2 + 3?\n", "What is half of 1?\n", "What is 10 - 4?\n"]
    responses = ["2 + 3 = 5, so the answer is $\\boxed{5}$.", "Half of 1 is $\\frac{1}{2}$.", "It is 7."]
    queries = [p + r for p, r in zip(prompts, responses, strict=True)]
    with running(load_app(ServeConfig(scorer="math"))) as url:
        c = Client(url)
        for path in ("/score", "/get_reward"):
            status, answer = c.post(path, {"query": queries, "prompts": prompts, "labels": ["5", "0.5", "6"]})
            assert status == 200 and answer["rewards"] == [1.0, 1.0, 0.0]
        assert c.post("/score", {"query": queries[:1], "labels": ["6"]})[1]["rewards"] == [0.0]  # no prompts
        status, answer = c.post("/score", {"query": queries})
        assert status == 400 and answer["error"] == 'the body has no "labels" field: send {"labels": [...]}'
        status, health = c.get("/health")
        assert health["kind"] == "verifier" and health["requests"] == 3


def test_prmsearch_serve_runs_as_a_command(tmp_path, texts, alone):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "prmsearch", "serve", "--scorer", "embedded:prm", "--port", str(port), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                c = Client(f"http://127.0.0.1:{port}")
                if c.get("/health")[0] == 200:
                    break
            except OSError:
                c.close()
            assert server.poll() is None and time.time() < deadline, server.stdout.read() if server.stdout else ""
            time.sleep(0.2)
        assert c.score(texts[:3]) == pytest.approx(alone[:3], abs=TOL)
        assert c.get("/health")[1]["threads"] == 1
        taken = subprocess.run(
            [sys.executable, "-m", "prmsearch", "serve", "--scorer", "embedded:prm", "--port", str(port)],
            capture_output=True,
            text=True,
        )
        assert taken.returncode == 2 and "serving" not in taken.stdout, taken
        assert f":{port} (Address already in use): choose another --port" in taken.stderr.strip().splitlines()[-1]
    finally:
        server.terminate()
        server.wait(timeout=30)
    bad = subprocess.run(
        [sys.executable, "-m", "prmsearch", "serve", "--scorer", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("prmsearch serve: error:")


class Held:
    """The real scorer, whose first call waits until `release` is set: the worker busy, so requests queue."""

    def __init__(self, scorer):
        self.scorer, self.release, self.first = scorer, threading.Event(), True

    def __getattr__(self, name):
        return getattr(self.scorer, name)

    def score_solutions(self, prompts, steps, **kwargs):
        if self.first:
            self.first = False
            self.release.wait(60)
        return self.scorer.score_solutions(prompts, steps, **kwargs)


def _raw(port, body, *, length=None):
    """A socket that has sent a /score request (its body, or only part of it when `length` says more)."""
    s = socket.create_connection(("127.0.0.1", port))
    head = f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length or len(body)}"
    s.sendall(head.encode() + b"\r\n\r\n" + body)
    return s


def test_hostile_clients_cost_the_others_nothing(prm, texts, alone):
    """A request surely longer than the model reads is refused before it is tokenized; requests whose clients hung
    up while they waited are never scored; a body that does not arrive in read_timeout gets 408, and one too large
    413 with the connection closed."""
    held = Held(prm)
    app = create_app(held, ServeConfig(read_timeout=1.0))
    with running(app) as url:
        port = int(url.rsplit(":", 1)[1])
        c = Client(url)
        huge = "Compute 1 + 2 from left to right.\n\n" + "1 + 2 = 3 " * 100_000  # 1 MB, under max_body_bytes
        started = time.perf_counter()
        got, answer = c.post("/score", {"query": [huge]})
        assert (
            got == 422
            and "at least" in answer["error"]
            and "more than the 512 this reward model reads" in answer["error"]
        )
        assert time.perf_counter() - started < 2 and app.state.batcher.requests == 0
        first = threading.Thread(target=lambda: Client(url).score(texts[:1]))
        first.start()
        time.sleep(0.5)  # the worker now holds the first request
        gone = [_raw(port, json.dumps({"query": [t]}).encode()) for t in texts[1:4]]
        time.sleep(0.5)  # their bodies read, their jobs queued
        for s in gone:
            s.close()
        time.sleep(0.5)  # the server saw them hang up
        held.release.set()
        first.join(30)
        assert c.score(texts[4:5]) == pytest.approx(alone[4:5], abs=TOL)
        assert app.state.batcher.requests == 2  # the first and the last; the three abandoned ones were not scored
        slow = _raw(port, b'{"query": ', length=100)
        slow.settimeout(10)
        assert b" 408 " in slow.recv(4096).split(b"\r\n", 1)[0]
        slow.close()
        # Refused with its body unread: the connection closes at once rather than read a gigabyte to drop it.
        big = _raw(port, b'{"query": ', length=10**9)
        big.settimeout(10)
        answer = big.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer.split(b"\r\n\r\n")[0]
        big.close()


class CountingTokenizer:
    """The scorer's real tokenizer, recording the texts of every call."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, text, *args, **kwargs):
        self.calls.append([text] if isinstance(text, str) else list(text))
        return self.tokenizer(text, *args, **kwargs)


def test_the_worker_tokenizes_a_batch_once_and_scores_those_ids(prm, texts, alone):
    """Eight requests queued together: every step is tokenized once, in one call (prompts one call each); those
    ids' counts cut the batches at max_batch_tokens and are what the scorer scores, to its own rewards."""
    loop = asyncio.new_event_loop()
    jobs, exact = [], []
    for i in range(8):
        prompt, response = split_query(texts[i], None, "\n\n")
        jobs.append(Job([prompt.rstrip()], [prm.format.split(response)], loop, loop.create_future()))
        exact.append(len(prm.format.encode(prm.tokenizer, jobs[-1].prompts[0], jobs[-1].steps[0]).input_ids))
    budget, cuts, room = 2 * max(exact), 1, 2 * max(exact)  # batches of two or three requests
    for n in exact:
        cuts, room = (cuts, room - n) if n <= room else (cuts + 1, budget - n)
    batcher = Batcher(prm, max_batch_tokens=budget, max_batch_requests=256, max_queued=100)
    for job in jobs:
        batcher.submit(job)
    counting = prm.tokenizer = CountingTokenizer(prm.tokenizer)
    batcher.start()
    try:
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), 120))
    finally:
        batcher.stop()
        loop.close()
        prm.tokenizer = counting.tokenizer
    assert [j.future.result()[0][0] for j in jobs] == pytest.approx(alone[:8], abs=TOL)
    assert [j.tokens for j in jobs] == exact and batcher.batches == cuts > 2
    steps = [s for job in jobs for s in job.steps[0]]
    read = [text for call in counting.calls for text in call if text in steps]
    assert sorted(read) == sorted(steps)  # every step read once
    assert sum(any(s in call for s in steps) for call in counting.calls) == 1  # all in one call
    assert len(counting.calls) <= len(jobs) + 2  # one per prompt, the steps, the step marker


def test_slow_or_silent_clients_lose_their_connection_after_read_timeout(prm, texts, alone):
    """Headers sent a byte at a time (slowloris) get 408 and a closed connection after read_timeout; a connection
    that sends nothing, and the rest of a body no handler reads, are closed too; others are served meanwhile."""
    with running(create_app(prm, ServeConfig(read_timeout=1.0))) as url:
        port = int(url.rsplit(":", 1)[1])
        slow, silent = socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port))
        unread = socket.create_connection(("127.0.0.1", port))  # a body the 404 handler does not read
        unread.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        head = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
        answers = {s: b"" for s in (slow, silent, unread)}
        closed = {}
        started = time.perf_counter()
        for i in range(40):  # a byte every 0.1 s: 4 s of headers, if the server let them
            if slow not in closed:
                with contextlib.suppress(OSError):  # closed by the server: the reads below tell
                    slow.sendall(head[i : i + 1])
            for s in answers.keys() - closed.keys():
                s.settimeout(0.1 / 3)
                with contextlib.suppress(TimeoutError):
                    got = s.recv(4096)
                    answers[s] += got
                    if not got:
                        closed[s] = time.perf_counter() - started
            if len(closed) == 3:
                break
        assert Client(url).score(texts[:1]) == pytest.approx(alone[:1], abs=TOL)  # the server is still up
        for s in answers:
            s.close()
    assert set(closed) == {slow, silent, unread} and max(closed.values()) < 2.5, closed
    assert answers[slow].startswith(b"HTTP/1.1 408 ") and b"more than read_timeout 1 s" in answers[slow]
    assert answers[silent] == b"" and answers[unread].startswith(b"HTTP/1.1 404 ")
