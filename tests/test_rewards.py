"""`reward_function`: prmsearch scorers and verifiers as TRL reward functions. Rewards are checked against the
reward model's own scores (the embedded PRM and ORM, saved pretrained checkpoints), the verifiers against known
answers and unit tests, normalisation by hand, and TRL's `GRPOTrainer` runs with them and logs the same rewards."""

import math

import pytest

from prmsearch import RewardModel
from prmsearch.errors import InputError
from prmsearch.rewards import reward_function
from prmsearch.tasks.chains import SEPARATOR, generate

PROBLEMS = generate("test", 3)


def completions():
    """Right and wrong worked solutions of three problems, and one empty completion."""
    prompts, texts = [], []
    for p in PROBLEMS:
        steps = p.meta["steps"]
        left, value = steps[-2].rsplit("= ", 1)
        slip = int(value) + 1  # the last operation off by one, carried into the answer
        wrong = [*steps[:-2], f"{left}= {slip}", f"The answer is {slip}."]
        prompts += [p.prompt + SEPARATOR, p.prompt + SEPARATOR]
        texts += [SEPARATOR.join(steps), SEPARATOR.join(wrong)]
    return prompts + [PROBLEMS[0].prompt + SEPARATOR], texts + ["   "]


def score(prm, prompt, text):
    """The PRM's step scores of a completion to a policy prompt (the problem, then the separator)."""
    assert prompt.endswith(SEPARATOR)
    return prm.score_steps(prompt.removesuffix(SEPARATOR), prm.step_format.split(text))


@pytest.fixture(scope="module")
def prm():
    return RewardModel.from_pretrained("embedded:prm")


@pytest.fixture(scope="module")
def orm():
    return RewardModel.from_pretrained("embedded:orm")


def test_prm_rewards_are_the_models_aggregated_step_scores(prm):
    prompts, texts = completions()
    for agg, combine in [("min", min), ("mean", lambda s: sum(s) / len(s)), ("last", lambda s: s[-1])]:
        rewards = reward_function(prm, agg=agg, empty=-1.0)(prompts=prompts, completions=texts)
        want = [combine(score(prm, p, t)) for p, t in zip(prompts[:-1], texts[:-1], strict=True)]
        assert rewards[:-1] == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert rewards[-1] == -1.0  # nothing to score
        if agg == "min":
            right, wrong = rewards[0:-1:2], rewards[1:-1:2]
            assert all(r > w for r, w in zip(right, wrong, strict=True))  # the embedded PRM sees the slip


def test_orm_rewards_loaded_by_name_are_the_models_scores(orm):
    prompts, texts = completions()
    fn = reward_function("embedded:orm")
    assert fn.__name__ == "orm_reward"
    rewards = fn(prompts=prompts[:-1], completions=texts[:-1], answer=[p.answer for p in PROBLEMS for _ in "ab"])
    problems = [p.removesuffix(SEPARATOR) for p in prompts[:-1]]
    assert rewards == pytest.approx(orm.score_batch(problems, texts[:-1]), rel=1e-5, abs=1e-6)


def test_reference_statistics_centre_and_scale_the_rewards(prm):
    prompts, texts = completions()
    reference = list(zip(prompts[:-1], texts[:-1], strict=True))
    raw = reward_function(prm)(prompts=prompts[:-1], completions=texts[:-1])
    mean = sum(raw) / len(raw)
    std = math.sqrt(sum((r - mean) ** 2 for r in raw) / (len(raw) - 1))
    fn = reward_function(prm, reference=reference)
    assert (fn.center, fn.scale) == pytest.approx((mean, std))
    assert fn(prompts=prompts[:2], completions=texts[:2]) == pytest.approx([(r - mean) / std for r in raw[:2]])
    with pytest.raises(InputError, match="at least 2"):
        reward_function(prm, reference=reference[:1])


def test_conversational_prompts_and_completions_score_as_their_text(prm):
    prompts, texts = completions()
    chat_prompts = [[{"role": "system", "content": "Solve."}, {"role": "user", "content": p}] for p in prompts[:2]]
    chat_completions = [[{"role": "assistant", "content": t}] for t in texts[:2]]
    fn = reward_function(prm)
    assert fn(prompts=chat_prompts, completions=chat_completions) == pytest.approx(
        fn(prompts=prompts[:2], completions=texts[:2])
    )


def test_math_verifier_rewards_read_the_answer_column():
    fn = reward_function("math")
    got = fn(
        prompts=["q1", "q2", "q3"],
        completions=["So it is \\boxed{\\frac{1}{2}}.", "The answer is 0.5", "I think 7."],
        answer=["1/2", "1/2", "8"],
        trainer_state=None,
    )
    assert got == [1.0, 1.0, 0.0]
    with pytest.raises(InputError, match="column 'solution'.*columns passed: answer"):
        reward_function("math", answer_column="solution")(prompts=["q"], completions=["1"], answer=["1"])


def test_code_verifier_rewards_run_the_unit_tests():
    prompt = "def add(a, b):\n"
    tests = "def check(f):\n    assert f(2, 3) == 5\n"
    fn = reward_function("code")
    got = fn(
        prompts=[prompt, prompt],
        completions=["    return a + b\n", "    return a - b\n"],
        test=[tests, tests],
        entry_point=["add", "add"],
    )
    assert got == [1.0, 0.0]
    chat = [[{"role": "assistant", "content": "Here:\n```python\ndef add(a, b):\n    return b + a\n```"}]]
    got = fn(prompts=[[{"role": "user", "content": "add"}]], completions=chat, test=[tests], entry_point=["add"])
    assert got == [1.0]


def test_bad_models_and_inputs_are_refused():
    with pytest.raises(InputError, match="got int"):
        reward_function(3)
    with pytest.raises(InputError, match="0 or 1"):
        reward_function("math", reference=[("a", "b"), ("c", "d")])
    with pytest.raises(InputError, match="2 prompts but 1 completions"):
        reward_function("math")(prompts=["a", "b"], completions=["c"], answer=["1", "2"])


class Recorder:
    """Passes TRL's calls through, keeping what it asked and what it got."""

    def __init__(self, fn):
        self.fn, self.calls, self.__name__ = fn, [], fn.__name__

    def __call__(self, prompts, completions, **columns):
        rewards = self.fn(prompts, completions, **columns)
        self.calls.append((list(prompts), list(completions), rewards))
        return rewards


def test_grpo_trainer_trains_with_prmsearch_rewards(tmp_path, prm):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from prmsearch.embedded import resolve

    problems = generate("train", 8, seed=5)
    data = Dataset.from_list([{"prompt": p.prompt + SEPARATOR, "answer": p.answer} for p in problems])
    prm_reward, math_reward = Recorder(reward_function("embedded:prm")), Recorder(reward_function("math"))
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=48,
        max_steps=2,
        learning_rate=1e-5,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=resolve("embedded:policy"),  # a saved pretrained checkpoint, as users pass theirs
        reward_funcs=[prm_reward, math_reward],
        args=args,
        train_dataset=data,
    )
    trainer.train()
    assert len(prm_reward.calls) == 2 and len(math_reward.calls) == 2
    logged = [h for h in trainer.state.log_history if "rewards/prm_reward/mean" in h]
    assert len(logged) == 2
    for (prompts, texts, rewards), entry in zip(prm_reward.calls, logged, strict=True):
        assert len(rewards) == 4
        want = [min(score(prm, p, t)) if t.strip() else 0.0 for p, t in zip(prompts, texts, strict=True)]
        assert rewards == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert entry["rewards/prm_reward/mean"] == pytest.approx(sum(rewards) / len(rewards), rel=1e-4)
    for _, _, rewards in math_reward.calls:
        assert set(rewards) <= {0.0, 1.0}
