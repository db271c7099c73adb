"""RewardModel on tiny randomly initialised Qwen2 backbones: read-out positions, padding invariance, save/load."""

import math

import pytest
import torch
from conftest import tiny_config

from prmsearch import StepFormat
from prmsearch.models.reward_model import RewardModel, RewardModelError

PROMPT = "Natalia sold clips to 48 friends in April and half as many in May. How many in all?"
SOLUTION = "In May she sold 48 / 2 = 24 clips.\n\nIn all 48 + 24 = 72 clips.\n\nThe answer is 72."
OTHER = "She sold 48 clips.\n\nThe answer is 48."


def tiny_qwen2(tokenizer):
    from transformers import Qwen2Config

    return tiny_config(
        Qwen2Config,
        tokenizer,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
    )


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer):
    return smollm2_tokenizer


def make(tok, kind, **kw):
    torch.manual_seed(0)
    return RewardModel.from_backbone(tiny_qwen2(tok), tok, kind, StepFormat(), **kw).eval()


@pytest.mark.parametrize("kind", ["bt", "orm"])
def test_padded_batch_scores_like_single_examples(tok, kind):
    rm = make(tok, kind)
    prompts, completions = [PROMPT, "Short?", PROMPT], [SOLUTION, "Yes.", OTHER]
    alone = [rm.score(p, c) for p, c in zip(prompts, completions, strict=True)]
    assert rm.score_batch(prompts, completions) == pytest.approx(alone, abs=1e-5)


def test_left_padding_gives_the_same_logits(tok):
    rm = make(tok, "bt")
    enc = rm.encode(PROMPT, SOLUTION)
    ids = torch.tensor([enc.input_ids])
    plain = rm(ids, torch.ones_like(ids))[0, -1]
    pad = torch.full((1, 7), tok.pad_token_id)
    left = rm(torch.cat([pad, ids], 1), torch.cat([torch.zeros(1, 7, dtype=torch.long), torch.ones_like(ids)], 1))
    right = rm(torch.cat([ids, pad], 1), torch.cat([torch.ones_like(ids), torch.zeros(1, 7, dtype=torch.long)], 1))
    assert torch.allclose(left[0, -1], plain, atol=1e-5)
    assert torch.allclose(right[0, ids.shape[1] - 1], plain, atol=1e-5)


def test_bt_reads_the_last_real_token_like_transformers(tok):
    """With a pad id that no real token uses, the sequence classifier's own pooling picks the same token."""
    rm = make(tok, "bt")
    encoded = [rm.encode(PROMPT, SOLUTION), rm.encode("Short?", "Yes.")]
    ids, mask, _ = rm._batch(encoded)
    ours = torch.tensor(rm.score_batch([PROMPT, "Short?"], [SOLUTION, "Yes."]))
    theirs = rm.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[:, 0]
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("loss, width", [("ce", 2), ("ce3", 3), ("bce", 1), ("mse", 1)])
def test_prm_scores_every_step_in_one_pass(tok, loss, width):
    rm = make(tok, "prm", prm_loss=loss)
    assert rm.model.score.out_features == width
    steps = StepFormat().split(SOLUTION)
    scores = rm.score_steps(PROMPT, steps)
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    enc = rm.encode(PROMPT, steps)
    ids = torch.tensor([enc.input_ids])
    probs = rm.probabilities(rm(ids, torch.ones_like(ids)))[0, enc.step_ends]
    assert scores == pytest.approx(probs.tolist(), abs=1e-6)
    batch = rm.score_steps_batch([PROMPT, "Short?"], [steps, ["Yes.", "  ", "No."]])
    assert batch[0] == pytest.approx(scores, abs=1e-5) and len(batch[1]) == 2  # whitespace step not scored


def test_orm_aggregations_read_completion_tokens_only(tok):
    rm = make(tok, "orm")
    enc = rm.encode(PROMPT, SOLUTION)
    ids = torch.tensor([enc.input_ids])
    probs = torch.sigmoid(rm(ids, torch.ones_like(ids))[0, enc.prompt_length :, 0])
    for how, expected in (("mean", probs.mean()), ("min", probs.min()), ("prod", probs.double().prod())):
        rm.aggregation = how
        assert rm.score(PROMPT, SOLUTION) == pytest.approx(expected.item(), rel=1e-5)


def test_save_and_load_score_the_same(tok, tmp_path):
    fmt = StepFormat(separator="\n", marker=" ки", gap="\n")
    torch.manual_seed(0)
    rm = RewardModel.from_backbone(tiny_qwen2(tok), tok, "prm", fmt, prm_loss="ce3").eval()
    steps = ["48 / 2 = 24", "48 + 24 = 72"]
    before = rm.score_steps(PROMPT, steps)
    rm.save_pretrained(tmp_path / "prm")
    loaded = RewardModel.from_pretrained(str(tmp_path / "prm"))
    assert loaded.kind == "prm" and loaded.prm_loss == "ce3" and loaded.step_format == fmt
    assert loaded.score_steps(PROMPT, steps) == pytest.approx(before, abs=1e-6)
    bt = make(tok, "bt")
    bt.center = 0.25
    bt.save_pretrained(tmp_path / "bt")
    again = RewardModel.from_pretrained(str(tmp_path / "bt"), dtype=torch.float32)
    assert again.center == 0.25 and again.score(PROMPT, SOLUTION) == pytest.approx(bt.score(PROMPT, SOLUTION), abs=1e-6)


def test_the_saved_step_aggregation_is_every_consumers_default(tok, tmp_path):
    """A PRM saves how its step scores make a solution's score; load_scorer, rerank, reward_function and search use
    it unless told otherwise, and a model that saved none (the embedded PRM) gets min."""
    import pandas as pd

    from prmsearch.rewards import reward_function
    from prmsearch.search.engine import Search, SearchParams
    from prmsearch.search.load import load_scorer
    from prmsearch.search.rerank import rerank

    make(tok, "prm", step_aggregation="last").save_pretrained(tmp_path / "prm")
    assert RewardModel.from_pretrained(str(tmp_path / "prm")).step_aggregation == "last"
    scorer = load_scorer(str(tmp_path / "prm"), device="cpu")
    assert scorer.agg == "last" and load_scorer(str(tmp_path / "prm"), agg="mean", device="cpu").agg == "mean"
    assert reward_function(str(tmp_path / "prm"), device="cpu").scorer.agg == "last"
    assert Search(None, scorer, SearchParams()).agg == "last"  # a tree search ranks paths the same way
    assert Search(None, scorer, SearchParams(agg="prod")).agg == "prod"
    embedded = load_scorer("embedded:prm", device="cpu")
    assert embedded.agg == "min" and embedded.rm.step_aggregation is None
    steps = [[0.9, 0.1, 0.9], [0.6, 0.6, 0.6]]  # last prefers the first row, min the second
    frame = pd.DataFrame({"problem_id": ["q", "q"], "answer": ["1", "2"], "step_scores": steps})
    assert rerank(frame, "best_of_n")["rerank_answer"].tolist() == ["2"]
    assert rerank(frame, "best_of_n", agg="last")["rerank_answer"].tolist() == ["1"]


def test_wrong_use_is_a_clear_error(tok, tmp_path):
    with pytest.raises(RewardModelError, match="scores steps"):
        make(tok, "prm").score(PROMPT, SOLUTION)
    with pytest.raises(RewardModelError, match="scores whole completions"):
        make(tok, "bt").score_steps(PROMPT, ["a"])
    with pytest.raises(RewardModelError, match="kind must be one of"):
        RewardModel(None, tok, "dpo")
    make(tok, "bt").model.save_pretrained(tmp_path / "plain")
    with pytest.raises(RewardModelError, match="no prmsearch settings"):
        RewardModel.from_pretrained(str(tmp_path / "plain"))


# ---- which class of the PRM head means "correct" -----------------------------------------------------------------

# (loss, head bias, P(correct) the read-out must give): class 1 of the 2-class head is "correct" (label 1); class 0
# of the 3-class head is an error (label -1), so a neutral step (class 1, label 0) still counts as correct.
HEAD_CASES = [
    ("ce", [0.0, 3.0], 1 / (1 + math.exp(-3))),
    ("ce", [3.0, 0.0], 1 / (1 + math.exp(3))),
    ("ce3", [0.0, 3.0, 1.0], 1 - 1 / (1 + math.exp(3) + math.exp(1))),
    ("ce3", [3.0, 0.0, 0.0], 2 / (2 + math.exp(3))),
    ("bce", [-3.0], 1 / (1 + math.exp(3))),
]


@pytest.mark.parametrize("loss, bias, expected", HEAD_CASES)
def test_prm_head_class_meaning_survives_save_and_load(tok, tmp_path, loss, bias, expected):
    """A PRM whose head is set by hand (no weight on the hidden state, only a bias) scores every step with the
    probability of its "correct" class, through save_pretrained / from_pretrained as a user loads it."""
    rm = make(tok, "prm", prm_loss=loss)
    with torch.no_grad():
        rm.model.score.weight.zero_()
        rm.model.score.bias.copy_(torch.tensor(bias))
    rm.save_pretrained(tmp_path / "prm")
    loaded = RewardModel.from_pretrained(str(tmp_path / "prm"), dtype=torch.float32)
    scores = loaded.score_steps(PROMPT, StepFormat().split(SOLUTION))
    assert scores == pytest.approx([expected] * 3, abs=1e-5)


def test_prm_trained_on_good_steps_labelled_one_scores_them_higher(tok, tmp_path):
    """Train a tiny PRM (its own loss, its own read-out) on steps labelled 1 (right) and 0 (wrong): after
    save / load, the right steps score above 0.5 and the wrong ones below. A flipped class index in the loss or in
    the read-out (but not both) turns this around."""
    from prmsearch.train.losses import IGNORE, prm_losses

    rm = make(tok, "prm", prm_loss="ce").train()
    question = "What is 2 + 3?"
    good, bad = ["2 + 3 = 5.", "The answer is 5."], ["2 + 3 = 6.", "The answer is 6."]
    encoded = [rm.encode(question, good), rm.encode(question, bad)]
    ids, mask, _ = rm._batch(encoded)
    labels = torch.full(ids.shape, IGNORE)
    for row, (e, label) in enumerate(zip(encoded, (1, 0), strict=True)):
        labels[row, e.step_ends] = label
    optimizer = torch.optim.Adam(rm.parameters(), lr=1e-2)
    for _ in range(15):
        optimizer.zero_grad()
        prm_losses(rm(ids, mask), labels, "ce").mean().backward()
        optimizer.step()
    rm.save_pretrained(tmp_path / "trained")
    loaded = RewardModel.from_pretrained(str(tmp_path / "trained"), dtype=torch.float32)
    right, wrong = loaded.score_steps_batch([question, question], [good, bad])
    assert min(right) > 0.5 > max(wrong), (right, wrong)
