"""Writing rows: ``RowWriter`` (datatrove's ParquetWriter for any row schema, on the hot path) and
``RankParquetReader`` (reads back exactly the file a rank wrote, so per-rank indices line up).

Both take whole Arrow batches as well as Documents: ``RowWriter`` writes a batch's rows to the files its
``output_filename`` names (one group per task/split ..., in order, in row groups of ``batch_size`` rows, files
rotated at ``max_file_size`` as datatrove does), with no dict per row; ``RankParquetReader(batches=True)``
yields the file's record batches instead of one Document per row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


def _is_batch(item) -> bool:
    return isinstance(item, (pa.RecordBatch, pa.Table))


class RowWriter(ParquetWriter):
    """datatrove's ParquetWriter for a row schema, on the hot path of a build: each file name is computed once
    per (rank, the metadata fields its template names[, file number]) instead of string work for every row, and the
    per-document statistics (three counter updates per row) become one count per file, recorded when it closes.

    It also takes ``pa.RecordBatch``/``pa.Table`` items (with the schema's columns; others are ignored): each
    batch is grouped by the columns the file name uses (the same fields), and the groups are buffered and written
    in row groups of ``batch_size`` rows. Items go on unchanged to the next step.

    ``use_dictionary`` and ``write_statistics`` are pyarrow's (True, False, or the columns to apply them to):
    a work file read once, in full, by the next stage needs no min/max statistics (a comparison of every
    string: a third of the cost of writing it) and no dictionary for its columns of distinct values (built for
    each row group, then dropped once it outgrows its page). The published shards keep both, as datatrove
    writes them."""

    def __init__(self, output_folder, schema: pa.Schema, output_filename: str, text_field: str = "inputs",
                 max_file_size: int = -1, use_dictionary: bool | Sequence[str] = True,
                 write_statistics: bool | Sequence[str] = True, **kwargs):
        super().__init__(output_folder, output_filename=output_filename, adapter=row_adapter(schema, text_field),
                         schema=schema, max_file_size=max_file_size, **kwargs)
        for option, value in (("use_dictionary", use_dictionary), ("write_statistics", write_statistics)):
            unknown = set() if isinstance(value, bool) else set(value) - set(schema.names)
            if unknown:
                raise ValueError(f"{option}: columns not in the schema: {sorted(unknown)}")
        self.use_dictionary = use_dictionary if isinstance(use_dictionary, bool) else list(use_dictionary)
        self.write_statistics = write_statistics if isinstance(write_statistics, bool) else list(write_statistics)

    def _memo(self, key: str, compute) -> str:
        cache = self.__dict__.setdefault("_name_cache", {})  # string keys: datatrove saves steps as JSON
        name = cache.get(key)
        if name is None:
            name = cache[key] = compute()
        return name

    def _get_output_filename(self, document: Document, rank: int | str = 0, **kwargs) -> str:
        meta = document.metadata  # names memoised by the fields the template uses (${task}/${split}, ${dialect}, ...)
        return self._memo("/".join([str(rank), *(str(meta.get(n)) for n in self._name_fields())]),
                          lambda: super(RowWriter, self)._get_output_filename(document, rank, **kwargs))

    def _get_filename_with_file_id(self, filename: str) -> str:
        return self._memo(f"{filename}#{self.file_id_counter[filename]}",
                          lambda: super(RowWriter, self)._get_filename_with_file_id(filename))

    def _count(self, name: str, n: int) -> None:
        counts = self.__dict__.setdefault("_counts", {})
        counts[name] = counts.get(name, 0) + n

    def _current_file(self, name: str) -> str:
        """The file ``name``'s rows go to now: rotated first when it has reached max_file_size (the same rule as
        DiskWriter.write)."""
        if self.max_file_size <= 0:
            return name
        current = self._get_filename_with_file_id(name)
        if self.output_mg.get_file(current).tell() >= self.max_file_size:
            self.file_id_counter[name] += 1
            new = self._get_filename_with_file_id(name)
            self._on_file_switch(name, current, new)
            current = new
        return current

    def write(self, document: Document, rank: int = 0, **kwargs):
        name = self._get_output_filename(document, rank)
        current = self._current_file(name)
        self._write(self.adapter(document), self.output_mg.get_file(current), name)
        self._count(name, 1)

    # ------------------------------------------------------------------------------------ batches

    def _name_fields(self) -> list[str]:
        """The metadata fields the file name template uses (what the Document path memoises names by)."""
        names = self.__dict__.get("_template_names")
        if names is None:
            names = self.__dict__["_template_names"] = [n for n in self.output_filename.get_identifiers() if n != "rank"]
        return names

    def _groups(self, batch: pa.RecordBatch | pa.Table) -> list[tuple[dict, pa.RecordBatch | pa.Table]]:
        """The batch split by the values of the file name's fields (order kept within each group)."""
        fields = self._name_fields()
        if not fields:
            return [({}, batch)]
        codes = np.zeros(batch.num_rows, dtype=np.int64)
        dictionaries = []
        for f in fields:
            column = batch.column(f)
            enc = pc.dictionary_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
            dictionaries.append(enc.dictionary.to_pylist())
            codes = codes * (len(enc.dictionary) + 1) + enc.indices.to_numpy(zero_copy_only=False)
        unique = np.unique(codes)
        out = []
        for code in unique.tolist():
            values, rest = {}, code
            for f, d in reversed(list(zip(fields, dictionaries))):
                rest, i = divmod(rest, len(d) + 1)
                values[f] = d[i]
            # a copy of the group's rows (not a slice of the batch, which the writer's buffer would keep whole)
            out.append((values, batch if len(unique) == 1 else batch.filter(pa.array(codes == code))))
        return out

    def write_batch(self, batch: pa.RecordBatch | pa.Table, rank: int = 0) -> None:
        """Write every row of ``batch`` (columns by name; the schema's columns must be there)."""
        for values, group in self._groups(batch):
            name = self._get_output_filename(Document(text="", id="", metadata=values), rank)
            table = pa.Table.from_batches([group]) if isinstance(group, pa.RecordBatch) else group
            table = table.select(self.schema.names).cast(self.schema)
            self._buffer(name, table)
            self._count(name, table.num_rows)

    def _buffer(self, name: str, table: pa.Table) -> None:
        buffers = self.__dict__.setdefault("_tables", {})
        pending = buffers.setdefault(name, [])
        pending.append(table)
        rows = sum(t.num_rows for t in pending)
        while rows >= self.batch_size:
            whole = pa.concat_tables(pending)
            self._flush_rows(name, whole.slice(0, self.batch_size))
            rest = whole.slice(self.batch_size)
            pending[:] = [rest] if rest.num_rows else []
            rows = rest.num_rows

    def _flush_rows(self, name: str, table: pa.Table) -> None:
        """One row group into the current file of ``name`` (rotated first when it has reached max_file_size)."""
        import pyarrow.parquet as pq

        current = self._current_file(name)
        if current not in self._writers:
            self._writers[current] = pq.ParquetWriter(
                self.output_mg.get_file(current), schema=self.schema, compression=self.compression,
                use_content_defined_chunking=self.use_content_defined_chunking,
                write_page_index=self.write_page_index, use_dictionary=self.use_dictionary,
                write_statistics=self.write_statistics)
        self._writers[current].write_table(table, row_group_size=max(table.num_rows, 1))

    def _flush_tables(self) -> None:
        for name, pending in self.__dict__.pop("_tables", {}).items():
            if pending:
                whole = pa.concat_tables(pending)
                if whole.num_rows:
                    self._flush_rows(name, whole)

    def run(self, data, rank: int = 0, world_size: int = 1):
        with self:
            for item in data:
                with self.track_time():
                    if _is_batch(item):
                        self.write_batch(item, rank)
                    else:
                        self.write(item, rank)
                yield item

    def close(self):
        self._flush_tables()
        for name, n in self.__dict__.pop("_counts", {}).items():
            self.stat_update(name, value=n)
            self.stat_update("total", value=n)
        super().close()


class RankParquetReader(ParquetReader):
    """Reads exactly the file an earlier stage wrote for this rank (``NNNNN.parquet``), so dedup indices line up.
    ``batches=True``: yields the file's record batches (``batch_size`` rows) instead of one Document per row."""

    def __init__(self, data_folder, *args, batches: bool = False, **kwargs):
        super().__init__(data_folder, *args, **kwargs)
        self.batches = batches

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        name = f"{rank:05d}.parquet"
        if not self.data_folder.exists(name):
            return
        if not self.batches:
            yield from self.read_files_shard([name])
            return
        import pyarrow.parquet as pq

        with self.data_folder.open(name, "rb") as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=self.batch_size):
                self.stat_update("documents", value=batch.num_rows)
                yield batch
