"""The notebook a user reranks samples in (`examples/rerank.ipynb`), executed top to bottom by a real kernel
(nbclient), as it is run: a copy, so the notebook with its saved outputs is never rewritten."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "rerank.ipynb"


def test_the_rerank_notebook_runs_top_to_bottom(tmp_path):
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(str(copy), as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    results = [ast.literal_eval(o["data"]["text/plain"]) for o in outputs if o["output_type"] == "execute_result"
               and o["data"]["text/plain"].startswith("{'majority'")]  # fmt: skip
    assert len(results) == 1
    accuracy = results[0]
    assert set(accuracy) == {"majority", "best_of_n", "weighted_best_of_n", "one sample"}
    assert accuracy["best_of_n"] > accuracy["majority"] > accuracy["one sample"]  # the PRM ranks within a problem
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot
    saved = nbformat.read(str(NOTEBOOK), as_version=4)
    assert any(c.get("outputs") for c in saved.cells if c.cell_type == "code")  # shipped with its outputs
