"""A hashed, sharded, streaming n-gram index of a training corpus (for RAVEN novelty).

What is stored: the set of 64-bit hashes of every n-gram (n = 1..max_n) of the corpus, as sorted unique ``uint64``
arrays, one file per shard (shard k holds the hashes in the k-th slice of the 64-bit range), plus ``meta.json``.
That is 8 bytes per distinct n-gram, against a few hundred for a Python set of tuples of strings.

How it is built: the corpus is read once, in chunks of about ``chunk_tokens`` tokens, split into lines and tokens
in Arrow; token hashes are computed over the tokens' UTF-8 bytes at once (``hash_strings``: stable across
processes and machines, unlike Python's ``hash``, and no vocabulary is kept); n-gram hashes are chained with
numpy (``h_n = mix(h_{n-1} * K + token + n)``, splitmix64's finaliser as ``mix``) and buffered; past
``memory_budget_mb`` the buffer is sorted, deduplicated and cut into one sorted run file per shard; each shard
then merges its runs on its own. Peak memory is about twice the budget plus one shard.

Lines and n-grams: as in RAVEN's reference code, the corpus is one token stream by default, so an n-gram may span
two lines (``eos``, if given, is appended to every line first, like the reference's ``--eos``). With
``cross_lines=False`` only n-grams inside a line are indexed.

Queries hash the n-grams the same way, put them in order (``query_order``: one SIMD sort with positions packed
in the low bits) and look them up shard by shard with a binary search (``np.searchsorted``), one shard in memory
at a time. A hash collision can make a novel n-gram look seen: with
64-bit hashes and D distinct training n-grams the chance per query is about D / 2**64 (5e-12 for 100M n-grams);
the benchmark checks the scores equal those of an exact set of tuples on 10M tokens.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FORMAT = "arabic-prompts-ngram-index"
VERSION = 2  # 2: shard boundaries at multiples of 2**32
_K = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class NgramIndexError(ValueError):
    """An index folder that cannot be used (missing, another format, other settings)."""


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps modulo 2**64)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


_P1, _P2 = 0x100000001B3, 0xC2B2AE3D27D4EB4F  # odd multipliers of the two polynomial string hashes
_P1_INV, _P2_INV = pow(_P1, -1, 2**64), pow(_P2, -1, 2**64)
_MASK = (1 << 64) - 1


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: int, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) modulo 2**64 (a table per base, grown when a longer one is needed)."""
    table = _POWERS.get(base)
    if table is None or table.size < n:
        size = max(n, 2 * (table.size if table is not None else 0), 1 << 16)
        table = np.full(size, base, dtype=np.uint64)
        table[0] = 1
        with np.errstate(over="ignore"):
            table = np.cumprod(table, dtype=np.uint64)
        _POWERS[base] = table
    return table[:n]


def hash_strings(values: pa.Array, slice_bytes: int = 1 << 18) -> np.ndarray:
    """Stable 64-bit hashes of Arrow strings, vectorised over their UTF-8 bytes: two polynomial hashes (odd
    multipliers, modulo 2**64) of each string's bytes, from prefix sums, combined with its length and finished with
    splitmix64's mixer. The same value in every process and on every machine (unlike Python's ``hash``), and no
    vocabulary is kept. Strings are taken about ``slice_bytes`` bytes at a time (bounded temporary memory)."""
    values = values.cast(pa.large_string())
    n = len(values)
    out = np.empty(n, dtype=np.uint64)
    if not n:
        return out
    offsets_buf, data_buf = values.buffers()[1], values.buffers()[2]
    offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=values.offset + n + 1)[values.offset:]
    data = np.frombuffer(data_buf, dtype=np.uint8, count=int(offsets[-1])) if data_buf is not None else \
        np.empty(0, dtype=np.uint8)
    i = 0
    while i < n:  # strings [i, j): about slice_bytes bytes, at least one string
        j = max(i + 1, int(np.searchsorted(offsets, offsets[i] + slice_bytes, side="right")) - 1)
        j = min(j, n)
        lo, hi = int(offsets[i]), int(offsets[j])
        b = data[lo:hi].astype(np.uint64) + np.uint64(1)
        starts, ends = offsets[i:j] - lo, offsets[i + 1:j + 1] - lo
        with np.errstate(over="ignore"):
            parts = []
            for base, inv in ((_P1, _P1_INV), (_P2, _P2_INV)):
                prefix = np.zeros(b.size + 1, dtype=np.uint64)
                np.cumsum(b * _powers(base, b.size), dtype=np.uint64, out=prefix[1:])
                parts.append((prefix[ends] - prefix[starts]) * _powers(inv, b.size + 1)[starts])  # sum b_k base^(k-start)
            lengths = (ends - starts).astype(np.uint64)
            h = parts[0] ^ ((parts[1] << np.uint64(32)) | (parts[1] >> np.uint64(32))) ^ (lengths * _K)
            out[i:j] = _mix(h)
        i = j
    return out


class TokenHasher:
    """Token -> stable 64-bit hash (``hash_strings`` of its UTF-8)."""

    def __call__(self, tokens: list[str]) -> np.ndarray:
        return hash_strings(pa.array(tokens, pa.large_string()))


def sorted_unique(values: np.ndarray, runs: bool = False, in_place: bool = False) -> np.ndarray:
    """The distinct values, sorted: a sort and a neighbour test (numpy 2.4's plain ``unique`` takes a hash-table
    path that is about 40x slower on random 64-bit values). ``runs``: ``values`` is a concatenation of sorted runs,
    which a stable sort (timsort) merges faster. ``in_place``: sort ``values`` itself (no copy)."""
    out = values if in_place else values.copy()
    out.sort(kind="stable" if runs else None)
    if out.size > 1:
        keep = np.empty(out.size, dtype=bool)
        keep[0] = True
        np.not_equal(out[1:], out[:-1], out=keep[1:])
        out = out[keep]
    return out


def iter_ngram_hashes(tokens: np.ndarray, max_n: int) -> Iterator[np.ndarray]:
    """``h_1, ..., h_max_n`` one at a time: ``h_n[i]`` is the hash of the n-gram starting at token ``i`` (length
    ``L - n + 1``; empty when ``L < n``)."""
    with np.errstate(over="ignore"):
        h = _mix(tokens + np.uint64(1))
        yield h
        for n in range(2, max_n + 1):
            if len(tokens) < n:
                h = np.empty(0, dtype=np.uint64)
            else:
                h = _mix(h[:-1] * _K + tokens[n - 1:] + np.uint64(n))
            yield h


def ngram_hashes(tokens: np.ndarray, max_n: int) -> list[np.ndarray]:
    """``[h_1, ..., h_max_n]`` (``iter_ngram_hashes`` as a list)."""
    return list(iter_ngram_hashes(tokens, max_n))


@dataclass
class IndexMeta:
    format: str
    version: int
    max_n: int
    num_shards: int
    eos: str | None
    cross_lines: bool
    lines: int = 0
    tokens: int = 0
    distinct: int = 0
    shard_sizes: list | None = None


_ORDER_BITS = 32  # shard boundaries are multiples of 2**32, so an order by the top 32 bits never crosses one


def _boundaries(num_shards: int) -> np.ndarray:
    """Start of each shard's slice of the uint64 range (shard k: [b[k], b[k+1])), a multiple of 2**32."""
    if not 1 <= num_shards <= 1 << 16:
        raise NgramIndexError(f"num_shards must be between 1 and 65536, not {num_shards}")
    step = ((1 << 64) // num_shards) >> _ORDER_BITS << _ORDER_BITS
    return np.array([k * step for k in range(num_shards)], dtype=np.uint64)


def query_order(hashes: np.ndarray) -> np.ndarray:
    """Positions that put ``hashes`` in order of their top bits (ties, rare, in position order): one SIMD
    ``np.sort`` of the hashes with their position packed into the low bits, several times faster than
    ``np.argsort``. Exact look-ups need no more (``searchsorted`` is exact for keys in any order; order only makes
    it fast), and since shard boundaries are multiples of 2**32 the keys of one shard stay together."""
    n = hashes.size
    bits = max(1, int(n - 1).bit_length())
    if bits > _ORDER_BITS:
        return np.argsort(hashes, kind="stable")
    low = np.uint64((1 << bits) - 1)
    packed = (hashes & ~low) | np.arange(n, dtype=np.uint64)
    packed.sort()
    packed &= low
    return packed.astype(np.int64)


class _ShardBuffers:
    """N-gram hashes buffered as they come; past the memory budget (and at the end) they are sorted, deduplicated
    and cut into one sorted run per shard, spilled to disk; each shard then merges its runs on its own."""

    def __init__(self, num_shards: int, tmp: Path, budget_bytes: int):
        self.num_shards, self.tmp, self.budget = num_shards, tmp, budget_bytes
        self.bounds = _boundaries(num_shards)
        self.pending: list[np.ndarray] = []
        self.files: list[list[Path]] = [[] for _ in range(num_shards)]
        self.buffered = 0

    def add(self, hashes: np.ndarray) -> None:
        self.pending.append(hashes)
        self.buffered += hashes.nbytes
        if self.buffered > self.budget:
            self.spill()

    def spill(self) -> None:
        if not self.pending:
            return
        u = np.concatenate(self.pending)
        self.pending, self.buffered = [], 0
        u = sorted_unique(u, in_place=True)
        cuts = np.searchsorted(u, self.bounds[1:])
        for k, part in enumerate(np.split(u, cuts)):
            if part.size:
                path = self.tmp / f"shard-{k:05d}-run-{len(self.files[k]):05d}.npy"
                np.save(path, part)
                self.files[k].append(path)

    def merge(self, k: int) -> np.ndarray:
        self.spill()
        if not self.files[k]:
            return np.empty(0, dtype=np.uint64)
        parts = [np.load(p) for p in self.files[k]]
        for p in self.files[k]:
            p.unlink()
        merged = parts[0] if len(parts) == 1 else np.concatenate(parts)
        del parts
        return merged if len(self.files[k]) == 1 else sorted_unique(merged, runs=True, in_place=True)


def read_lines(paths: Iterable[str | Path]) -> Iterator[str]:
    """The lines of text files, as Python reads them (universal newlines)."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield from f


_NEWLINE = "\r\n|\r|\n"  # what Python's universal newlines split on


def read_line_batches(paths: Iterable[str | Path], block_bytes: int = 2 << 20) -> Iterator[pa.Array]:
    """The lines of text files (the same lines as ``read_lines``, without their line ends), as Arrow string arrays
    of about ``block_bytes`` each, split in Arrow: no Python string per line."""
    for path in paths:
        with open(path, "rb") as f:
            carry = b""
            while True:
                block = f.read(block_bytes)
                if not block:
                    break
                block = carry + block
                cut = max(block.rfind(b"\n"), block.rfind(b"\r"))
                if cut == len(block) - 1 and block.endswith(b"\r"):
                    cut = block.rfind(b"\n", 0, cut)  # "\r" may start a "\r\n" that the next block ends
                if cut < 0:
                    carry = block
                    continue
                carry = block[cut + 1:]
                yield _split_lines(block[: cut + 1], trailing_newline=True)
            if carry:
                yield _split_lines(carry, trailing_newline=False)


def _split_lines(text: bytes, trailing_newline: bool) -> pa.Array:
    try:
        arr = pa.array([text], pa.large_binary()).cast(pa.large_string())
    except pa.ArrowInvalid as e:
        raise NgramIndexError(f"training text is not valid UTF-8: {e}") from e
    lines = pc.split_pattern_regex(arr, _NEWLINE).flatten()
    return lines.slice(0, len(lines) - 1) if trailing_newline else lines  # the empty piece after the last line end


def tokenize_lines(lines: "list[str] | pa.Array", eos: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(token hashes, tokens per line) of whitespace-split lines, with ``eos`` after every line if given.
    Split in Arrow (its whitespace is Python's ``str.split``'s) and hashed over the tokens' bytes at once."""
    if not isinstance(lines, (pa.Array, pa.ChunkedArray)):
        lines = pa.array(lines, pa.large_string())
    split = pc.utf8_split_whitespace(lines)
    flat = split.flatten()
    keep = pc.greater(pc.binary_length(flat), 0)  # Arrow keeps empty strings around leading/trailing whitespace
    parents = pc.list_parent_indices(split).to_numpy(zero_copy_only=False)
    lengths = np.bincount(parents[keep.to_numpy(zero_copy_only=False)], minlength=len(lines)).astype(np.int64)
    tokens = hash_strings(pc.filter(flat, keep))
    if eos is not None:
        tokens = np.insert(tokens, np.cumsum(lengths), TokenHasher()([eos])[0])
        lengths = lengths + 1
    return tokens, lengths


def _line_batches(lines: Iterable[str], chunk_chars: int) -> Iterator[pa.Array]:
    pending, chars = [], 0
    for line in lines:
        pending.append(line)
        chars += len(line)
        if chars >= chunk_chars:
            yield pa.array(pending, pa.large_string())
            pending, chars = [], 0
    if pending:
        yield pa.array(pending, pa.large_string())


def build_index_from_files(paths: Iterable[str | Path], out: str | Path, **options) -> "NgramIndex":
    """``build_index`` on text files, read and split into lines in Arrow (the fast path for big corpora)."""
    return build_index(None, out, batches=read_line_batches(paths), **options)


def build_index(lines: Iterable[str] | None, out: str | Path, max_n: int = 10, num_shards: int = 16,
                eos: str | None = None, cross_lines: bool = True, chunk_tokens: int = 1_000_000,
                memory_budget_mb: int = 256, progress: bool = False,
                batches: Iterable[pa.Array] | None = None) -> "NgramIndex":
    """Stream ``lines`` (one text per line, whitespace tokens; or ``batches``, Arrow arrays of lines) into a new
    index folder ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise NgramIndexError(f"{out}: not empty; an index is built into a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    meta = IndexMeta(FORMAT, VERSION, max_n, num_shards, eos, cross_lines)
    tmp = Path(tempfile.mkdtemp(prefix="ngram-runs-", dir=out))
    buffers = _ShardBuffers(num_shards, tmp, memory_budget_mb * 2**20)
    carry = np.empty(0, dtype=np.uint64)  # the last max_n - 1 tokens of the stream (cross_lines)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="index n-grams", unit=" tokens", unit_scale=True, mininterval=2)
    chunk_chars = 6 * chunk_tokens  # about chunk_tokens tokens of Arabic text (a batch may be larger)
    for batch in batches if batches is not None else _line_batches(lines, chunk_chars):
        step = max(1, len(batch) * chunk_chars // max(1, batch.nbytes))  # rows of about chunk_chars
        for piece in (batch.slice(i, step) for i in range(0, len(batch), step)):
            toks, lengths = tokenize_lines(piece, eos)
            meta.lines += len(piece)
            meta.tokens += int(toks.size)
            if bar is not None:
                bar.update(int(toks.size))
            if cross_lines:
                seq = np.concatenate([carry, toks])
                for h in iter_ngram_hashes(seq, max_n):
                    buffers.add(h)
                if max_n > 1 and seq.size:
                    carry = seq[-(max_n - 1):]
            else:
                line_id = np.repeat(np.arange(lengths.size), lengths)
                for n, h in enumerate(iter_ngram_hashes(toks, max_n), 1):
                    if h.size:
                        buffers.add(h[line_id[: h.size] == line_id[n - 1:]])
    if bar is not None:
        bar.close()
    sizes = []
    for k in range(num_shards):
        shard = buffers.merge(k)
        np.save(out / f"shard-{k:05d}.npy", shard)
        sizes.append(int(shard.size))
    shutil.rmtree(tmp)
    meta.shard_sizes, meta.distinct = sizes, int(sum(sizes))
    (out / "meta.json").write_text(json.dumps(asdict(meta), ensure_ascii=False, indent=1), encoding="utf-8")
    return NgramIndex(out)


class NgramIndex:
    """A built index folder, opened for membership queries. A query sorts its hashes and reads each shard it needs
    once, one shard in memory at a time (``cache=True`` keeps the shards loaded, for many small queries)."""

    def __init__(self, folder: str | Path, cache: bool = False):
        self.folder, self.cache = Path(folder), cache
        path = self.folder / "meta.json"
        if not path.exists():
            raise NgramIndexError(f"{self.folder}: no meta.json; not an n-gram index (build one with --train)")
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT or raw.get("version") != VERSION:
            raise NgramIndexError(f"{self.folder}: format {raw.get('format')} v{raw.get('version')}, "
                              f"expected {FORMAT} v{VERSION}")
        self.meta = IndexMeta(**raw)
        self.bounds = _boundaries(self.meta.num_shards)
        self._shards: dict[int, np.ndarray] = {}

    @property
    def max_n(self) -> int:
        return self.meta.max_n

    def _shard(self, k: int) -> np.ndarray:
        shard = self._shards.get(k)
        if shard is None:
            shard = np.load(self.folder / f"shard-{k:05d}.npy")  # one sequential read
            if self.cache:
                self._shards[k] = shard
        return shard

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean array: is each n-gram hash in the index?"""
        hashes = np.asarray(hashes, dtype=np.uint64)
        found = np.zeros(hashes.shape, dtype=bool)
        if not hashes.size:
            return found
        order = query_order(hashes)
        sorted_h = hashes[order]
        cuts = np.searchsorted(sorted_h >> np.uint64(_ORDER_BITS), self.bounds[1:] >> np.uint64(_ORDER_BITS))
        start = 0
        for k, end in enumerate(list(cuts) + [sorted_h.size]):
            if end > start:
                shard = self._shard(k)
                part = sorted_h[start:end]
                if shard.size:
                    pos = np.searchsorted(shard, part)
                    pos[pos == shard.size] = shard.size - 1
                    found[order[start:end]] = shard[pos] == part
            start = end
        return found

    @contextmanager
    def cached(self):
        """Keep the shards loaded for the duration of a ``with`` block (several queries in a row)."""
        before = self.cache
        self.cache = True
        try:
            yield self
        finally:
            self.cache = before
            if not before:
                self._shards.clear()

    def close(self) -> None:
        self._shards.clear()
