"""`prmsearch serve` under load (issue 15, item 3): the command runs as its own process on the loopback, and 32
concurrent keep-alive clients send 2,000 OpenRLHF /score requests (1-4 queries each, every tenth malformed). Every
answer is checked against the rewards the queries get scored alone. Two servers, side by side in one run: dynamic
batching (the default) and one request per forward pass (--max-batch-requests 1), each with one torch thread
(`--threads 1`: the clients share the 2 cores) and with torch's default (every core). Batching cannot gain more
than the scorer's own 32-per-call / 1-per-call ratio, measured in the same run without HTTP (the ceiling); the
second table sets the server's batched / one-at-a-time ratio against it (issue 31's goal: at least 0.8 of it).

    python benchmarks/serve_load.py [--scorer embedded:prm] [--requests 2000] [--clients 32] [--device cuda]

Prints the table and writes benchmarks/results/serve_load.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from load_client import chain_queries, check, hammer, make_load, score_alone

from prmsearch.search.load import load_scorer
from prmsearch.serve import Client

RESULTS = Path(__file__).parent / "results"


def serve(scorer: str, extra: list[str], device: str = "cpu") -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "prmsearch", "serve", "--scorer", scorer, "--port", str(port), "--device", device]
    server = subprocess.Popen(cmd + extra, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline and server.poll() is None:
        try:
            if Client(url).get("/health")[0] == 200:
                return server, url
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the server did not come up: {' '.join(cmd + extra)}")


def ceiling(scorer, texts: list[str], load: list, threads: int | None, together: int = 32, rounds: int = 3) -> dict:
    """The scorer alone, no HTTP: requests/s scoring the load's well-formed requests one per call against
    `together` per call. The server cannot gain more from batching than this ratio. Each rate is the best of
    `rounds`, the two sizes taking turns: a few seconds of someone else's work on a shared machine would
    otherwise tilt the ratio either way."""
    import torch

    from prmsearch.serve import split_query

    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    sep = scorer.format.prompt_separator
    requests = []
    for _, expected in load:
        if isinstance(expected, list):
            parts = [split_query(texts[j], None, sep) for j in expected]
            requests.append(([p.rstrip() for p, _ in parts], [scorer.format.split(r) for _, r in parts]))
    requests = requests[: 10 * together]
    rates = dict.fromkeys((1, together), 0.0)
    for _ in range(rounds):
        for size in rates:
            started = time.perf_counter()
            for i in range(0, len(requests), size):
                chunk = requests[i : i + size]
                scorer.score_solutions([p for ps, _ in chunk for p in ps], [s for _, ss in chunk for s in ss])
            rates[size] = max(rates[size], len(requests) / (time.perf_counter() - started))
    torch.set_num_threads(default)
    return {"threads": threads or default, "one_per_call": rates[1], "batched": rates[together], "together": together}


def against_ceiling(rows: list[dict], bounds: list[dict]) -> list[dict]:
    """Per thread setting: the server's batched / one-at-a-time throughput, the scorer's own 32-per-call /
    1-per-call ratio (what batching can gain at most) and their quotient (issue 31's goal: at least 0.8)."""
    out = []
    for i, bound in enumerate(bounds):
        server = rows[2 * i]["requests_per_s"] / rows[2 * i + 1]["requests_per_s"]
        most = bound["batched"] / bound["one_per_call"]
        out.append({"threads": bound["threads"], "server": server, "ceiling": most, "quotient": server / most})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scorer", default="embedded:prm")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="where the scorer runs: cpu, or cuda on a GPU machine")
    args = parser.parse_args()

    texts = chain_queries(200)
    scorer = load_scorer(args.scorer, agg="min", device=args.device)
    alone = score_alone(scorer, texts)
    load = make_load(texts, args.requests, malformed_every=10)
    bounds = [ceiling(scorer, texts, load, threads) for threads in (1, None)]
    del scorer
    rows = []
    modes = [
        (f"{how}, {threads}", [*extra, *flag])
        for threads, flag in (("1 thread", ["--threads", "1"]), ("default threads", []))
        for how, extra in (("batched", []), ("one at a time", ["--max-batch-requests", "1"]))
    ]
    for mode, extra in modes:
        server, url = serve(args.scorer, extra, args.device)
        try:
            hammer(url, load[:64], args.clients)  # warm-up: first-call allocations, connection set-up
            outcomes, seconds = hammer(url, load, args.clients)
            health = Client(url).get("/health")[1]
        finally:
            server.terminate()
            server.wait(timeout=60)
        result = check(load, outcomes, alone, seconds, tolerance=1e-4)
        result.update(mode=mode, batches=health["batches"], scored_requests=health["requests"])
        result["threads"] = health["threads"]
        rows.append(result)
    for i in range(0, len(rows), 2):  # against one at a time with the same threads
        base = rows[i + 1]["requests_per_s"]
        for r in rows[i : i + 2]:
            r["speedup"] = r["requests_per_s"] / base
    head = "| server | requests | malformed | wrong | lost | p50 ms | p99 ms | requests/s | mean batch | speed-up |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['requests']} | {r['malformed']} | {r['wrong']} | {r['lost']} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['requests_per_s']:.1f} | {r['scored_requests'] / r['batches']:.1f} "
            f"| {r['speedup']:.2f}x |"
        )
    table = "\n".join(lines)
    against = against_ceiling(rows, bounds)
    table += "\n\n" + "\n".join(
        [
            "| threads | server: batched / one at a time | ceiling: scorer 32 / 1 per call | server / ceiling |",
            "|---|---|---|---|",
            *(f"| {a['threads']} | {a['server']:.2f}x | {a['ceiling']:.2f}x | {a['quotient']:.2f} |" for a in against),
        ]
    )
    note = (
        f"{args.scorer}, {args.clients} concurrent clients on the loopback, {args.requests} /score requests of 1-4 "
        f"queries; wrong = a reward differing by more than 1e-4 from the query scored alone (largest difference "
        f"{max(r['max_reward_diff'] for r in rows):.1e}), or a malformed request without its 4xx and message; "
        "mean batch = requests per forward pass (the warm-up's included); speed-up against one at a time with the "
        "same threads."
    )
    note += "\n\nThe scorer alone (no HTTP), the load's well-formed requests: " + "; ".join(
        f"{b['threads']} thread{'s' * (b['threads'] > 1)}: {b['one_per_call']:.1f} requests/s one per call, "
        f"{b['batched']:.1f} with {b['together']} per call ({b['batched'] / b['one_per_call']:.2f}x)"
        for b in bounds
    )
    print(table + "\n\n" + note)
    RESULTS.mkdir(exist_ok=True)
    summary = {"servers": rows, "scorer_alone": bounds, "against_ceiling": against}
    (RESULTS / "serve_load.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "serve_load.md").write_text(table + "\n\n" + note + "\n")


if __name__ == "__main__":
    main()
