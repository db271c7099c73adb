"""The step-boundary contract, on two real BPE tokenizers (SmolLM2's and one trained with merges that cross
step boundaries)."""

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prmsearch import StepFormat, StepFormatError, TooLongError


def decoded_up_to(tokenizer, enc, i):
    return tokenizer.decode(enc.input_ids[: enc.step_ends[i] + 1])


def check_boundaries(tokenizer, fmt, prompt, steps):
    enc = fmt.encode(tokenizer, prompt, steps)
    kept = [i for i, s in enumerate(steps) if s.strip()]
    assert enc.kept == kept and len(enc.step_ends) == len(kept)
    assert len(enc.input_ids) == len(enc.attention_mask)
    assert enc.step_ends == sorted(set(enc.step_ends)) and enc.step_ends[-1] == len(enc.input_ids) - 1
    assert enc.step_ends[0] >= enc.prompt_length
    for i, k in enumerate(kept):
        assert decoded_up_to(tokenizer, enc, i).endswith(steps[k] + fmt.step_marker)
    return enc


# -- split / join ------------------------------------------------------------------------------------------


def test_split_join_round_trip_and_empty_steps():
    fmt = StepFormat()
    text = "First step.\n\nSecond step, 2 + 2 = 4.\n\nThe answer is 4."
    assert fmt.split(text) == ["First step.", "Second step, 2 + 2 = 4.", "The answer is 4."]
    assert fmt.join(fmt.split(text)) == text
    messy = "\n\nFirst step.  \n\n\n\n   \n\nSecond.\n\n"
    assert fmt.split(messy) == ["First step.", "Second."]
    assert fmt.join(fmt.split(fmt.normalize(messy))) == fmt.normalize(messy) == "First step.\n\nSecond."


def test_split_on_newlines_keeps_calculator_annotations():
    fmt = StepFormat(separator="\n")
    text = "She has 16 - 3 = <<16-3=13>>13 eggs\nShe makes 13 * 2 = $<<13*2=26>>26\nA: 26"
    assert fmt.split(text)[1] == "She makes 13 * 2 = $<<13*2=26>>26"
    assert fmt.join(fmt.split(text)) == text


@given(st.lists(st.text(min_size=1, max_size=30).map(str.strip).filter(lambda s: s and "\n\n" not in s), max_size=8))
def test_round_trip_property(steps):
    fmt = StepFormat()
    assert fmt.split(fmt.join(steps)) == steps


def test_empty_separator_rejected():
    with pytest.raises(StepFormatError):
        StepFormat(separator="")


# -- encode ------------------------------------------------------------------------------------------------


def test_period_newline_merge_cannot_swallow_boundary(bpe_tokenizer):
    """The trained tokenizer merges ".\\n\\n" into one token; joined-text tokenization loses the boundary."""
    joined = bpe_tokenizer("Natalia sold clips.\n\nThen 3 * 4 = 12.\n\n", add_special_tokens=False).input_ids
    assert any(".\n\n" in bpe_tokenizer.decode([t]) for t in joined)  # one token spans the boundary
    fmt = StepFormat()
    enc = check_boundaries(bpe_tokenizer, fmt, "Q", ["Natalia sold clips.", "Then 3 * 4 = 12."])
    marker = bpe_tokenizer("\n\n", add_special_tokens=False).input_ids
    for end in enc.step_ends:
        assert enc.input_ids[end - len(marker) + 1 : end + 1] == marker


@pytest.mark.parametrize("marker", [" ки", "ки"])
def test_ki_marker_with_and_without_space(tokenizer, marker):
    fmt = StepFormat(separator="\n", marker=marker)
    steps = ["Step 1: 48 / 2 = 24 clips in May.", "Step 2: 48 + 24 = 72.", "The answer is 72."]
    enc = check_boundaries(tokenizer, fmt, "Natalia sold clips", steps)
    marker_ids = tokenizer(marker, add_special_tokens=False).input_ids
    assert all(enc.input_ids[e] == marker_ids[-1] for e in enc.step_ends)
    # " ки" and "ки" are different tokens, so a PRM trained with one cannot be scored with the other
    other = " ки" if marker == "ки" else "ки"
    assert tokenizer(other, add_special_tokens=False).input_ids != marker_ids


def test_gap_after_marker_is_unlabelled(tokenizer):
    """Math-Shepherd's layout: "Step 1: ... ки\nStep 2: ... ки" with the label on ки."""
    fmt = StepFormat(separator="\n", marker=" ки", gap="\n")
    steps = ["Step 1: 48 / 2 = 24.", "Step 2: 48 + 24 = 72.", "The answer is 72."]
    enc = check_boundaries(tokenizer, fmt, "Natalia sold clips", steps)
    text = "Step 1: 48 / 2 = 24. ки\nStep 2: 48 + 24 = 72. ки\nThe answer is 72. ки"
    assert tokenizer.decode(enc.input_ids).endswith(text)


def test_special_token_marker(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)  # the session fixture stays without <extra_0>
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    special = tok.convert_tokens_to_ids("<extra_0>")
    fmt = StepFormat(marker="<extra_0>")
    steps = ["We add 2 and 2.", "A literal <extra_0> in model output is text, not a boundary.", "So 4."]
    enc = check_boundaries(tok, fmt, "What is 2+2?", steps)
    assert [enc.input_ids[e] for e in enc.step_ends] == [special] * 3
    assert enc.input_ids.count(special) == 3  # the literal in step 2 did not become the marker


def test_empty_marker_labels_last_step_token(tokenizer):
    fmt = StepFormat(marker="")
    enc = check_boundaries(tokenizer, fmt, "Q:", ["one", "two"])
    assert tokenizer.decode(enc.input_ids[: enc.step_ends[1] + 1]).endswith("onetwo")


def test_prompt_without_trailing_newline(tokenizer):
    fmt = StepFormat(prompt_separator="\n")
    enc = check_boundaries(tokenizer, fmt, "What is 2+2?", ["2 + 2 = 4.", "The answer is 4."])
    assert tokenizer.decode(enc.input_ids[: enc.prompt_length]).endswith("What is 2+2?\n")
    assert tokenizer.decode(enc.input_ids).endswith("What is 2+2?\n2 + 2 = 4.\n\nThe answer is 4.\n\n")


def test_unicode_steps(tokenizer):
    steps = ["Решение: шаг один.", "日本語 ∑ x_i = 10 ≥ 3", "emoji 🧮 and π ≈ 3.14"]
    check_boundaries(tokenizer, StepFormat(marker=" ки"), "Задача", steps)


def test_empty_and_whitespace_steps_are_dropped_and_reported(tokenizer):
    steps = ["First.", "", "   \n\t ", "Last."]
    enc = check_boundaries(tokenizer, StepFormat(), "Q", steps)
    assert enc.kept == [0, 3]
    assert len(enc.step_ends) == 2
    empty = StepFormat().encode(tokenizer, "Q", ["", "  "])
    assert empty.step_ends == [] and empty.kept == [] and len(empty.input_ids) == empty.prompt_length


def test_max_length_never_cuts_a_label(tokenizer):
    fmt = StepFormat()
    steps = ["a b c d e f g h"] * 5
    full = fmt.encode(tokenizer, "Q", steps)
    assert fmt.encode(tokenizer, "Q", steps, max_length=len(full.input_ids)).input_ids == full.input_ids
    with pytest.raises(TooLongError) as err:
        fmt.encode(tokenizer, "Q", steps, max_length=full.step_ends[2])
    assert err.value.first_cut_step == 2 and err.value.num_steps == 5
    assert "max_length" in str(err.value)


# -- the property the issue asks for -----------------------------------------------------------------------

step_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn", "Co"))
    | st.sampled_from([" ", ".", "\n", "к", "и"]),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(step_text, min_size=1, max_size=7),
    marker=st.sampled_from(["\n\n", " ки", "ки", "\n", ""]),
    gap=st.sampled_from(["", "\n"]),
    prompt=st.sampled_from(["Q", "Solve: 2x = 4\n", "Задача ∑"]),
)
def test_supervised_positions_match_kept_steps(tokenizer, steps, marker, gap, prompt):
    fmt = StepFormat(marker=marker, gap=gap)
    enc = fmt.encode(tokenizer, prompt, steps)
    kept = [i for i, s in enumerate(steps) if s.strip()]
    assert enc.kept == kept and len(enc.step_ends) == len(kept)
    for i, k in enumerate(kept):
        assert decoded_up_to(tokenizer, enc, i).endswith(steps[k] + marker)
