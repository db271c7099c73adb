"""The policy's prefix cache: the trie keeps exactly the states it was given, and a search through a generator that
reuses them draws the tokens a generator that re-feeds every prompt draws."""

import pytest
import torch

from prmsearch.search.prefix_cache import PrefixCache


def states_of(ids: list[int], layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fake states that spell their own token ids (one head, dim 1), so a concatenation can be read back."""
    t = torch.tensor(ids, dtype=torch.float32)[None, :, None]
    return [(t + layer, -t - layer) for layer in range(layers)]


def spelled(states) -> list[int]:
    return [int(x) for x in states[0][0][0, :, 0].tolist()]


def test_match_insert_split_and_states():
    cache = PrefixCache()
    cache.insert([1, 2, 3, 4], 0, states_of([1, 2, 3, 4]))
    chain, n = cache.match([1, 2, 3, 4, 5])
    assert n == 4 and spelled(cache.states(chain)) == [1, 2, 3, 4]
    # A sibling that leaves the span after two tokens splits it; both paths keep their own states.
    cache.insert([1, 2, 9, 9], 2, states_of([9, 9]))
    assert cache.tokens == 6
    for ids, want in (([1, 2, 3, 4, 7], [1, 2, 3, 4]), ([1, 2, 9, 9, 7], [1, 2, 9, 9]), ([1, 2, 8], [1, 2])):
        chain, n = cache.match(ids)
        assert n == len(want) and spelled(cache.states(chain)) == want
    chain, n = cache.match([5, 6])
    assert n == 0 and cache.states(chain) is None
    # Every layer is kept, not only the first.
    chain, _ = cache.match([1, 2, 9, 9])
    assert cache.states(chain)[1][1][0, :, 0].tolist() == [-2.0, -3.0, -10.0, -10.0]


def test_evicts_least_recently_used_leaves_to_the_cap():
    cache = PrefixCache(max_tokens=6)
    cache.insert([1, 2, 3], 0, states_of([1, 2, 3]))
    cache.insert([1, 2, 3, 4, 5], 3, states_of([4, 5]))
    cache.insert([1, 2, 3, 6, 7], 3, states_of([6, 7]))
    cache.match([1, 2, 3, 4, 5])  # [4, 5] is now the most recently used leaf
    cache.evict()
    assert cache.tokens == 5 and cache.stats["evicted_tokens"] == 2
    assert cache.match([1, 2, 3, 6, 7])[1] == 3
    assert cache.match([1, 2, 3, 4, 5])[1] == 5
    cache.max_tokens = 0
    cache.evict()
    assert cache.tokens == 0 and cache.match([1, 2, 3])[1] == 0


def test_insert_without_its_cached_prefix_keeps_nothing():
    cache = PrefixCache()
    cache.insert([1, 2, 3], 2, states_of([3]))
    assert cache.tokens == 0 and cache.match([1, 2, 3])[1] == 0


@pytest.mark.parametrize("cap", [200_000, 60])
def test_search_draws_the_same_tokens_as_refeeding(cap):
    """Beam search, DVTS and MCTS, sampled and greedy, with the embedded policy (trained: its next step depends on
    the numbers before it, so a wrong reused state shows) through a generator that reuses prefix states and one that
    feeds every prompt whole: the same trees, token for token. With a 60-token cap the cache evicts all the time and
    must still change nothing. The cached run really reused states, of prompts and of sampled steps (else this would
    compare a run with itself)."""
    from prmsearch.bench.chains import generate
    from prmsearch.search import SearchParams, load_scorer, run_search
    from prmsearch.search.generators import HFGenerator

    problems = generate("test", 6, seed=5)
    cached = HFGenerator.from_pretrained("embedded:policy", device="cpu", prefix_cache_tokens=cap)
    plain = HFGenerator.from_pretrained("embedded:policy", device="cpu", prefix_cache_tokens=0)
    scorer = load_scorer("embedded:prm", device="cpu")

    def run(generator, strategy, temperature):
        params = SearchParams(
            n=4, width=2, max_steps=6, max_step_tokens=24, max_tokens=80, seed=3, temperature=temperature
        )
        states = run_search(problems, generator, scorer, strategy, params, prompt_template="plain")
        return [[(n.path, n.text, n.finish, n.tokens) for n in st.tree.nodes] for st in states]

    for strategy, temperature in (("beam", 1.0), ("dvts", 1.0), ("mcts", 1.0), ("beam", 0.0)):
        assert run(cached, strategy, temperature) == run(plain, strategy, temperature), (strategy, temperature)
    stats = cached.prefix_cache.stats
    assert plain.prefix_cache is None
    if cap == 60:
        assert stats["evicted_tokens"] > 0 and cached.prefix_cache.tokens <= 60 and stats["reused_tokens"] > 0
    else:
        assert stats["reused_tokens"] > 2 * stats["fed_tokens"], stats
