"""Sliding-window perplexity and bits-per-byte of a causal LM on held-out texts.

Each text is tokenised on its own (with the tokenizer's BOS token in front, or its EOS token when it has no BOS,
so the first real token is scored too) and scored in windows of at most ``max_length`` tokens that advance by
``stride``: every token is scored exactly once, in the window where it is new, conditioned on at least
``max_length - stride`` (and at least one) earlier tokens of the same text (the standard strided evaluation;
``stride == max_length`` gives windows that share one token, smaller strides give more context at more cost).

Totals over all texts: ``perplexity = exp(NLL / tokens)`` with NLL in nats, and
``bits_per_byte = NLL / ln(2) / bytes``, ``bytes`` being the UTF-8 size of the texts; bits per byte does not depend
on the tokenizer, so models with different vocabularies compare on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class PerplexityResult:
    nll: float  # total negative log-likelihood, nats
    tokens: int  # scored tokens
    bytes: int  # UTF-8 bytes of the texts
    texts: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens) if self.tokens else float("nan")

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes if self.bytes else float("nan")

    def to_dict(self) -> dict:
        return {"perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte, "nll": self.nll,
                "tokens": self.tokens, "bytes": self.bytes, "texts": self.texts}


def windows(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` per window: tokens ``[first_scored, end)`` are scored with context from
    ``begin``. Position 0 (the BOS) is never scored, and every scored token has at least one token of context in
    its window (so with ``stride == max_length`` consecutive windows share one token)."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 (a token and its context), not {max_length}")
    if not 0 < stride <= max_length:
        raise ValueError(f"stride must be in 1..max_length ({max_length}), not {stride}")
    out, prev_end, begin = [], 1, 0
    while prev_end < n_tokens:
        end = min(begin + max_length, n_tokens)
        out.append((begin, end, prev_end))
        prev_end = end
        begin = min(begin + stride, end - 1)
    return out


def _prefix_id(tokenizer) -> int | None:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def perplexity(model, tokenizer, texts: list[str], max_length: int | None = None, stride: int | None = None,
               batch_size: int = 8, device: str | None = None, progress: bool = False) -> PerplexityResult:
    import torch

    device = device or next(model.parameters()).device
    max_length = max_length or min(getattr(model.config, "max_position_embeddings", None) or 1024, 4096)
    stride = stride or max(1, max_length // 2)
    prefix = _prefix_id(tokenizer)
    jobs = []  # (ids of the window, number of leading context-only positions)
    total_bytes = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = ([prefix] if prefix is not None else []) + list(ids)
        total_bytes += len(text.encode("utf-8"))
        for begin, end, first in windows(len(ids), max_length, stride):
            jobs.append((ids[begin:end], first - begin))
    model.eval()
    nll, scored = 0.0, 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    iterator = range(0, len(jobs), batch_size)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="perplexity", unit=" batches")
    for start in iterator:
        batch = jobs[start:start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        score = torch.zeros((len(batch), width), dtype=torch.bool)  # positions whose token is scored
        for r, (ids, skip) in enumerate(batch):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = 1
            score[r, max(skip, 1): len(ids)] = True
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = input_ids[:, 1:].to(logp.device)
        token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        sel = score[:, 1:].to(logp.device)
        nll -= float(token_logp[sel].sum())
        scored += int(sel.sum())
    return PerplexityResult(nll=nll, tokens=scored, bytes=total_bytes, texts=len(texts))
