"""The over-optimization curve: KL(best-of-N) = log N - (N-1)/N, the proxy score and accuracy of each selecting
strategy at each N, the finding when accuracy falls while the proxy rises, and `prmsearch report` writing it."""

import json
import math

import pytest

from prmsearch.search.overoptimization import curve, findings, kl_best_of_n, write

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_kl_of_best_of_n():
    assert kl_best_of_n(1) == 0.0
    assert kl_best_of_n(2) == pytest.approx(math.log(2) - 0.5)
    assert kl_best_of_n(16) == pytest.approx(2.772588722 - 0.9375)
    assert kl_best_of_n(256) == pytest.approx(5.545177444 - 255 / 256)
    with pytest.raises(ValueError):
        kl_best_of_n(0)


def records(strategy, n, right, scores):
    """One record per score; the first `right` of them correct."""
    return [
        {"problem_id": f"q{i}", "strategy": strategy, "n": n, "correct": i < right, "score": s}
        for i, s in enumerate(scores)
    ]


def gamed():
    """best_of_n: accuracy 16/40, 28/40, 12/40 at N = 1, 4, 16 while the proxy rises 0.5, 0.7, 0.9 (the fall is
    outside N=4's 95% interval, [0.546, 0.819]); weighted rises in both; majority (no reward model) and a strategy
    at one N only are left out."""
    rows = []
    for n, right, proxy in ((1, 16, 0.5), (4, 28, 0.7), (16, 12, 0.9)):
        rows += records("best_of_n", n, right, [proxy] * 40)
    for n, right, proxy in ((1, 16, 0.4), (4, 24, 0.5), (16, 32, 0.6)):
        rows += records("weighted_best_of_n", n, right, [proxy - 0.1, proxy + 0.1] * 20)
    rows += records("majority", 4, 24, [None] * 40) + records("majority", 16, 24, [None] * 40)
    return rows + records("beam", 4, 20, [0.8] * 40)


def test_the_curve_and_what_it_finds():
    points = curve(gamed())
    assert [(p["strategy"], p["n"]) for p in points] == [
        ("best_of_n", 1), ("best_of_n", 4), ("best_of_n", 16),
        ("weighted_best_of_n", 1), ("weighted_best_of_n", 4), ("weighted_best_of_n", 16),
    ]  # fmt: skip
    bon = {p["n"]: p for p in points if p["strategy"] == "best_of_n"}
    assert bon[16]["kl"] == pytest.approx(kl_best_of_n(16), abs=1e-4)
    assert (bon[4]["accuracy"], bon[4]["proxy"], bon[16]["proxy"]) == (0.7, 0.7, 0.9)
    weighted = [p["proxy"] for p in points if p["strategy"] == "weighted_best_of_n"]
    assert weighted == pytest.approx([0.4, 0.5, 0.6]), "the mean of the chosen solutions' scores"
    bon_line, weighted_line = findings(points)
    assert bon_line.startswith("best_of_n: over-optimization: accuracy peaks at N=4 (0.700) and falls to 0.300")
    assert "0.700 -> 0.900" in bon_line and bon_line.endswith("outside the peak's 95% interval")
    assert weighted_line.startswith("weighted_best_of_n: no over-optimization up to N=16")
    # accuracy falling while the proxy falls too is not the reward model being gamed
    honest = [dict(r, score=1 - r["score"]) for r in gamed() if r["strategy"] == "best_of_n"]
    assert "no over-optimization" in findings(curve(honest))[0]
    # a fall the peak's interval holds (28/40 -> 26/40) is no clear sign
    slight = [dict(r, correct=int(r["problem_id"][1:]) < 26) if r["n"] == 16 else r for r in gamed()]
    assert findings(curve(slight))[0].startswith("best_of_n: no clear over-optimization: accuracy peaks at N=4")


def test_report_writes_the_curve_beside_the_summary(tmp_path, capsys):
    from prmsearch.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gamed()))
    before = (run / "results.jsonl").read_bytes()
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "best_of_n: over-optimization" in printed and "overoptimization.png" in printed
    saved = json.loads((run / "overoptimization.json").read_text())
    assert saved["findings"][0].startswith("best_of_n: over-optimization") and len(saved["points"]) == 6
    assert (run / "overoptimization.png").read_bytes()[:8] == PNG_MAGIC
    assert (run / "results.jsonl").read_bytes() == before
    # a run without a selecting strategy at two N writes no curve
    assert write(records("best_of_n", 4, 3, [0.5] * 4), tmp_path / "none") == []
    assert not (tmp_path / "none").exists()
