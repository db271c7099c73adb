"""MemoGenerator serves repeated samples from memory, bit for bit what the backend returns."""

from prmsearch.search.generators import HFGenerator
from prmsearch.search.memo import MemoGenerator

PROMPTS = ["Question: 2 + 3 = ?\n\n", "Solve 7 * 8.\n\n"]


def _key(outs):
    return [[(c.text, c.token_ids, c.finish_reason) for c in o] for o in outs]


def test_memo_equals_the_backend(tmp_path, smollm2_tokenizer):
    from prmsearch.models.tiny import tiny_policy

    tiny_policy(smollm2_tokenizer, tokens_per_step=4.0, steps_per_solution=2.0).save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    backend = HFGenerator.from_pretrained(str(tmp_path), device="cpu")
    memo = MemoGenerator(backend)
    args = {"stop": ["\n\n"], "max_tokens": 12, "temperature": 1.0, "seed": [5, 6]}
    big = memo.generate(PROMPTS, n=6, **args)
    assert (memo.hits, memo.misses) == (0, 2)
    assert _key(big) == _key(backend.generate(PROMPTS, n=6, **args))
    small = memo.generate(PROMPTS, n=3, **args)  # the first 3 of the 6, from memory
    assert (memo.hits, memo.misses) == (2, 2)
    assert _key(small) == _key(backend.generate(PROMPTS, n=3, **args)) == [o[:3] for o in _key(big)]
    memo.generate(PROMPTS, n=3, **{**args, "temperature": 0.5})  # other settings: other samples
    memo.generate(PROMPTS, n=8, **args)  # more than remembered: drawn again
    assert memo.misses == 6
    memo.generate(PROMPTS, n=2, **{**args, "seed": None})  # unseeded: never remembered
    assert (memo.hits, memo.misses) == (2, 6)
    assert memo.device == backend.device
