"""search-and-learn recipes, read as they are: a YAML of `sal.config.Config` keys (`approach`, `n`, `beam_width`,
`num_iterations`, `agg_strategy`, ...) becomes the `SearchConfig` that runs the same search here.

What this adds over renaming keys: search-and-learn's own defaults for the keys a recipe leaves out (its
`max_tokens` 2048, `lookahead` 1, `seed` 42, `agg_strategy` last, its system prompt), so a recipe means what it
meant there; its approaches as our strategies (`best_of_n` computes the naive, weighted and majority answers, as
search-and-learn does with `apply_voting`); the PRM's format from its path, as search-and-learn picks its PRM class;
and one line for each key that has no equivalent here, saying why it is ignored.
"""

from __future__ import annotations

import sys
from typing import Any

APPROACHES = {
    "best_of_n": ["best_of_n", "weighted_best_of_n", "majority"],
    "beam_search": ["beam"],
    "dvts": ["dvts"],
}
RENAMED = {
    "n": "n",
    "beam_width": "width",
    "num_iterations": "max_steps",
    "lookahead": "lookahead",
    "agg_strategy": "agg",
    "filter_duplicates": "filter_duplicates",
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "seed": "seed",
    "model_path": "policy",
    "prm_path": "scorer",
    "dataset_name": "dataset",
    "dataset_split": "split",
    "dataset_start": "start",
    "num_samples": "limit",
    "search_batch_size": "batch_problems",
    "system_prompt": "system_prompt",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "output_dir": "output",
}
# search-and-learn's defaults (sal.config.Config) where ours differ, for the keys a recipe leaves out
DEFAULTS = {
    "approach": "best_of_n",
    "n": 4,
    "seed": 42,
    "max_tokens": 2048,
    "agg_strategy": "last",
    "lookahead": 1,
    "search_batch_size": 25,
    "dataset_name": "HuggingFaceH4/MATH-500",
    "dataset_split": "test",
    "model_path": "meta-llama/Llama-3.2-1B-Instruct",
    "prm_path": "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data",
    "system_prompt": (
        "Solve the following math problem efficiently and clearly:\n\n- For simple problems (2 steps or fewer):\n"
        "Provide a concise solution with minimal explanation.\n\n- For complex problems (3 steps or more):\n"
        "Use this step-by-step format:\n\n## Step 1: [Concise description]\n[Brief explanation and calculations]"
        "\n\n## Step 2: [Concise description]\n[Brief explanation and calculations]\n\n...\n\nRegardless of the "
        "approach, always conclude with:\n\nTherefore, the final answer is: $\\boxed{answer}$. I hope it is "
        "correct.\n\nWhere [answer] is just the final number or expression that solves the problem."
    ),
}
IGNORED = {
    "push_to_hub": "results stay in the run folder (--output); nothing is pushed to the hub",
    "hub_dataset_id": "nothing is pushed to the hub",
    "overwrite_hub_revision": "nothing is pushed to the hub",
    "apply_voting": "best_of_n runs the naive, weighted and majority answers as strategies of their own",
    "num_proc": "answers are graded in killable worker processes sized to the machine",
    "prm_batch_size": "the PRM scores what a step of the search asks for in one call (max_batch_tokens bounds it)",
    "load_in_4bit": "the PRM loads in its checkpoint's dtype (--dtype for the policy)",
    "load_in_8bit": "the PRM loads in its checkpoint's dtype (--dtype for the policy)",
    "sort_completed": "a tree search's answer is picked by --final among all the solutions it completed",
    "custom_chat_template": "the policy's own chat template lays out the prompt (--prompt-template)",
    "dataset_config": "named datasets know their config (gsm8k: main); give a file for others",
    "dataset_end": "read as limit = dataset_end - dataset_start",
}
# the PRM format of a `prm_path`, by name, as search-and-learn chooses its PRM class (sal.models.reward_models)
PRM_FORMATS = {"rlhflow": "rlhflow", "math-shepherd": "math-shepherd", "qwen2.5-math-prm": "qwen2.5-math-prm"}


def is_recipe(values: dict[str, Any]) -> bool:
    """Whether a recipe's keys are search-and-learn's: `approach` is its key and no key of ours."""
    return "approach" in values


def translate(values: dict[str, Any], source: str) -> dict[str, Any]:
    """`SearchConfig` keys for a search-and-learn recipe; a key with no equivalent gets one line on stderr."""
    given = {**{k: v for k, v in DEFAULTS.items() if k not in values}, **values}
    approach = given.pop("approach")
    if approach not in APPROACHES:
        raise ValueError(f"{source}: approach {approach!r} is not search-and-learn's; one of {', '.join(APPROACHES)}")
    out: dict[str, Any] = {"strategy": APPROACHES[approach]}
    if given.get("dataset_end") is not None:
        given["num_samples"] = given["dataset_end"] - (given.get("dataset_start") or 0)
    for key, value in given.items():
        if key in RENAMED:
            if value is not None:
                out[RENAMED[key]] = value
        elif key in IGNORED:
            if value not in (None, False) and key in values:
                print(f"{source}: search-and-learn key {key}: {IGNORED[key]}; ignored", file=sys.stderr)
        else:
            raise ValueError(f"{source}: unknown key {key!r} (a search-and-learn recipe: `approach` is given)")
    name = str(out.get("scorer", "")).lower()
    fmt = next((f for part, f in PRM_FORMATS.items() if part in name), None)
    if fmt is not None:
        out.setdefault("scorer_adapter", fmt)
    return out
