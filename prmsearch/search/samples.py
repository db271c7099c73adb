"""Stored samples: the whole solutions a search run draws for majority, best-of-N and weighted best-of-N, kept in
its run folder (`samples.jsonl`, `samples.shard-I-of-K.jsonl` for a part), so that

- a resumed run judges the samples the killed one drew instead of drawing them again, and
- another run judges them with another reward model (`--samples-from RUN`): best-of-N with an ORM and weighted
  best-of-N with a PRM over one set of samples, for the price of one. On a CPU, sampling is most of a run's time.

Sample j of a prompt is fixed by (prompt, seed, j) and the sampling settings (the `Generator` contract), so a stored
sample is what the backend would draw again, provided the policy is the same: the settings that decide the samples
(`SAMPLE_SETTINGS`) must be those of the run that drew them, checked against its `search_config.yaml`. A row is one
prompt's completions under one (seed, settings): `{"prompt": sha256, "seed", "settings", "completions"}`; a later
row for the same key (more samples) supersedes an earlier one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import PrmsearchError
from ..files import append_rows, read_rows
from .generators import Completion

SAMPLES = "samples.jsonl"
# What decides a run's samples besides the prompt and the seed a request carries: a run whose samples another judges
# must agree on each (the prompt layout is in the prompt text, the rest is here).
SAMPLE_SETTINGS = ("policy", "backend", "dtype", "seed", "temperature", "top_p", "max_tokens")

Key = tuple[str, int, tuple]


class SamplesError(PrmsearchError):
    """Stored samples that cannot serve this run: another policy or sampling settings, or none stored."""


def sample_key(prompt: str, seed: int, settings: tuple) -> Key:
    return hashlib.sha256(prompt.encode()).hexdigest(), seed, settings


class SampleStore:
    """The samples of `read` files (another run's) and of `write` (this run's own, appended as they are drawn)."""

    def __init__(self, write: Path | None = None, read: Sequence[Path] = ()) -> None:
        self.write = write
        self._memory: dict[Key, list[Completion]] = {}
        for path in [*read, *([write] if write is not None else [])]:
            for number, row in enumerate(read_rows(path, repair=path == write), 1):
                try:
                    key = (row["prompt"], int(row["seed"]), _settings(row["settings"]))
                    self._memory[key] = [Completion(**c) for c in row["completions"]]
                except (KeyError, TypeError, ValueError) as e:
                    raise SamplesError(
                        f"{path}: row {number} is not a stored sample ({type(e).__name__}: {e}): remove the file to "
                        "draw the samples again"
                    ) from None

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, key: Key, n: int) -> list[Completion] | None:
        """The first `n` stored completions of `key`, or None when fewer are stored."""
        stored = self._memory.get(key)
        return stored[:n] if stored is not None and len(stored) >= n else None

    def put(self, items: Sequence[tuple[Key, list[Completion]]]) -> None:
        """Keep the new completions, and append them to `write` in one write."""
        for key, completions in items:
            self._memory[key] = completions
        if self.write is not None and items:
            append_rows(self.write, [_row(key, completions) for key, completions in items])


def _settings(value: Any) -> tuple:
    """A row's settings as the key holds them: (stop strings, max_tokens, temperature, top_p)."""
    stop, *rest = value
    return (tuple(stop), *rest)


def _row(key: Key, completions: list[Completion]) -> dict[str, Any]:
    prompt, seed, settings = key
    return {
        "prompt": prompt,
        "seed": seed,
        "settings": [list(settings[0]), *settings[1:]],
        "completions": [
            {
                "text": c.text,
                "token_ids": list(c.token_ids),
                "finish_reason": c.finish_reason,
                "stop_reason": c.stop_reason,
                "prompt_tokens": c.prompt_tokens,
            }
            for c in completions
        ],
    }


def samples_of(folder: str | Path, settings: dict[str, Any]) -> list[Path]:
    """The sample files of run folder `folder`, after checking that it drew them with `settings` (this run's values
    of `SAMPLE_SETTINGS`)."""
    import yaml

    folder = Path(folder)
    files = sorted(folder.glob("samples*.jsonl"))
    config = folder / "search_config.yaml"
    if not files or not config.exists():
        raise SamplesError(
            f"--samples-from {folder}: no stored samples there (samples.jsonl and search_config.yaml): give the "
            "folder of a search run that drew samples (majority, best_of_n or weighted_best_of_n)"
        )
    try:
        theirs = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as e:
        raise SamplesError(f"--samples-from {config}: not YAML ({' '.join(str(e).split())})") from None
    differ = [
        f"{k}: {theirs.get(k)!r} there, {settings[k]!r} here" for k in SAMPLE_SETTINGS if theirs.get(k) != settings[k]
    ]
    if differ:
        raise SamplesError(
            f"--samples-from {folder}: its samples were drawn with other settings ({'; '.join(differ)}): give the same "
            "policy and sampling settings, or leave --samples-from out to draw new samples"
        )
    return files
