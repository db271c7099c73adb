"""Examples written to Arrow files as they are built, so a build holds one batch of them at a time whatever the
dataset's size (an example held as Python lists of token ids takes tens of KB: Math-Shepherd's 445k rows would need
~10 GB), and the finished set is read back memory-mapped, file by file (`SHARD_ROWS` examples each).

A label column's type is only known once every label has been seen ("auto" label kind: hard 0/1 as int64, or soft
floats). Rather than hold the examples until then, `ExampleWriter` starts with the likely type and, when a label
needs another, starts a new shard in it; the shards written before are cast to the final features at the end.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

WRITE_BATCH = 1000  # examples held in memory before they go to the Arrow file
SHARD_ROWS = 5 * WRITE_BATCH  # examples per Arrow file: `prmsearch build` saves its output one file at a time


class ExampleWriter:
    """Rows to Arrow shards in `cache_dir` (files that stay there, memory-mapped, while the dataset is used), or to
    memory when `cache_dir` is None (the caller has no folder to clean up: `prmsearch train`'s in-place builds)."""

    def __init__(self, features: dict[str, Any], cache_dir: str | None = None):
        self.features = features
        self.cache_dir = cache_dir
        self.rows = 0
        self._shards: list[Any] = []
        self._writer: Any = None
        self._stream: Any = None
        self._path = ""
        self._in_shard = 0
        self._name = uuid.uuid4().hex[:12]  # one folder may hold several builds' files

    def write(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            self._open()
        self._writer.write(row)
        self.rows += 1
        self._in_shard += 1
        if self._in_shard >= SHARD_ROWS:
            self._close()

    def switch(self, features: dict[str, Any]) -> None:
        """Write the rows that follow with `features` (a label column that turned out to need another type)."""
        self._close()
        self.features = features

    def finish(self) -> Any:
        """The dataset of every row written, in order, with the current features."""
        import datasets

        if self._writer is None and not self._shards:
            self._open()  # no rows: an empty shard still carries the columns
        self._close()
        final = datasets.Features(self.features)
        parts = [ds if ds.features == final else self._cast(ds, final, i) for i, ds in enumerate(self._shards)]
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)

    def _open(self) -> None:
        import datasets
        import pyarrow as pa
        from datasets.arrow_writer import ArrowWriter

        features = datasets.Features(self.features)
        if self.cache_dir is None:
            self._stream = pa.BufferOutputStream()
            self._writer = ArrowWriter(features=features, stream=self._stream, writer_batch_size=WRITE_BATCH)
        else:
            self._path = os.path.join(self.cache_dir, f"examples-{self._name}-{len(self._shards):05d}.arrow")
            self._writer = ArrowWriter(features=features, path=self._path, writer_batch_size=WRITE_BATCH)

    def _close(self) -> None:
        import datasets

        if self._writer is None:
            return
        self._writer.finalize()
        if self.cache_dir is None:
            self._shards.append(datasets.Dataset.from_buffer(self._stream.getvalue()))
        else:
            self._shards.append(datasets.Dataset.from_file(self._path))
        self._writer = self._stream = None
        self._in_shard = 0

    def _cast(self, ds: Any, features: Any, index: int) -> Any:
        if self.cache_dir is None:
            return ds.cast(features, keep_in_memory=True)
        return ds.cast(features, cache_file_name=os.path.join(self.cache_dir, f"cast-{self._name}-{index:05d}.arrow"))
