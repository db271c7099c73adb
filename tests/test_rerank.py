"""`rerank` on real DataFrames: each method and aggregation on frames where they disagree, answers grouped by real
math equivalence, user columns and index labels carried through, and an error naming column and row for each kind
of bad input. One test reranks the real GSM8K model solutions (skipped without ../shared/data)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from prmsearch.search.rerank import RerankError, rerank
from prmsearch.verifiers.math import grade_many

ROOT = Path(__file__).resolve().parent.parent
GSM8K_SOLUTIONS = ROOT.parent / "shared" / "data" / "gsm8k_test_model_solutions.jsonl"
OUT = ["rerank_answer", "rerank_score", "rerank_votes", "rerank_weight", "rerank_candidates"]


@pytest.fixture
def frame():
    """Two problems. q1: "1/2" in three forms (scores 0.4, 0.3, 0.35) against one "3" scored 0.9, so majority and
    weighted pick 1/2 and naive best-of-N picks 3. q2: only one row has an answer."""
    return pd.DataFrame(
        {
            "problem_id": ["q1", "q2", "q1", "q1", "q1", "q2"],
            "text": [
                "Half of it is \\boxed{\\frac{1}{2}}.",
                "I could not finish.",
                "The answer is 3.",
                "So p = 0.5",
                "A: 1/2",
                "Adding up, \\boxed{1,000}.",
            ],
            "score": [0.4, 0.99, 0.9, 0.3, 0.35, 0.2],
            "model": ["m1", "m2", "m3", "m4", "m5", "m6"],
        },
        index=["r0", "r1", "r2", "r3", "r4", "r5"],
    )


def test_majority(frame):
    out = rerank(frame, "majority")
    assert list(out.index) == ["r0", "r5"]  # first member of the largest group; problems in order of appearance
    assert list(out["problem_id"]) == ["q1", "q2"]
    assert list(out["rerank_answer"]) == ["\\frac{1}{2}", "1,000"]
    assert list(out["rerank_votes"]) == [3, 1]
    assert list(out["rerank_weight"]) == pytest.approx([1.05, 0.2])
    assert list(out["rerank_score"]) == pytest.approx([0.4, 0.2])
    assert list(out["rerank_candidates"]) == [4, 2]


def test_best_of_n(frame):
    out = rerank(frame, "best_of_n")
    assert list(out.index) == ["r2", "r1"]  # the single best row, with or without an answer
    assert list(out["rerank_answer"]) == ["3", None]
    assert list(out["rerank_votes"]) == [1, 0]
    assert list(out["rerank_score"]) == pytest.approx([0.9, 0.99])


def test_weighted_best_of_n_is_the_default(frame):
    out = rerank(frame)
    assert list(out.index) == ["r0", "r5"]  # 1/2 weighs 1.05 > 0.9; 0.4 is its best member
    assert list(out["rerank_weight"]) == pytest.approx([1.05, 0.2])


def test_columns_carried_through_and_not_clobbered(frame):
    out = rerank(frame, "majority")
    assert list(out.columns) == list(frame.columns) + OUT
    assert list(out["model"]) == ["m1", "m6"]
    assert list(out["text"]) == [frame.loc["r0", "text"], frame.loc["r5", "text"]]
    pd.testing.assert_frame_equal(out[list(frame.columns)], frame.loc[["r0", "r5"]])
    assert "rerank_answer" not in frame.columns  # the input is not modified
    with pytest.raises(RerankError, match=r"already has column\(s\) \['rerank_votes'\].*prefix="):
        rerank(out[[*frame.columns, "rerank_votes"]], "majority")
    again = rerank(out, "best_of_n", prefix="second_")  # rerank a reranked frame under another prefix
    assert "second_answer" in again.columns and list(again["rerank_votes"]) == [3, 1]


def test_index_labels_kept_even_when_duplicated(frame):
    frame.index = [7, 7, 7, 8, 8, 8]
    out = rerank(frame, "best_of_n")
    assert list(out.index) == [7, 7]
    assert list(out["model"]) == ["m3", "m2"]


@pytest.mark.parametrize("agg, winner", [("last", "a"), ("min", "b"), ("prod", "c"), ("mean", "d")])
def test_each_aggregation(agg, winner):
    # by hand:               last  min   prod   mean
    # a [0.1, 0.99]          .99   .1    .099   .545
    # b [0.73] * 4           .73   .73   .284   .73
    # c [0.72, 0.72]         .72   .72   .518   .72
    # d [1, 1, 1, 0.2]       .2    .2    .2     .8
    frame = pd.DataFrame(
        {
            "problem_id": [1, 1, 1, 1],
            "answer": ["1", "2", "3", "4"],
            "step_scores": [[0.1, 0.99], [0.73] * 4, [0.72, 0.72], [1.0, 1.0, 1.0, 0.2]],
            "name": ["a", "b", "c", "d"],
        }
    )
    out = rerank(frame, "best_of_n", agg)
    assert out["name"].item() == winner
    steps = frame.loc[out.index[0], "step_scores"]
    by_hand = {"last": steps[-1], "min": min(steps), "prod": math.prod(steps), "mean": sum(steps) / len(steps)}
    assert out["rerank_score"].item() == pytest.approx(by_hand[agg])


def test_aggregations_by_hand_change_the_weighted_winner():
    frame = pd.DataFrame(
        {
            "problem_id": ["p"] * 3,
            "answer": ["5", "5.0", "6"],
            "step_scores": [[0.9, 0.2], [0.9, 0.2], [0.3, 0.9]],
        }
    )
    assert rerank(frame, agg="last").index.tolist() == [2]  # 5: 0.2 + 0.2 = 0.4 < 0.9
    assert rerank(frame, agg="mean").index.tolist() == [0]  # 5: 0.55 + 0.55 = 1.1 > 0.6


def test_step_scores_win_over_score_and_columns_can_be_renamed():
    frame = pd.DataFrame(
        {"qid": ["a", "a"], "final": ["1", "2"], "score": [0.9, 0.1], "steps": [[0.1], [0.8]], "step_scores": [0, 0]}
    )
    out = rerank(frame, "best_of_n", problem_column="qid", answer_column="final", step_scores_column="steps")
    assert out.index.tolist() == [1]
    out = rerank(frame, "best_of_n", problem_column="qid", answer_column="final", step_scores_column=None)
    assert out.index.tolist() == [0]  # the `score` column, once step scores are switched off


def test_answer_column_beats_text_and_numbers_are_answers():
    frame = pd.DataFrame(
        {
            "problem_id": [0, 0, 0, 1],
            "answer": [18, float("nan"), 18.0, 2.5],  # a numeric column, as read from a CSV
            "text": ["The answer is 5", "The answer is 5", "The answer is 5", "x"],
        }
    )
    out = rerank(frame, "majority")
    assert out["rerank_answer"].tolist() == ["18", "2.5"]
    assert out["rerank_votes"].tolist() == [2, 1]
    assert math.isnan(out["rerank_score"].iloc[0])  # majority needs no scores


def test_no_answer_anywhere_still_gives_a_row():
    frame = pd.DataFrame(
        {"problem_id": ["p", "p", "p"], "text": ["hmm", "\\boxed{}", "no idea"], "score": [0.1, 0.7, 0.2]}
    )
    for method in ("majority", "weighted_best_of_n", "best_of_n"):
        out = rerank(frame, method)
        assert out.index.tolist() == [1] and out["rerank_answer"].tolist() == [None] and out["rerank_votes"].item() == 0
    out = rerank(frame[["problem_id", "text"]], "majority")
    assert out.index.tolist() == [0]  # without scores: the first row


def test_code_task_groups_programs():
    a = "def f(x):\n    return x * 2\n"
    b = "def f(x):\n    return x + x\n"
    frame = pd.DataFrame(
        {"problem_id": ["HumanEval/0"] * 4, "text": [b, a, a + "   \n\n", b], "score": [0.1, 0.5, 0.4, 0.3]}
    )
    assert rerank(frame, "majority", task="code").index.tolist() == [0]  # 2-2 tie: b appeared first
    out = rerank(frame, "weighted_best_of_n", task="code")
    assert out.index.tolist() == [1] and out["rerank_votes"].item() == 2 and out["rerank_answer"].item() == a.strip()


def test_parquet_round_trip_reads_step_scores_as_arrays(tmp_path):
    frame = pd.DataFrame({"problem_id": ["a", "a"], "answer": ["1", "2"], "step_scores": [[0.5, 0.9], [0.8, 0.7]]})
    path = tmp_path / "samples.parquet"
    frame.to_parquet(path)
    back = pd.read_parquet(path)  # list cells come back as numpy arrays
    assert rerank(back, "best_of_n", "min").index.tolist() == [1]


def test_lazy_export():
    import prmsearch

    assert prmsearch.rerank is rerank and "rerank" in prmsearch.__all__


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (lambda f: f.drop(columns="problem_id"), {}, r"missing column 'problem_id'.*problem_column="),
        (lambda f: f.drop(columns=["text"]), {}, r"missing column 'answer' or 'text'.*answer_column="),
        (lambda f: f.drop(columns="score"), {}, r"'weighted_best_of_n' needs scores: missing column 'step_scores'"),
        (lambda f: f.assign(score=[0.1, 0.2, float("nan"), 0.3, 0.4, 0.5]), {}, r"column 'score', row 'r2'.*nan"),
        (lambda f: f.assign(score=[0.1, 0.2, 0.3, "high", 0.4, 0.5]), {}, r"column 'score', row 'r3'.*'high'"),
        (lambda f: f.assign(score=[0.1, 0.2, 0.3, 0.4, None, 0.5]), {}, r"column 'score', row 'r4'.*got nan"),
        (lambda f: f.assign(score=[0.1, 0.2, 0.3, 0.4, 0.5, True]), {}, r"column 'score', row 'r5'.*True"),
        (lambda f: f.assign(score=[0.1, -0.2, 0.3, 0.4, 0.5, 0.6]), {}, r"column 'score', row 'r1'.*negative.*sigmoid"),
        (
            lambda f: f.assign(step_scores=[[0.1], [], [0.3], [0.4], [0.5], [0.6]]),
            {},
            r"'step_scores', row 'r1'.*empty",
        ),
        (lambda f: f.assign(step_scores=[[0.1], "0.9", [0.3], [0.4], [0.5], [0.6]]), {}, r"row 'r1'.*list.*'0.9'"),
        (lambda f: f.assign(step_scores=[[0.1], 0.9, [0.3], [0.4], [0.5], [0.6]]), {}, r"row 'r1'.*list.*0.9"),
        (lambda f: f.assign(step_scores=[[0.1], [0.2], [0.3, None], [0.4], [0.5], [0.6]]), {}, r"row 'r2'.*None"),
        (lambda f: f.assign(step_scores=[[0.1], [0.2], [0.3, "x"], [0.4], [0.5], [0.6]]), {}, r"row 'r2'.*'x'"),
        (lambda f: f.assign(step_scores=[[0.1], [0.2], [0.3], [1.5], [0.5], [0.6]]), {"agg": "prod"}, r"row 'r3'.*1.5"),
        (lambda f: f.assign(problem_id=["q1", None, "q1", "q1", "q1", "q2"]), {}, r"'problem_id', row 'r1'.*missing"),
        (
            lambda f: f.assign(text=["a", "b", 3, "c", "d", "e"]),
            {},
            r"column 'text', row 'r2': expected a string, got int",
        ),
        (lambda f: f, {"method": "weighted"}, r"unknown method 'weighted'.*majority, best_of_n, weighted_best_of_n"),
        (lambda f: f, {"agg": "max"}, r"unknown agg 'max'.*last, min, prod, mean"),
        (lambda f: f, {"task": "chess"}, r"unknown task 'chess'"),
    ],
)
def test_errors_name_column_and_row(frame, change, kwargs, message):
    with pytest.raises(RerankError, match=message):
        rerank(change(frame), **kwargs)


def test_not_a_dataframe():
    with pytest.raises(RerankError, match="takes a pandas DataFrame, a datasets.Dataset or a list of dicts, got str"):
        rerank("samples.jsonl")


@pytest.mark.skipif(not GSM8K_SOLUTIONS.exists(), reason=f"needs the shared data ({GSM8K_SOLUTIONS})")
def test_real_gsm8k_model_solutions():
    """60 GSM8K problems x 4 model solutions. With the labels as scores (an oracle reward), best-of-N and weighted
    best-of-N must find a right solution exactly where one exists; majority lands between."""
    rows = []
    with GSM8K_SOLUTIONS.open(encoding="utf-8") as f:
        for i, line in zip(range(60), f, strict=False):
            record = json.loads(line)
            for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
                sol = record[model]
                rows.append(
                    {
                        "problem_id": f"gsm8k-{i}",
                        "text": sol["solution"],
                        "score": float(sol["is_correct"]),
                        "gold": record["ground_truth"],
                        "model": model,
                    }
                )
    frame = pd.DataFrame(rows)
    solvable = frame.groupby("problem_id", sort=False)["score"].max()
    results = {}
    for method in ("majority", "best_of_n", "weighted_best_of_n"):
        out = rerank(frame, method)
        assert out["problem_id"].tolist() == [f"gsm8k-{i}" for i in range(60)]
        grades = grade_many(out["text"].tolist(), out["gold"].tolist(), progress=False)
        correct = [g.correct for g in grades]
        assert correct == [bool(s) for s in out["score"]]  # the verifier agrees with the dataset's labels
        results[method] = sum(correct)
    assert results["best_of_n"] == results["weighted_best_of_n"] == int(solvable.sum())
    assert 0 < results["majority"] <= results["best_of_n"]


# ---- scores from a scorer (a judge or a reward model) instead of the frame -----------------------------------------


def slipped(problem):
    """A wrong solution to a bundled-task problem: step 2's result off by one, carried to the answer."""
    from prmsearch.tasks.chains import apply

    ops = problem.meta["ops"]
    value, out = problem.meta["start"], []
    for i, (op, x) in enumerate(ops):
        result = apply(value, op, x) + (i == 1)
        out.append(f"{value} {op} {x} = {result}")
        value = result
    return out + [f"The answer is {value}."], str(value)


def chains_frame(count=6):
    """Per problem: the same wrong solution twice, then the worked one, so majority picks the wrong answer."""
    from prmsearch.tasks.chains import SEPARATOR, generate

    rows = []
    for p in generate("test", 40)[:count]:
        wrong, wrong_answer = slipped(p)
        assert wrong_answer != p.answer
        for steps, answer in ((wrong, wrong_answer), (wrong, wrong_answer), (p.meta["steps"], p.answer)):
            rows.append({"problem_id": p.id, "prompt": p.prompt, "text": SEPARATOR.join(steps), "answer": answer})
    return pd.DataFrame(rows), {p.id: p.answer for p in generate("test", 40)[:count]}


def test_a_critic_judge_passed_as_scorer_picks_the_right_solution_majority_misses():
    from conftest import ScriptedReader, chains_critic

    from prmsearch.judges import CriticJudge

    frame, gold = chains_frame()
    assert all(rerank(frame, method="majority")["rerank_answer"] != [gold[p] for p in gold])
    critic = CriticJudge(ScriptedReader(chains_critic()))
    for method in ("best_of_n", "weighted_best_of_n"):
        got = rerank(frame, method=method, agg="min", scorer=critic)
        assert got["rerank_answer"].tolist() == [gold[p] for p in gold]
        assert got["rerank_score"].tolist() == [1.0] * len(gold) and got.index.tolist() == [2, 5, 8, 11, 14, 17]
    assert critic.stats["verdicts"] == 2 * len(frame) and critic.stats["invalid"] == 0
    # the frame's own scores are not read when a scorer is given: a score column favouring the wrong rows is ignored
    frame["score"] = [0.9, 0.9, 0.1] * len(gold)
    assert rerank(frame, method="best_of_n", scorer=critic)["rerank_answer"].tolist() == [gold[p] for p in gold]


def test_a_judge_with_no_verdicts_counts_them_and_gives_no_opinion():
    from conftest import ScriptedReader

    from prmsearch.judges import PointwiseJudge

    frame, gold = chains_frame(2)
    judge = PointwiseJudge(ScriptedReader(lambda problem, solution: "Hard to say."))
    got = rerank(frame, method="best_of_n", scorer=judge)
    assert got["rerank_score"].tolist() == [0.5, 0.5] and got.index.tolist() == [0, 3]  # ties: the first row
    assert judge.stats["invalid"] == len(frame)


def test_a_reward_model_passed_as_scorer_gives_the_scores_it_gives_search():
    """The embedded PRM through `load_scorer`: each row's rerank score is its step scores' `agg`, as the scorer
    gives them to best-of-N, and the chosen row is the best-scoring one of its problem."""
    from prmsearch.scoring import aggregate_steps
    from prmsearch.search.load import load_scorer

    frame, _ = chains_frame(4)
    scorer = load_scorer("embedded:prm", device="cpu")
    got = rerank(frame, method="best_of_n", agg="min", scorer=scorer)
    steps = [scorer.format.split(t) for t in frame["text"]]
    direct = scorer.score_solutions(frame["prompt"].tolist(), steps)
    mins = [aggregate_steps(s, "min") for s in direct.step_scores]
    for pid, row in zip(got["problem_id"], got.index, strict=True):
        rows = [i for i, p in enumerate(frame["problem_id"]) if p == pid]
        assert row == max(rows, key=lambda i: (mins[i], -i))
        assert got.loc[row, "rerank_score"] == pytest.approx(mins[row], abs=1e-6)
    last = rerank(frame, method="best_of_n", agg="last", scorer=scorer)["rerank_score"]
    assert last.tolist() != got["rerank_score"].tolist()  # agg is applied to the scorer's step scores


class Centred:
    """A scorer of whole solutions with signed scores, like a Bradley-Terry model's centred reward."""

    kind = "bt"
    stats: dict = {}

    def __init__(self):
        from prmsearch.steps import StepFormat

        self.format = StepFormat()

    def score_solutions(self, prompts, solutions):
        from prmsearch.scoring import ScoreCounts, SolutionScores

        scores = [float(len(s)) - 9.0 for s in solutions]
        return SolutionScores(scores, [[] for _ in prompts], ScoreCounts([0] * len(prompts), [set() for _ in prompts]))


def test_scorer_input_errors_name_the_column_and_row():
    frame, _ = chains_frame(2)
    with pytest.raises(RerankError, match="scorer= needs column 'prompt'"):
        rerank(frame.drop(columns="prompt"), method="best_of_n", scorer=Centred())
    bad = frame.astype({"prompt": object})
    bad.loc[3, "prompt"] = 7
    with pytest.raises(RerankError, match="column 'prompt', row 3: expected a string"):
        rerank(bad, method="best_of_n", scorer=Centred())
    with pytest.raises(RerankError, match="negative score .*use method='best_of_n'"):
        rerank(frame, method="weighted_best_of_n", scorer=Centred())
    assert rerank(frame, method="best_of_n", scorer=Centred())["rerank_score"].tolist() == [-4.0, -4.0]


def test_a_dataset_or_a_list_of_dicts_comes_back_as_it_was_given():
    from datasets import Dataset

    rows = [
        {"problem_id": "q1", "answer": "4", "score": 0.2},
        {"problem_id": "q1", "answer": "5", "score": 0.9},
        {"problem_id": "q2", "answer": "7", "score": 0.4},
    ]
    as_list = rerank(rows, "best_of_n")
    assert isinstance(as_list, list) and [r["rerank_answer"] for r in as_list] == ["5", "7"]
    as_dataset = rerank(Dataset.from_list(rows), "best_of_n")
    assert isinstance(as_dataset, Dataset) and as_dataset["rerank_answer"] == ["5", "7"]
    assert as_dataset["problem_id"] == ["q1", "q2"]


def test_a_gold_column_grades_the_chosen_rows():
    frame = pd.DataFrame(
        {
            "problem_id": ["q1", "q1", "q2", "q3"],
            "text": ["So $\\boxed{\\frac{1}{2}}$.", "It is 3.", "The answer is 7.", "No idea."],
            "score": [0.9, 0.1, 0.8, 0.5],
            "gold": ["0.5", "0.5", "8", None],
        }
    )
    out = rerank(frame, "best_of_n")
    assert out["rerank_correct"].tolist() == [True, False, None]  # q3 has no gold answer to be right about
    assert "rerank_correct" not in rerank(frame.drop(columns="gold"), "best_of_n").columns
