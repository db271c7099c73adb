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
and `max_batch_requests`), so throughput grows with concurrency while a lone request waits for no one. A batch that
fails is split in halves until the bad request (too long for the model) fails alone. Scores do not depend
on batch-mates: the scorers pad without attending to padding. HTTP is Starlette on uvicorn.
"""

from __future__ import annotations

import asyncio
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
    read_timeout: float = option(30.0, "seconds a request body may take to arrive (more: 408)")
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
    """One request's solutions, waiting for the worker; its result is set on `future` through `loop`."""

    prompts: list[str]
    steps: list[list[str]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    tokens: int = 0


@dataclass
class Batcher:
    """The worker thread that owns the scorer and scores queued jobs in batches."""

    scorer: Any
    max_batch_tokens: int
    max_batch_requests: int
    max_queued: int
    requests: int = 0
    batches: int = 0
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _held: Job | None = None
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
        return self._queue.qsize() + (self._held is not None)

    def submit(self, job: Job) -> None:
        if self.queued >= self.max_queued:
            raise RequestError(f"{self.queued} requests are waiting (max_queued); retry later", status=503)
        self._queue.put(job)

    def _tokens(self, job: Job) -> int:
        tokenizer = _tokenizer_of(self.scorer)
        texts = [p + "".join(s) for p, s in zip(job.prompts, job.steps, strict=True)]
        if tokenizer is not None and texts:
            with contextlib.suppress(Exception):  # an odd tokenizer only costs the estimate below
                return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
        return sum(len(t) for t in texts) // 4 + len(texts)

    def _next_batch(self) -> list[Job] | None:
        first = self._held if self._held is not None else self._queue.get()
        self._held = None
        while first is not None and first.future.done():  # its client hung up while it waited: not scored
            first = self._queue.get()
        if first is None:
            return None
        first.tokens = first.tokens or self._tokens(first)
        batch, tokens = [first], first.tokens
        while len(batch) < self.max_batch_requests:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            if job.future.done():
                continue
            job.tokens = self._tokens(job)
            if tokens + job.tokens > self.max_batch_tokens:
                self._held = job
                break
            batch.append(job)
            tokens += job.tokens
        return batch

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
            return JSONResponse({"error": str(e)}, status_code=e.status)
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
    app.state.batcher = batcher
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
    return Starlette(routes=[*routes, Route("/health", _guarded(health), methods=["GET"])])


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


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread while the block runs; yields its base URL (port 0: a free
    port). For tests, benchmarks and notebooks; `prmsearch serve` runs uvicorn in the foreground."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
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
