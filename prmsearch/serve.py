"""`prmsearch serve`: a reward model behind HTTP, for an RL framework that calls a remote reward model (OpenRLHF's
`--remote_rm_url`) and for anything else that wants scores without holding the model.

Endpoints (JSON in, JSON out; errors are `{"error": message}` with a 4xx status):
- `POST /score`: OpenRLHF's request `{"query": [full texts], "prompts": [...], "labels": [...]}` (the last two
  optional; labels are accepted and unused by a reward model) → `{"rewards": [one float per query, in order]}`. A
  query is its prompt followed by the response: with `prompts` the response is what follows the prompt; without, the
  query is cut at the model's first prompt separator (`StepFormat.prompt_separator`, the text a prmsearch model puts
  between prompt and first step). A PRM's reward is the `agg` of its step scores; a response with no steps gets
  `empty`.
- `POST /score_steps`: `{"prompts": [...], "steps": [[step, ...], ...]}` → `{"scores": [...], "step_scores":
  [[...], ...]}` (step scores empty for an ORM / BT model; a solution with no steps scores null).
- `POST /get_reward`: the same as `/score` (the path OpenRLHF's own reward server answers on).
- `GET /health`: `{"status": "ok", "model", "kind", "queued", "requests", "batches"}`.

`--scorer math` (or `code`, any task name) serves verifiable rewards instead of a model: `/score` and `/get_reward`
grade each response against its `labels` entry with the task's grader (`reward_function(task)`): 1.0 right, 0.0
not. A label is the gold answer, or an object of the task's columns (a code task's `{"test", "entry_point"}`).

What this adds over a handler that calls the model: dynamic batching. One worker thread owns the model; requests
queue, and whatever has queued by the time the model is free is scored in one forward pass (up to `max_batch_tokens`
and `max_batch_requests`), so throughput grows with concurrency while a lone request waits for no one. The worker
tokenizes what it takes from the queue in one call, and the ids that size a batch are the ids it scores. A batch
that fails is split in halves until the bad request (too long for the model) fails alone. Scores do not depend
on batch-mates: the scorers pad without attending to padding. HTTP is Starlette on uvicorn; a client has
`read_timeout` seconds for a request's headers (`ReadDeadline`) and again for its body.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.client
import json
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import PrmsearchError
from .recipes import option

# Characters a token stands for, to size a batch for a scorer without a tokenizer (a rough guess: English runs about 4
# with a BPE vocabulary, arithmetic nearer 2).
CHARS_PER_TOKEN = 4

if TYPE_CHECKING:  # starlette is imported by create_app, when a server is built
    from starlette.requests import Request
    from starlette.responses import JSONResponse


@dataclass
class ServeConfig:
    """`prmsearch serve`: every flag is a field."""

    scorer: str = option(
        "", "the reward model (a folder, hub id or embedded name: embedded:prm), or a task (math, code): its grader"
    )
    adapter: str | None = option(
        None, "read --scorer in this format (models.formats; default: the one its config declares)"
    )
    host: str = option("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = option(8000, "port to listen on (0: any free port)")
    agg: str | None = option(
        None, "a PRM's step scores to one reward: last, min, prod, mean (default: the model's own, saved with it)"
    )
    empty: float = option(0.0, "the reward of a response with no steps to score")
    max_batch_tokens: int = option(16_384, "tokens scored in one forward pass, at most (a larger request goes alone)")
    max_batch_requests: int = option(256, "requests scored together, at most (1: one at a time)")
    max_queries: int = option(1024, "queries in one request, at most (more: 413)")
    max_body_bytes: int = option(8 * 2**20, "bytes of one request body, at most (more: 413)")
    max_queued: int = option(4096, "requests waiting, at most (more: 503, retry later)")
    read_timeout: float = option(30.0, "seconds a request's headers, then its body, may take to arrive (more: 408)")
    device: str | None = option(None, "cpu or cuda (None: cuda when available)")
    threads: int | None = option(
        None, "torch threads scoring on a CPU (None: torch's default); 1 where clients share the cores"
    )

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_batch_requests", "max_queries", "max_body_bytes", "max_queued"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if not self.read_timeout > 0:
            raise ValueError(f"read_timeout must be a positive number of seconds, got {self.read_timeout}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port}")


class RequestError(PrmsearchError):
    """A request the server refuses; `status` is its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One request's solutions, waiting for the worker; its result is set on `future` through `loop`. `encoded`
    holds the scorer's token ids of its solutions once the worker has read them, `tokens` their count."""

    prompts: list[str]
    steps: list[list[str]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    encoded: list | None = None
    tokens: int = 0  # 0: not read yet


@dataclass
class Batcher:
    """The worker thread that owns the scorer and scores queued jobs in batches.

    The jobs the worker takes from the queue are tokenized in one call (`_read`). Their token counts size the
    batch, and a scorer that takes ids (`encode_solutions`: a PRM of ours) scores those very ids, checking their
    length there: each solution is tokenized once."""

    scorer: Any
    max_batch_tokens: int
    max_batch_requests: int
    max_queued: int
    requests: int = 0
    batches: int = 0
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _held: collections.deque = field(default_factory=collections.deque)  # read, left over from the last batch
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prmsearch-scorer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def queued(self) -> int:
        return self._queue.qsize() + len(self._held)

    def submit(self, job: Job) -> None:
        if self.queued >= self.max_queued:
            raise RequestError(f"{self.queued} requests are waiting (max_queued); retry later", status=503)
        self._queue.put(job)

    def _take(self) -> bool:
        """Move what has queued into `_held` (waiting for the first job when none is held), up to
        max_batch_requests; False once `stop` was called and nothing is held."""
        if not self._held:
            job = self._queue.get()
            if job is None:
                return False
            self._held.append(job)
        while len(self._held) < self.max_batch_requests:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # stop: after what is held
                self._queue.put(None)
                break
            self._held.append(job)
        return True

    def _read(self, jobs: list[Job]) -> None:
        """Tokenize `jobs` in one call: their sizes, and for a scorer that takes ids, what it scores. Without a
        tokenizer the size is guessed from characters; a call that fails leaves the jobs to the scorer's own
        reading, which fails the culprit alone (`_settle`)."""
        if not jobs:
            return
        prompts = [p for job in jobs for p in job.prompts]
        steps = [s for job in jobs for s in job.steps]
        encoded = None
        with contextlib.suppress(Exception):
            encoded = self._encode(prompts, steps)
        takes_ids, at = hasattr(self.scorer, "encode_solutions"), 0
        for job in jobs:
            n = len(job.prompts)
            if encoded is None:
                chars = sum(map(len, job.prompts)) + sum(len(s) for solution in job.steps for s in solution)
                job.tokens = chars // CHARS_PER_TOKEN + n
            else:
                job.tokens = sum(len(ids) for solution in encoded[at : at + n] for ids in solution)
                job.encoded = encoded[at : at + n] if takes_ids else None
            at += n

    def _encode(self, prompts: list[str], steps: list[list[str]]) -> list[list[list[int]]] | None:
        """Each solution's token ids: the scorer's own (`encode_solutions`: a PRM of ours), else its tokenizer's
        reading of the text, to count (an ORM or a public PRM's adapter reads again as it scores); None without a
        tokenizer."""
        if hasattr(self.scorer, "encode_solutions"):
            return self.scorer.encode_solutions(prompts, steps)
        tokenizer = _tokenizer_of(self.scorer)
        if tokenizer is None or not prompts:
            return None
        texts = [p + "".join(s) for p, s in zip(prompts, steps, strict=True)]
        return [[ids] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _next_batch(self) -> list[Job] | None:
        """The held jobs to score together, oldest first, up to max_batch_tokens (the first goes whatever its
        size) and max_batch_requests; a job whose client hung up while it waited is dropped, not scored."""
        while self._take():
            live = [job for job in self._held if not job.future.done()]
            self._read([job for job in live if not job.tokens])
            self._held.clear()
            batch, tokens = [], 0
            for job in live:
                if self._held or (batch and tokens + job.tokens > self.max_batch_tokens):
                    self._held.append(job)
                else:
                    batch.append(job)
                    tokens += job.tokens
            if batch:
                return batch
        return None

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._settle(batch)

    def _settle(self, batch: list[Job]) -> None:
        """Score `batch` and answer its requests. A batch that fails is split in halves until the requests that
        cannot be scored fail alone: one bad request among n costs about 2 log2(n) passes, not n, and the others
        are answered as soon as their half is scored."""
        try:
            results = self._score(batch)
        except Exception as e:  # noqa: BLE001 - the error goes back to the request that caused it
            if len(batch) > 1:
                half = len(batch) // 2
                self._settle(batch[:half])
                self._settle(batch[half:])
                return
            results = [e]
        for job, result in zip(batch, results, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, result)

    def _score(self, batch: list[Job]) -> list[Any]:
        prompts = [p for job in batch for p in job.prompts]
        steps = [s for job in batch for s in job.steps]
        if all(job.encoded is not None for job in batch):  # the ids read for the batch's size: not read again
            encoded = [ids for job in batch for ids in job.encoded]  # type: ignore[union-attr]
            got = self.scorer.score_solutions(prompts, steps, encoded=encoded)
        else:
            got = self.scorer.score_solutions(prompts, steps)
        self.requests += len(batch)
        self.batches += 1
        out, at = [], 0
        for job in batch:
            n = len(job.prompts)
            out.append((got.scores[at : at + n], got.step_scores[at : at + n]))
            at += n
        return out


def _tokenizer_of(scorer: Any) -> Any:
    """The tokenizer a scorer reads with: its own (a public PRM's adapter) or its reward model's; None otherwise."""
    return getattr(scorer, "tokenizer", None) or getattr(getattr(scorer, "rm", None), "tokenizer", None)


def _resolve(future: asyncio.Future, result: Any) -> None:
    if future.done():  # the client went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def split_query(query: str, prompt: str | None, prompt_separator: str | None) -> tuple[str, str]:
    """(prompt, response) of a full text: what follows `prompt`, or without one, the text cut at the first
    `prompt_separator` (None: all of it is the response); a text with no separator is refused."""
    if prompt is not None:
        if not query.startswith(prompt):
            raise RequestError("does not start with its prompt")
        return prompt, query[len(prompt) :]
    if prompt_separator is None:
        return "", query
    head, sep, rest = query.partition(prompt_separator)
    if not sep:  # no place to cut: scoring it as a response with no steps would pass for an answer
        raise RequestError(
            f"has no prompt separator {prompt_separator!r} between its prompt and its response: send the prompts as "
            '"prompts"'
        )
    return head, rest


def _strings(body: dict, name: str, *, rows: int | None = None, required: bool = True) -> list[str] | None:
    value = body.get(name)
    if value is None:
        if required:
            raise RequestError(f'the body has no "{name}" field: send {{"{name}": [...]}}')
        return None
    if not isinstance(value, list):
        raise RequestError(f'"{name}" must be a list, got {type(value).__name__}')
    if rows is not None and len(value) != rows:
        raise RequestError(f'"{name}" has {len(value)} items for {rows} queries')
    return value


def _check_texts(values: list, name: str) -> list[str]:
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise RequestError(f'"{name}"[{i}] must be a string, got {type(v).__name__}')
    return values


async def _read_json(request: Request, max_body_bytes: int, read_timeout: float) -> dict:
    """The request's body as a JSON object, refused (413) as soon as it passes `max_body_bytes`, so a huge body is
    never held whole."""
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > max_body_bytes:
        raise RequestError(f"the body is {size} bytes, more than max_body_bytes {max_body_bytes}", 413)
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_body_bytes:
                raise RequestError(f"the body is more than max_body_bytes {max_body_bytes}", 413)

    try:
        await asyncio.wait_for(read(), read_timeout)
    except TimeoutError:
        raise RequestError(f"the body took more than read_timeout {read_timeout:g} s to arrive", 408) from None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the body is not JSON ({e})") from None
    except RecursionError:  # arrays or objects nested deeper than the parser's stack
        raise RequestError("the body nests arrays or objects too deep to read; send a flat request") from None
    if not isinstance(data, dict):
        raise RequestError(f"the body must be a JSON object, got {type(data).__name__}")
    return data


async def _score_job(
    batcher: Batcher, request: Request, prompts: list[str], steps: list[list[str]], cfg: ServeConfig, fits: Callable
) -> tuple[list, list]:
    """(scores, step scores) of one request, scored by `batcher` alongside whatever else is queued. A request
    surely too long for the model (`fits`) is refused before it is queued; one whose client hangs up while it
    waits is dropped from the queue, not scored."""
    if len(prompts) > cfg.max_queries:
        raise RequestError(f"{len(prompts)} queries, more than max_queries {cfg.max_queries}", 413)
    if not prompts:
        return [], []
    fits(prompts, steps)
    loop = asyncio.get_running_loop()
    job = Job([p.rstrip() for p in prompts], steps, loop, loop.create_future())
    batcher.submit(job)
    gone = asyncio.ensure_future(_hung_up(request))
    try:
        await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not job.future.done():
        job.future.cancel()  # the worker skips a cancelled job
        raise RequestError("the client hung up", 499)
    try:
        return job.future.result()
    except PrmsearchError as e:
        raise RequestError(str(e), 422) from None


async def _hung_up(request: Request) -> None:
    """Returns when the client disconnects (the body is read: the server's next message can only be that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def length_check(scorer: Any) -> Callable[[list[str], list[list[str]]], None]:
    """A check that refuses a query surely longer than the model reads, before any tokenizer runs on it (a 7 MB
    step would hold the worker for seconds, and every request queued behind it). No token of the vocabulary spans
    more than `widest` characters, so c characters are at least c / widest tokens."""
    limit, tokenizer = getattr(getattr(scorer, "rm", None), "max_length", None), _tokenizer_of(scorer)
    if not isinstance(limit, int) or tokenizer is None:
        return lambda prompts, steps: None
    widest = max((len(t) for t in tokenizer.get_vocab()), default=1)

    def fits(prompts: list[str], steps: list[list[str]]) -> None:
        for i, (prompt, solution) in enumerate(zip(prompts, steps, strict=True)):
            chars = len(prompt) + sum(len(t) for t in solution)
            if chars // widest > limit:
                raise RequestError(
                    f"query {i} is {chars} characters, at least {chars // widest} tokens: more than the {limit} "
                    "this reward model reads",
                    422,
                )

    return fits


def _queries_to_steps(
    data: dict, separator: str | None, split: Callable[[str], list[str]]
) -> tuple[list[str], list[list[str]]]:
    """(prompts, steps) of a `/score` body: each query cut into its prompt and its response's steps."""
    queries = _check_texts(_strings(data, "query"), "query")
    given = _strings(data, "prompts", rows=len(queries), required=False)
    _strings(data, "labels", rows=len(queries), required=False)
    prompts, steps = [], []
    for i, q in enumerate(queries):
        if given is not None and not isinstance(given[i], str):
            raise RequestError(f'"prompts"[{i}] must be a string, got {type(given[i]).__name__}')
        try:
            prompt, response = split_query(q, None if given is None else given[i], separator)
        except RequestError as e:
            raise RequestError(f'"query"[{i}] {e}') from None
        prompts.append(prompt)
        steps.append(split(response))
    return prompts, steps


def _given_steps(data: dict) -> tuple[list[str], list[list[str]]]:
    """(prompts, steps) of a `/score_steps` body, blank steps left out."""
    prompts = _check_texts(_strings(data, "prompts"), "prompts")
    steps = _strings(data, "steps", rows=len(prompts))
    for i, s in enumerate(steps):
        if not isinstance(s, list) or not all(isinstance(t, str) for t in s):
            raise RequestError(f'"steps"[{i}] must be a list of strings')
    return prompts, [[t for t in s if t.strip()] for s in steps]


def _guarded(handler: Callable[[Request], Awaitable[JSONResponse]]) -> Callable[[Request], Awaitable[JSONResponse]]:
    """`handler` answering a refused request with its status and a bug with 500, so the server stays up."""
    from starlette.responses import JSONResponse

    async def endpoint(request: Request) -> JSONResponse:
        try:
            return await handler(request)
        except RequestError as e:
            # Refused before its body was read whole: the connection closes rather than read the rest to drop it.
            close = {"connection": "close"} if e.status in (408, 413) else None
            return JSONResponse({"error": str(e)}, status_code=e.status, headers=close)
        except Exception as e:  # noqa: BLE001 - a bug answers 500 and the server stays up
            return JSONResponse({"error": f"scoring failed: {type(e).__name__}: {e}"}, status_code=500)

    return endpoint


def create_app(scorer: Any, cfg: ServeConfig) -> Any:
    """The Starlette application serving `scorer` (any prmsearch `Scorer`) with `cfg`'s limits."""
    import torch
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    batcher = Batcher(scorer, cfg.max_batch_tokens, cfg.max_batch_requests, cfg.max_queued)
    separator = scorer.format.prompt_separator
    fits = length_check(scorer)

    async def score(request: Request) -> JSONResponse:
        data = await _read_json(request, cfg.max_body_bytes, cfg.read_timeout)
        prompts, steps = _queries_to_steps(data, separator, scorer.format.split)
        scores, _ = await _score_job(batcher, request, prompts, steps, cfg, fits)
        return JSONResponse({"rewards": [cfg.empty if s is None else float(s) for s in scores]})

    async def score_steps(request: Request) -> JSONResponse:
        prompts, steps = _given_steps(await _read_json(request, cfg.max_body_bytes, cfg.read_timeout))
        scores, step_scores = await _score_job(batcher, request, prompts, steps, cfg, fits)
        return JSONResponse({"scores": scores, "step_scores": step_scores})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "model": cfg.scorer,
                "kind": scorer.kind,
                "queued": batcher.queued,
                "requests": batcher.requests,
                "batches": batcher.batches,
                "threads": torch.get_num_threads(),
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        batcher.start()
        yield
        batcher.stop()

    app = Starlette(
        routes=[
            Route("/score", _guarded(score), methods=["POST"]),
            Route("/get_reward", _guarded(score), methods=["POST"]),
            Route("/score_steps", _guarded(score_steps), methods=["POST"]),
            Route("/health", _guarded(health), methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.batcher, app.state.read_timeout = batcher, cfg.read_timeout
    return app


def label_columns(labels: list) -> dict[str, list]:
    """OpenRLHF's `labels` as a reward function's dataset columns: a string (or number) is the gold answer
    (`answer`); an object, or its JSON text, gives columns by name (a code task's `test` and `entry_point`)."""
    rows = []
    for i, label in enumerate(labels):
        if isinstance(label, str) and label.lstrip().startswith("{"):
            with contextlib.suppress(ValueError):  # not JSON: an answer that starts with "{"
                label = json.loads(label)
        if isinstance(label, dict):
            rows.append(label)
        elif isinstance(label, (str, int, float)) and not isinstance(label, bool):
            rows.append({"answer": str(label)})
        else:
            raise RequestError(f'"labels"[{i}] must be a gold answer or an object of columns, got {label!r}')
    return {k: [row.get(k) for row in rows] for k in dict.fromkeys(k for row in rows for k in row)}


def create_verifier_app(task: str, cfg: ServeConfig) -> Any:
    """The Starlette application grading responses against their labels with `task`'s grader: verifiable rewards
    for an RL framework that calls a remote reward server (OpenRLHF's `--remote_rm_url`), with no model."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from .rewards import reward_function

    reward, served = reward_function(task), {"requests": 0}

    async def score(request: Request) -> JSONResponse:
        data = await _read_json(request, cfg.max_body_bytes, cfg.read_timeout)
        prompts, responses = _queries_to_steps(data, None, lambda response: [response])
        if len(prompts) > cfg.max_queries:
            raise RequestError(f"{len(prompts)} queries, more than max_queries {cfg.max_queries}", 413)
        columns = label_columns(_strings(data, "labels", rows=len(prompts)))
        try:
            rewards = await asyncio.to_thread(reward, prompts, [r for (r,) in responses], **columns)
        except PrmsearchError as e:
            raise RequestError(str(e), 422) from None
        served["requests"] += 1
        return JSONResponse({"rewards": rewards})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": task, "kind": "verifier", **served})

    routes = [Route(path, _guarded(score), methods=["POST"]) for path in ("/score", "/get_reward")]
    app = Starlette(routes=[*routes, Route("/health", _guarded(health), methods=["GET"])])
    app.state.read_timeout = cfg.read_timeout
    return app


def load_app(cfg: ServeConfig) -> Any:
    """Load `cfg.scorer` and build its app: a task's grader when it names a task (and no folder of that name)."""
    import os

    from .search.load import load_scorer
    from .tasks import TASKS

    if not cfg.scorer:
        raise RequestError("--scorer is required: a reward model folder, hub id or embedded name, or a task")
    if cfg.scorer in TASKS and not os.path.exists(cfg.scorer):
        return create_verifier_app(cfg.scorer, cfg)
    if cfg.threads is not None:
        # A small model's operators are too short to share: with more torch threads than idle cores (the HTTP
        # side and the clients run on the same ones) every operator waits for a descheduled thread.
        import torch

        torch.set_num_threads(cfg.threads)
    return create_app(load_scorer(cfg.scorer, adapter=cfg.adapter, device=cfg.device, agg=cfg.agg), cfg)


class ReadDeadline:
    """A deadline for what a client sends while no handler reads it, mixed into uvicorn's h11 protocol by
    `server_config`. uvicorn times a connection out only while it idles between requests (`timeout_keep_alive`),
    and every byte that arrives stops that clock: a client that sends a request's headers a byte every few seconds
    (slowloris), or connects and sends nothing, would hold its connection for ever (a handler times a slow body
    out itself: `read_timeout`, 408). Here a request's headers, from their first byte, and the rest of a body that
    no handler reads (its answer has gone out) have `read_timeout` seconds; then the connection closes, after a
    408 when headers were under way."""

    read_timeout: float = 30.0
    timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()  # a connection that sends nothing goes too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _watch(self) -> None:
        import h11

        conn = self.conn  # type: ignore[attr-defined]
        if conn.their_state is h11.SEND_BODY and conn.our_state is h11.DONE:
            self._arm()  # a body no handler reads
        elif conn.their_state is h11.IDLE and conn.trailing_data[0]:
            self._arm()  # headers under way
        else:  # a handler has the request, or the connection idles between requests (uvicorn's own timeout)
            self._disarm()

    def _arm(self) -> None:
        if self.timer is None:
            self.timer = self.loop.call_later(self.read_timeout, self._expire)  # type: ignore[attr-defined]

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        import h11

        self.timer = None
        transport, conn = self.transport, self.conn  # type: ignore[attr-defined]
        if transport.is_closing():
            return
        if conn.their_state is h11.IDLE and conn.trailing_data[0]:
            error = json.dumps({"error": f"the headers took more than read_timeout {self.read_timeout:g} s to arrive"})
            head = "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            transport.write(f"{head}content-length: {len(error)}\r\n\r\n{error}".encode())
        transport.close()


def server_config(app: Any, **kwargs: Any) -> Any:
    """uvicorn's settings for an app of `create_app` or `create_verifier_app`: its h11 protocol with the app's
    `read_timeout` on request headers (`ReadDeadline`); `kwargs` go to `uvicorn.Config` (host, port, ...)."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    protocol = type("H11ReadDeadline", (ReadDeadline, H11Protocol), {"read_timeout": app.state.read_timeout})
    return uvicorn.Config(app, http=protocol, log_level="warning", access_log=False, **kwargs)


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread while the block runs; yields its base URL (port 0: a free
    port). For tests, benchmarks and notebooks; `prmsearch serve` runs uvicorn in the foreground."""
    import uvicorn

    server = uvicorn.Server(server_config(app, host=host, port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Client:
    """A keep-alive client of one server (one per thread): `score` is OpenRLHF's call, `post` any endpoint."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)

    def post(self, path: str, body: Any) -> tuple[int, dict]:
        """POST `body` (bytes as they are, anything else as JSON); returns the status and the JSON answer."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def get(self, path: str) -> tuple[int, dict]:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def score(self, queries: Sequence[str], prompts: Sequence[str] | None = None) -> list[float]:
        body: dict[str, Any] = {"query": list(queries)}
        if prompts is not None:
            body["prompts"] = list(prompts)
        status, answer = self.post("/score", body)
        if status != 200:
            raise RequestError(answer.get("error", f"HTTP {status}"), status)
        return answer["rewards"]

    def close(self) -> None:
        self.conn.close()
