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
    from prmsearch.search import SearchParams, load_scorer, run_search
    from prmsearch.search.generators import HFGenerator
    from prmsearch.tasks.chains import generate

    problems = generate("test", 6, seed=5)
    cached = HFGenerator.from_pretrained("embedded:policy", device="cpu", prefix_cache_tokens=cap)
    plain = HFGenerator.from_pretrained("embedded:policy", device="cpu", prefix_cache_tokens=0)
    scorer = load_scorer("embedded:prm", device="cpu")

    def run(generator, strategy, temperature):
        params = SearchParams(
            budget=4, width=2, max_steps=6, max_step_tokens=24, max_tokens=80, seed=3, temperature=temperature
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


def test_pruned_branches_and_finished_trees_leave_the_policy_cache_at_once():
    """Beam search releases each pruned step and each finished tree, so the policy's cache holds only live paths
    (while a tree grows, its kept beams; once it is done, at most the heads its prompts share), against everything
    the search fed when nothing is released. The same trees either way: a dropped state is only fed again."""
    from prmsearch.search import SearchParams, load_scorer, run_search
    from prmsearch.search.generators import HFGenerator
    from prmsearch.tasks.chains import generate

    problems = generate("test", 3, seed=5)
    scorer = load_scorer("embedded:prm", device="cpu")
    params = SearchParams(budget=8, width=2, max_steps=6, max_step_tokens=24, max_tokens=80, seed=3)

    def run(release):
        generator = HFGenerator.from_pretrained("embedded:policy", device="cpu")
        cache, generate_step, held = generator.prefix_cache, generator.generate, []

        def generate_and_measure(prompts, *args, **kwargs):
            held.append(cache.tokens)  # what the steps before left in the cache
            return generate_step(prompts, *args, **kwargs)

        generator.generate = generate_and_measure
        if not release:
            generator.release = lambda prompts, subtree=False: None
        states = run_search(problems, generator, scorer, "beam", params, prompt_template="plain")
        trees = [[(n.path, n.text, n.finish) for n in st.tree.nodes] for st in states]
        return trees, held, cache

    trees, held, cache = run(release=True)
    kept_trees, kept_held, kept = run(release=False)
    assert trees == kept_trees
    assert kept.stats["dropped_tokens"] == 0 and cache.stats["dropped_tokens"] > 0
    # the trees left with the search: at most a head the prompts share ("Compute ..."), against the whole search
    assert cache.tokens <= 5 and kept.tokens > 200, (cache.tokens, kept.tokens)
    # pruned steps left at once, and only they: a step that repeats a kept sibling's text kept its states (else
    # they would be fed again: 200 fed tokens instead of 106 here, before twins were checked)
    assert all(a <= b for a, b in zip(held, kept_held, strict=True)) and sum(held) < sum(kept_held), (held, kept_held)
    assert cache.stats["fed_tokens"] == kept.stats["fed_tokens"], (cache.stats, kept.stats)


def test_cached_logits_match_refeeding_to_rounding():
    """Where and why sampling with the prefix cache can part from re-feeding, bounded. Reused key/value states were
    computed in another batch (other padding, other matmul shapes), so the logits the generator computes on top of
    them (read here from its own forward passes) differ from one plain `model(input_ids)` over prompt + path, and
    from a generator without the cache, by float rounding only: under BOUND in log-probability (measured ~1e-5
    here, 8e-5 on SmolLM2-135M in float32; a state shifted by one column or one position moves them by >10). The
    uniforms are the sample's own, so a greedy token can change only if its top two log-probabilities tie within
    2 x BOUND, and a sampled one only if its uniform lies between a boundary F_k of the cumulative distribution and
    where rounding moved it, at most (e^d - 1) / 2 away for a log-probability error d: a chance per token of at
    most sum_k min(d, p_k e^d), about d x the number of tokens more likely than d (checked on every token below).
    On SmolLM2 that is ~1e-4 a token at T 0.8, so beam trees of thousands of tokens now and then part deep inside
    a sample."""
    from prmsearch.search.generators import HFGenerator
    from prmsearch.tasks.chains import generate

    BOUND = 1e-4
    problems = generate("test", 4, seed=5)

    def sample(cache_tokens):
        """A step of every problem, then the next step after each step the separator ended (the cache holds those
        states), with the logits each token of the second call was drawn from."""
        generator = HFGenerator.from_pretrained("embedded:policy", device="cpu", prefix_cache_tokens=cache_tokens)
        prompts = [p.prompt.rstrip() + "\n\n" for p in problems]  # the "plain" template
        steps = generator.generate(prompts, n=3, stop=["\n\n"], max_tokens=24, seed=1)
        children = [prompts[i] + c.text + "\n\n" for i, cs in enumerate(steps) for c in cs if c.finish_reason == "stop"]
        passes = []
        hook = generator.model.register_forward_hook(lambda m, a, out: passes.append(out.logits[:, -1].clone()))
        try:
            samples = [c for cs in generator.generate(children, n=2, stop=["\n\n"], max_tokens=24, seed=2) for c in cs]
        finally:
            hook.remove()
        # Token t of sample r came from pass t: the prefill (one row per prompt, shared by its two samples), then a
        # decode pass per token over the unfinished samples, in order.
        lengths = [len(c.token_ids) for c in samples]
        logits = [
            torch.stack([passes[t][r // 2 if t == 0 else sum(k > t for k in lengths[:r])] for t in range(length)])
            for r, length in enumerate(lengths)
        ]
        return generator, children, samples, logits

    def gap(a, b):  # per token, the largest log-probability difference
        return (torch.log_softmax(a, -1) - torch.log_softmax(b, -1)).abs().amax(-1)

    def worst(others):
        return max(gap(a, b).max().item() for a, b in zip(cached, others, strict=True))

    generator, children, samples, cached = sample(200_000)
    stats = generator.prefix_cache.stats
    assert stats["reused_tokens"] > 2 * stats["fed_tokens"], stats  # else this would compare re-feeding with itself
    refed = []
    for r, c in enumerate(samples):
        ids = generator.tokenizer(children[r // 2])["input_ids"]
        with torch.inference_mode():
            refed.append(generator.model(input_ids=torch.tensor([ids + c.token_ids[:-1]])).logits[0, len(ids) - 1 :])
    error = worst(refed)
    assert error < BOUND, error  # float rounding only (1.3e-5 on this CPU)
    _, _, plain_samples, uncached = sample(0)
    assert [c.token_ids for c in samples] == [c.token_ids for c in plain_samples]
    error = worst(uncached)
    assert error < BOUND, error
    for a, b in zip(cached, uncached, strict=True):
        # The chance that one uniform draws different tokens from the two: the length of the union of the gaps
        # between the two cumulative distributions, boundary by boundary (both ends rise with k).
        probs = torch.softmax(a.double(), -1)
        cdf, other = probs.cumsum(-1), torch.softmax(b.double(), -1).cumsum(-1)
        low, high = torch.minimum(cdf, other), torch.maximum(cdf, other)
        parted = (high - torch.maximum(low, torch.nn.functional.pad(high[:, :-1], (1, 0)))).clamp(min=0).sum(-1)
        d = gap(a, b).double()[:, None]
        assert (parted <= torch.minimum(d, probs * d.exp()).sum(-1)).all()
