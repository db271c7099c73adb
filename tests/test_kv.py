"""`kv.GrowingLayer` must read exactly as transformers' `DynamicLayer` through every operation decoding uses, and a
model decoding with it must produce the same logits."""

from __future__ import annotations

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicLayer

from prmsearch.search import kv


def test_growing_layer_reads_like_a_dynamic_layer():
    torch.manual_seed(0)
    grow, dyn = kv.GrowingLayer(), DynamicLayer()
    rows = 3
    for step in range(70):  # past the first buffer (prefill + 64 spare columns), so it grows at least once
        k, v = torch.randn(rows, 2, 5 if step == 0 else 1, 4), torch.randn(rows, 2, 5 if step == 0 else 1, 4)
        got, want = grow.update(k, v), dyn.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        if step == 10:
            grow.batch_repeat_interleave(2)
            dyn.batch_repeat_interleave(2)
            rows = 6
        if step == 30:
            keep = torch.tensor([0, 3, 5])
            grow.batch_select_indices(keep)
            dyn.batch_select_indices(keep)
            rows = 3
    assert grow.get_seq_length() == dyn.get_seq_length() == 74
    grow.crop(-4)
    dyn.crop(-4)
    assert torch.equal(grow.keys, dyn.keys) and grow.get_seq_length() == 70


def test_decoding_with_a_growing_cache_gives_the_same_logits():
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    ).eval()
    ids = torch.randint(0, 50, (2, 6))
    with torch.inference_mode():
        logits = {}
        for name, cache in (("dynamic", DynamicCache()), ("growing", kv.stack([None, None], 0, "cpu", growing=True))):
            out = model(input_ids=ids, cache=cache, use_cache=True)
            cache, steps = out.cache, [out.logits[:, -1]]
            for _ in range(80):
                token = steps[-1].argmax(-1, keepdim=True)
                out = model(input_ids=token, cache=cache, use_cache=True)
                cache = out.cache
                steps.append(out.logits[:, -1])
            logits[name] = torch.stack(steps)
            assert cache.get_seq_length() == 86
    assert torch.allclose(logits["dynamic"], logits["growing"], atol=1e-5)
