"""Writing rows: ``RowWriter`` (datatrove's ParquetWriter for any row schema, on the hot path) and
``RankParquetReader`` (reads back exactly the file a rank wrote, so per-rank indices line up)."""

from __future__ import annotations

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter


def row_adapter(schema: pa.Schema, text_field: str = "inputs"):
    """A writer adapter for ``schema``: ``id`` from the document, ``text_field`` from its text, every other
    column from its metadata."""
    names = [n for n in schema.names if n not in ("id", text_field)]

    def adapter(self, doc: Document) -> dict:
        meta = doc.metadata
        return {"id": doc.id, text_field: doc.text, **{k: meta[k] for k in names}}

    return adapter


class RowWriter(ParquetWriter):
    """datatrove's ParquetWriter for a row schema, on the hot path of a build: each file name is computed once
    per (rank, task, split[, file number]) instead of string work for every row, and the per-document
    statistics (three counter updates per row) become one count per file, recorded when it closes."""

    def __init__(self, output_folder, schema: pa.Schema, output_filename: str, text_field: str = "inputs",
                 max_file_size: int = -1, **kwargs):
        super().__init__(output_folder, output_filename=output_filename, adapter=row_adapter(schema, text_field),
                         schema=schema, max_file_size=max_file_size, **kwargs)

    def _memo(self, key: str, compute) -> str:
        cache = self.__dict__.setdefault("_name_cache", {})  # string keys: datatrove saves steps as JSON
        name = cache.get(key)
        if name is None:
            name = cache[key] = compute()
        return name

    def _get_output_filename(self, document: Document, rank: int | str = 0, **kwargs) -> str:
        meta = document.metadata
        return self._memo(f"{rank}/{meta.get('task')}/{meta.get('split')}",
                          lambda: super(RowWriter, self)._get_output_filename(document, rank, **kwargs))

    def _get_filename_with_file_id(self, filename: str) -> str:
        return self._memo(f"{filename}#{self.file_id_counter[filename]}",
                          lambda: super(RowWriter, self)._get_filename_with_file_id(filename))

    def write(self, document: Document, rank: int = 0, **kwargs):
        name = current = self._get_output_filename(document, rank)
        if self.max_file_size > 0:  # the same rotation rule as DiskWriter.write
            current = self._get_filename_with_file_id(name)
            if self.output_mg.get_file(current).tell() >= self.max_file_size:
                self.file_id_counter[name] += 1
                new = self._get_filename_with_file_id(name)
                self._on_file_switch(name, current, new)
                current = new
        self._write(self.adapter(document), self.output_mg.get_file(current), name)
        counts = self.__dict__.setdefault("_counts", {})
        counts[name] = counts.get(name, 0) + 1

    def close(self):
        for name, n in self.__dict__.pop("_counts", {}).items():
            self.stat_update(name, value=n)
            self.stat_update("total", value=n)
        super().close()


class RankParquetReader(ParquetReader):
    """Reads exactly the file an earlier stage wrote for this rank (``NNNNN.parquet``), so dedup indices line up."""

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        name = f"{rank:05d}.parquet"
        if self.data_folder.exists(name):
            yield from self.read_files_shard([name])
