"""The reward-model math, checked against the implementation (prmsearch.train.losses / metrics)."""

import math

import pytest
import torch

from prmsearch.train.losses import (
    IGNORE,
    bt_losses,
    centering_penalties,
    global_mean,
    group_pair_weights,
    orm_losses,
    plackett_luce_losses,
    prm_losses,
)
from prmsearch.train.metrics import (
    auroc,
    expected_calibration_error,
    first_error,
    pair_accuracy,
    processbench_f1,
    step_metrics,
    within_group_pair_accuracy,
)

torch.manual_seed(0)


def test_bt_is_softplus_of_the_negative_difference():
    c, r = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
    expected = -torch.log(torch.sigmoid(c - r))
    assert torch.allclose(bt_losses(c, r), expected)
    big = torch.tensor([1000.0]), torch.tensor([-1000.0])  # stable where log(sigmoid) underflows
    assert bt_losses(*big).item() == 0.0 and bt_losses(big[1], big[0]).item() == pytest.approx(2000.0)


def test_bt_is_shift_invariant_and_margin_shifts_the_difference():
    c, r, shift = torch.randn(16), torch.randn(16), 3.7
    assert torch.allclose(bt_losses(c + shift, r + shift), bt_losses(c, r), atol=1e-6)
    m = torch.full((16,), 0.5)
    assert torch.allclose(bt_losses(c, r, m), bt_losses(c - 0.5, r), atol=1e-6)
    assert (bt_losses(c, r, m) > bt_losses(c, r)).all()  # a margin asks for more separation


def test_plackett_luce_with_two_is_bradley_terry():
    s = torch.randn(32, 2, dtype=torch.float64)
    assert torch.allclose(plackett_luce_losses(s), bt_losses(s[:, 0], s[:, 1]))


def test_plackett_luce_by_hand_and_with_padding():
    s = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    by_hand = -(2 - math.log(math.exp(2) + math.exp(1) + 1)) - (1 - math.log(math.exp(1) + 1))
    assert plackett_luce_losses(s).item() == pytest.approx(by_hand)
    padded = torch.tensor([[2.0, 1.0, 0.0, 9.0]], requires_grad=True)
    mask = torch.tensor([[True, True, True, False]])
    loss = plackett_luce_losses(padded, mask)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.sum().backward()
    assert torch.isfinite(padded.grad).all() and padded.grad[0, 3] == 0


def test_plackett_luce_with_tied_levels():
    """Two correct (level 0) and two incorrect (level 1) solutions: each correct one is scored against itself and
    both incorrect ones, never against its tied peer; strict levels give the ordinary ranking loss."""
    s = torch.tensor([[1.5, 0.5, -0.2, 0.3]], dtype=torch.float64)
    levels = torch.tensor([[0, 0, 1, 1]])
    e = [math.exp(v) for v in s[0].tolist()]
    by_hand = -(1.5 - math.log(e[0] + e[2] + e[3])) - (0.5 - math.log(e[1] + e[2] + e[3]))
    assert plackett_luce_losses(s, levels=levels).item() == pytest.approx(by_hand)
    shuffled = s[:, [2, 0, 3, 1]]
    assert plackett_luce_losses(shuffled, levels=levels[:, [2, 0, 3, 1]]).item() == pytest.approx(by_hand)
    strict = torch.tensor([[0, 1, 2, 3]])
    assert torch.allclose(plackett_luce_losses(s, levels=strict), plackett_luce_losses(s))


def test_centering_penalty_is_minimal_at_zero_mean():
    """For a fixed difference d, (r_c + r_r)² over r_c = a + d/2, r_r = a - d/2 is 4a², smallest at a = 0."""
    d = 1.3
    a = torch.linspace(-2, 2, 401, dtype=torch.float64)
    pen = centering_penalties(a + d / 2, a - d / 2)
    assert a[pen.argmin()].abs().item() < 1e-9
    assert torch.allclose(bt_losses(a + d / 2, a - d / 2), bt_losses(a + d / 2, a - d / 2)[0].expand(401))


def test_group_weights_count_each_prompt_once():
    w = group_pair_weights(["a", "a", "a", "a", "b"])
    assert w.tolist() == [0.25, 0.25, 0.25, 0.25, 1.0]


def test_within_group_pair_accuracy_pairs_only_samples_of_one_problem():
    # problem a: right 0.9, 0.4 against wrong 0.5 -> 1 of 2 in order; b: right 0.3 ties wrong 0.3 -> half;
    # c: no wrong sample, no pairs. Pooled, every right of a outscores b's wrong, which must not count.
    scores = [0.9, 0.4, 0.5, 0.3, 0.3, 0.8]
    labels = [True, True, False, True, False, True]
    groups = ["a", "a", "a", "b", "b", "c"]
    assert within_group_pair_accuracy(scores, labels, groups) == (pytest.approx(1.5 / 3), 3)
    # a model that scores the problem, not the solution: right and wrong of one problem tie
    assert within_group_pair_accuracy([0.9, 0.9, 0.1, 0.1], [True, False, True, False], "aabb") == (0.5, 2)
    assert within_group_pair_accuracy([0.9], [True], ["a"]) == (None, 0)


def test_pair_accuracy_counts_ties_wrong():
    c, r = torch.tensor([1.0, 2.0, 3.0, 0.0]), torch.tensor([0.0, 2.0, 4.0, -1.0])
    assert pair_accuracy(c, r) == 0.5
    assert pair_accuracy(torch.zeros(10), torch.zeros(10)) == 0.0  # a constant model gets nothing


def test_orm_masks_before_reducing():
    logits = torch.tensor([[5.0, -5.0, 0.0, 2.0]])
    labels = torch.tensor([[IGNORE, IGNORE, 1, 1]])
    losses = orm_losses(logits, labels)
    assert losses.shape == (2,)  # prompt tokens never enter, whatever their logits
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([0.0, 2.0]), torch.ones(2), reduction="none"
    )
    assert torch.allclose(losses, expected)


def test_prm_losses_by_kind():
    labels = torch.tensor([[IGNORE, 1, IGNORE, 0]])
    two = torch.randn(1, 4, 2)
    assert torch.allclose(
        prm_losses(two, labels, "ce"),
        torch.nn.functional.cross_entropy(two[0, [1, 3]], torch.tensor([1, 0]), reduction="none"),
    )
    three = torch.randn(1, 4, 3)
    rated = torch.tensor([[IGNORE, -1, IGNORE, 1]])
    assert torch.allclose(
        prm_losses(three, rated, "ce3"),
        torch.nn.functional.cross_entropy(three[0, [1, 3]], torch.tensor([0, 2]), reduction="none"),
    )
    one = torch.randn(1, 4, 1)
    soft = torch.tensor([[IGNORE, 0.25, IGNORE, 0.75]], dtype=torch.float64)
    logit = one[0, [1, 3], 0]
    assert torch.allclose(
        prm_losses(one, soft, "bce"),
        torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor([0.25, 0.75]), reduction="none"),
    )
    assert torch.allclose(prm_losses(one, soft, "mse"), (torch.sigmoid(logit) - torch.tensor([0.25, 0.75])) ** 2)
    with pytest.raises(ValueError, match="needs a head with 3 outputs"):
        prm_losses(two, rated, "ce3")


class _FakeAccelerator:
    """Two shards seen from shard 0: `reduce` adds the other shard's count, as an all-reduce would."""

    num_processes = 2

    def __init__(self, other_count):
        self.other = other_count

    def reduce(self, tensor, reduction="sum"):
        return tensor + self.other


def test_global_mean_weights_shards_by_their_items():
    """Shard A has 3 supervised items, shard B 1. Averaging per-shard means (the uneven-shard bug) gives
    (mean_A + mean_B) / 2; the right loss is the mean over all 4 items. After DDP's gradient averaging (/2), the
    per-shard values of global_mean must sum to exactly that."""
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0])
    shard_a = global_mean(a, accelerator=_FakeAccelerator(other_count=1.0))
    shard_b = global_mean(b, accelerator=_FakeAccelerator(other_count=3.0))
    assert ((shard_a + shard_b) / 2).item() == pytest.approx(torch.cat([a, b]).mean().item())
    assert ((a.mean() + b.mean()) / 2).item() != pytest.approx(torch.cat([a, b]).mean().item())
    assert global_mean(a).item() == pytest.approx(2.0)
    empty = global_mean(torch.zeros(0, requires_grad=True))
    assert empty.item() == 0.0 and empty.requires_grad


def test_step_metrics_and_processbench():
    probs = torch.tensor([0.9, 0.2, 0.8, 0.4])
    labels = torch.tensor([1, 0, 0, 0])
    m = step_metrics(probs, labels)
    assert m["step_accuracy"] == 0.75 and m["error_precision"] == 1.0 and m["error_recall"] == pytest.approx(2 / 3)
    assert m["error_f1"] == pytest.approx(0.8)
    assert first_error([0.9, 0.7, 0.3, 0.1]) == 2 and first_error([0.9]) == -1
    pb = processbench_f1(predicted=[2, 1, -1, -1, 0], gold=[2, 3, -1, 4, -1])
    assert pb["error_accuracy"] == pytest.approx(1 / 3) and pb["correct_accuracy"] == 0.5
    assert pb["processbench_f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))


def test_auroc_with_ties_and_ece_by_hand():
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert auroc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == 0.5
    probs = torch.tensor([0.05, 0.15, 0.95, 0.85])
    labels = torch.tensor([0, 1, 1, 1])
    # bins: [0.0,0.1): p .05 acc 0 -> .05; [0.1,0.2): p .15 acc 1 -> .85; [0.8,0.9): .85 -> .15; [0.9,1]: .95 -> .05
    assert expected_calibration_error(probs, labels) == pytest.approx((0.05 + 0.85 + 0.15 + 0.05) / 4)
    assert expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([1, 0])) == 0.0
