"""Translation backends behind one small interface, batched by length, with a persistent segment cache.

``Translator.translate(segments) -> translations`` (same order). Two backends:

- ``MarianTranslator``: transformers ``MarianMTModel.generate`` (float32 on CPU; float16 / bfloat16 on GPU);
- ``CT2Translator``: CTranslate2 (int8 on CPU, float16 on GPU), from a folder made by ``convert``
  (``arabic-prompts translate convert``).

Both sort the segments by token length and cut batches by a token budget, so little padding is computed, and
an out-of-memory error halves the batch and tries again instead of ending the run. ``CachedTranslator`` wraps
either one: each unique normalised segment is translated once per model identity and stored in a
``SegmentCache``.

Helsinki-NLP/opus-mt-en-ar needs a target-language token: its model card (Hub page, checked with the search
tool) says "a sentence initial language token is required in the form of `>>id<<` (id = valid target language
ID)", target languages "acm afb apc apc_Latn ara ara_Latn arq arq_Latn ary arz"; ``>>ara<<`` is Modern Standard
Arabic. The token is prepended when the tokenizer's vocabulary has it (single-target models have none).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builders.translate import DEFAULT_TARGET_TOKEN
from builders.translate.batching import length_batches, run_with_backoff
from builders.translate.cache import SegmentCache, cache_key
from builders.translate.models import ResolvedModel, resolve

CT2_META = "arabic_prompts_mt.json"  # written by `convert` beside the CTranslate2 model: where it came from
TOKENIZER_FILES = ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class DecodeOptions:
    beam_size: int = 4  # Opus-MT's own config.json has num_beams: 4
    max_length: int = 256  # generated tokens at most
    min_length: int = 0  # > 0 only for benchmarks (fixed generation length)
    max_batch_tokens: int = 8192  # padded source tokens per batch
    max_batch_size: int = 64

    def tag(self) -> str:
        return f"beam{self.beam_size}-max{self.max_length}-min{self.min_length}"


@dataclass
class _Base:
    """Tokenisation, length batching and OOM back-off shared by the backends."""

    model: ResolvedModel
    options: DecodeOptions = field(default_factory=DecodeOptions)
    target_token: str | None = DEFAULT_TARGET_TOKEN
    stats: dict = field(default_factory=lambda: {"segments": 0, "batches": 0, "backoffs": 0, "seconds": 0.0})

    def _load_tokenizer(self, path: Path):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path))
        token = self.target_token
        if token:
            tid = tok.convert_tokens_to_ids(token)
            if tid is None or tid == tok.unk_token_id:
                token = None  # a single-target model: no language token in its vocabulary
        self._prefix = f"{token} " if token else ""
        return tok

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def identity(self) -> str:
        """Everything that changes the output: the cache namespace of this translator."""
        return f"{self.model.model_id}@{self.model.revision}|{self.backend_tag}|{self.options.tag()}|{self._prefix.strip()}"

    def encode(self, segments: Sequence[str]) -> list[list[int]]:
        return self.tokenizer([self._prefix + s for s in segments], truncation=True,
                              max_length=self.max_source_tokens)["input_ids"]

    def translate(self, segments: Sequence[str]) -> list[str]:
        """Translations of ``segments`` in order; each distinct segment is decoded once per call."""
        start = time.perf_counter()
        unique = list(dict.fromkeys(segments))
        ids = self.encode(unique)
        out: dict[str, str] = {}
        o = self.options
        for batch in length_batches([len(x) for x in ids], o.max_batch_tokens, o.max_batch_size):
            texts = run_with_backoff([ids[i] for i in batch], self._decode, self._count_backoff)
            out.update(zip((unique[i] for i in batch), texts))
            self.stats["batches"] += 1
        self.stats["segments"] += len(unique)
        self.stats["seconds"] += time.perf_counter() - start
        return [out[s] for s in segments]

    def _count_backoff(self, new_size: int) -> None:
        self.stats["backoffs"] += 1


class MarianTranslator(_Base):
    """transformers MarianMT ``generate``: ``dtype`` float32 (CPU) or float16 / bfloat16 (GPU)."""

    backend_tag = "transformers"

    def __init__(self, model: ResolvedModel | str, options: DecodeOptions | None = None, device: str = "cpu",
                 dtype: str | None = None, target_token: str | None = DEFAULT_TARGET_TOKEN):
        import torch
        from transformers import MarianMTModel

        model = resolve(model) if not isinstance(model, ResolvedModel) else model
        super().__init__(model, options or DecodeOptions(), target_token)
        self.device = device
        self.dtype = dtype or ("float32" if device == "cpu" else "float16")
        self.backend_tag = f"transformers-{self.dtype}"
        self.tokenizer = self._load_tokenizer(model.path)
        self.net = MarianMTModel.from_pretrained(str(model.path), dtype=getattr(torch, self.dtype)).to(device).eval()
        self.max_source_tokens = min(512, self.net.config.max_position_embeddings)

    def _decode(self, batch: list[list[int]]) -> list[str]:
        import torch

        width = max(len(x) for x in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch], device=self.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch], device=self.device)
        o = self.options
        kwargs = {"min_new_tokens": o.min_length} if o.min_length else {}
        # no forced EOS at the length limit: max_length counts generated tokens, as in CTranslate2
        with torch.inference_mode():
            gen = self.net.generate(input_ids=input_ids, attention_mask=mask, num_beams=o.beam_size,
                                    max_new_tokens=o.max_length, do_sample=False, forced_eos_token_id=None,
                                    **kwargs)
        return self.tokenizer.batch_decode(gen, skip_special_tokens=True)


class CT2Translator(_Base):
    """CTranslate2 ``Translator`` on a converted model folder; ``compute_type`` int8 on CPU, float16 on GPU."""

    def __init__(self, model: ResolvedModel | str, options: DecodeOptions | None = None, device: str = "cpu",
                 compute_type: str | None = None, threads: int = 0, target_token: str | None = DEFAULT_TARGET_TOKEN):
        import ctranslate2

        model = resolve(model) if not isinstance(model, ResolvedModel) else model
        meta_path = model.path / CT2_META
        if not (model.path / "model.bin").exists():
            raise ValueError(f"{model.path}: not a CTranslate2 model (no model.bin); make one with "
                             f"`arabic-prompts translate convert --mt-model ID --out DIR`")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        # rows and caches name the model it was converted from
        model = ResolvedModel(model.path, meta.get("model_id", model.model_id),
                              f"{meta.get('revision', model.revision)}+ct2:{meta.get('quantization', '?')}")
        super().__init__(model, options or DecodeOptions(), target_token)
        self.compute_type = compute_type or ("int8" if device == "cpu" else "float16")
        self.backend_tag = f"ctranslate2-{self.compute_type}"
        self.tokenizer = self._load_tokenizer(model.path)
        self.max_source_tokens = 512
        self.net = ctranslate2.Translator(str(model.path), device=device, compute_type=self.compute_type,
                                          intra_threads=threads)

    def _decode(self, batch: list[list[int]]) -> list[str]:
        o = self.options
        tokens = [self.tokenizer.convert_ids_to_tokens(x) for x in batch]
        results = self.net.translate_batch(tokens, beam_size=o.beam_size, max_decoding_length=o.max_length,
                                           min_decoding_length=o.min_length, max_batch_size=len(tokens))
        ids = [self.tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


def convert(model: str, out: str | Path, quantization: str | None = "int8", revision: str | None = None,
            force: bool = False) -> Path:
    """Convert a MarianMT model (Hub id or folder) into a CTranslate2 folder, tokenizer files beside it."""
    import ctranslate2
    from transformers import AutoTokenizer

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ValueError(f"{out} exists and is not empty; pass --force to overwrite it")
    src = resolve(model, revision)
    converter = ctranslate2.converters.TransformersConverter(str(src.path))
    converter.convert(str(out), quantization=quantization, force=force)
    AutoTokenizer.from_pretrained(str(src.path)).save_pretrained(str(out))
    meta = {"model_id": src.model_id, "revision": src.revision, "quantization": quantization or "none",
            "ctranslate2": ctranslate2.__version__}
    (out / CT2_META).write_text(json.dumps(meta, indent=1))
    return out


def load_translator(model: str, backend: str = "transformers", device: str = "cpu", options: DecodeOptions | None = None,
                    precision: str | None = None, threads: int = 0, target_token: str | None = DEFAULT_TARGET_TOKEN):
    """The backend named ``backend`` on ``model`` (for ctranslate2: a converted folder, or a MarianMT model
    that is converted on the fly into a temporary folder)."""
    if backend == "transformers":
        return MarianTranslator(model, options, device=device, dtype=precision, target_token=target_token)
    if backend == "ctranslate2":
        path = Path(model)
        if not (path / "model.bin").exists():
            import tempfile

            quant = precision or ("int8" if device == "cpu" else "float16")
            path = convert(model, Path(tempfile.mkdtemp(prefix="arabic-prompts-ct2-")) / "model", quantization=quant)
        return CT2Translator(str(path), options, device=device, compute_type=precision, threads=threads,
                             target_token=target_token)
    raise ValueError(f"--mt-backend must be transformers or ctranslate2, not {backend!r}")


class CachedTranslator:
    """A translator whose results persist in a ``SegmentCache``: only segments never seen are decoded."""

    def __init__(self, translator, cache: SegmentCache):
        self.translator, self.cache = translator, cache

    @property
    def model_id(self) -> str:
        return self.translator.model_id

    @property
    def identity(self) -> str:
        return self.translator.identity

    def key(self, segment: str) -> str:
        return cache_key("mt", self.translator.identity, segment)

    def translate(self, segments: Sequence[str]) -> list[str]:
        keys = {s: self.key(s) for s in dict.fromkeys(segments)}
        found = self.cache.get_many(keys.values())
        todo = [s for s, k in keys.items() if k not in found]
        if todo:
            new = dict(zip((keys[s] for s in todo), self.translator.translate(todo)))
            self.cache.put_many(new)
            found.update(new)
        return [found[keys[s]] for s in segments]
