"""Length batching and out-of-memory back-off, shared by the MT and QE backends."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def is_oom(error: BaseException) -> bool:
    """A CUDA / CPU allocator out-of-memory error (torch's and CTranslate2's messages)."""
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def length_batches(lengths: Sequence[int], max_tokens: int, max_size: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most ``max_size`` items and ``max_tokens`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = lengths[i]
        if current and (len(current) >= max_size or max(longest, n) * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def run_with_backoff(items: list, fn: Callable[[list], list], on_backoff: Callable[[int], None] | None = None) -> list:
    """``fn(items)``; on out-of-memory, split the batch in halves and retry each (down to one item)."""
    try:
        return fn(items)
    except Exception as e:  # noqa: BLE001 - only OOM is handled, the rest is re-raised
        if not is_oom(e) or len(items) == 1:
            raise
        _free_cuda()
        if on_backoff:
            on_backoff(len(items) // 2)
        half = len(items) // 2
        return run_with_backoff(items[:half], fn, on_backoff) + run_with_backoff(items[half:], fn, on_backoff)


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
