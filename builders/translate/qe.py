"""CometKiwi quality estimation, ported onto our transformers (no unbabel-comet at run time).

unbabel-comet 2.2.7 pins numpy<2, transformers<5 and huggingface-hub<1 and fails at inference on transformers 5,
so this module reimplements the inference path of its ``UnifiedMetric`` (the class of CometKiwi checkpoints),
written from reading comet's source, and loads the official checkpoint layout unchanged:

    <model>/hparams.yaml               class_identifier: unified_metric (+ the training hyper-parameters)
    <model>/checkpoints/model.ckpt     a Lightning checkpoint: state_dict + hyper_parameters

What comet does at inference, and so what this does:

1. hyper-parameters come from the checkpoint (comet reads ``hparams.yaml`` only for the class, and for the 2.2.4+
   workaround where ``layer_transformation: sparsemax_patch`` there means softmax);
2. the encoder (``XLM-RoBERTa`` -> ``XLMRobertaModel``, ``XLM-RoBERTa-XL`` -> ``XLMRobertaXLModel``) is built from
   the config and tokenizer of ``pretrained_model`` and gets its weights from the checkpoint;
3. ``mt`` and ``src`` are tokenised separately (truncated to ``max_position_embeddings - 4`` tokens), their special
   tokens dropped and joined as ``<s> mt </s></s> src </s>`` (cut at ``max_position_embeddings - 2`` tokens when
   too long); the translation comes first;
4. all hidden states (embeddings + every layer) are mixed by layer-wise attention: softmax or sparsemax of one
   scalar per layer, times ``gamma``, each layer optionally normalised over its unmasked positions;
5. the first token's vector goes through the feed-forward estimator (Linear/activation/Dropout blocks, then a
   Linear to one score).

The test ``test_translate_qe.py`` checks scores against unbabel-comet's own ``predict`` on the same random
checkpoints (tolerance 1e-4), comet running in its own pinned venv.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from builders.translate import DEFAULT_QE_MODEL
from builders.translate.batching import length_batches, run_with_backoff
from builders.translate.cache import SegmentCache, cache_key
from builders.translate.models import ResolvedModel, resolve

# UnifiedMetric's defaults (comet/models/multitask/unified_metric.py), for keys a checkpoint leaves out
UNIFIED_DEFAULTS = {
    "encoder_model": "XLM-RoBERTa",
    "pretrained_model": "microsoft/infoxlm-large",
    "sent_layer": "mix",
    "layer_transformation": "sparsemax",
    "layer_norm": True,
    "dropout": 0.1,
    "hidden_sizes": [3072, 1024],
    "activations": "Tanh",
    "final_activation": None,
    "input_segments": ["mt", "src", "ref"],
}
ENCODERS = {"XLM-RoBERTa": "XLMRobertaModel", "XLM-RoBERTa-XL": "XLMRobertaXLModel"}


class QEError(ValueError):
    """A QE model that cannot be loaded (wrong layout, unsupported class or encoder). Names the file."""


def sparsemax(x, dim: int = 0):
    """Sparsemax (Martins & Astudillo, 2016): the Euclidean projection of ``x`` onto the simplex."""
    import torch

    z = torch.sort(x, dim=dim, descending=True).values
    k = torch.arange(1, x.size(dim) + 1, device=x.device, dtype=x.dtype)
    shape = [1] * x.dim()
    shape[dim] = -1
    k = k.view(shape)
    cumsum = z.cumsum(dim) - 1
    support = (k * z) > cumsum
    k_z = support.sum(dim=dim, keepdim=True)
    tau = cumsum.gather(dim, k_z - 1) / k_z.to(x.dtype)
    return torch.clamp(x - tau, min=0)


def _load_checkpoint(folder: Path) -> tuple[dict, dict, dict]:
    """(state_dict, hyper_parameters, hparams.yaml) of a comet model folder."""
    import torch

    ckpt_path, hparams_path = folder / "checkpoints" / "model.ckpt", folder / "hparams.yaml"
    if not ckpt_path.is_file():
        raise QEError(f"{folder}: no checkpoints/model.ckpt (a comet model folder has checkpoints/model.ckpt + hparams.yaml)")
    if not hparams_path.is_file():
        raise QEError(f"{folder}: no hparams.yaml beside checkpoints/")
    yaml_hparams = yaml.safe_load(hparams_path.read_text(encoding="utf-8")) or {}
    # weights_only: a checkpoint is a pickle; only tensors and plain containers are accepted
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt)
    return state, dict(ckpt.get("hyper_parameters") or yaml_hparams), yaml_hparams


@dataclass
class QEOptions:
    batch_size: int = 16  # comet's predict default
    max_batch_tokens: int = 16384  # padded tokens per batch (the joined mt+src sequences)
    precision: str = "float32"  # float32 | float16 | bfloat16 (the encoder; the head runs in float32)


@dataclass
class CometKiwi:
    """A CometKiwi-style ``UnifiedMetric`` checkpoint scoring (source, translation) pairs without references."""

    model: ResolvedModel
    device: str = "cpu"
    options: QEOptions = field(default_factory=QEOptions)
    encoder_path: str | None = None  # overrides the checkpoint's pretrained_model (a local encoder folder)
    stats: dict = field(default_factory=lambda: {"pairs": 0, "batches": 0, "backoffs": 0, "seconds": 0.0})

    def __post_init__(self):
        import torch
        import transformers

        state, hp, yaml_hp = _load_checkpoint(self.model.path)
        where = self.model.path
        if yaml_hp.get("class_identifier", "unified_metric") != "unified_metric":
            raise QEError(f"{where}: class_identifier {yaml_hp.get('class_identifier')!r} is not a CometKiwi "
                          f"(unified_metric) model")
        hp = {**UNIFIED_DEFAULTS, **hp}
        if "src" not in hp["input_segments"]:
            raise QEError(f"{where}: input_segments {hp['input_segments']} has no 'src': not a QE model")
        if hp["sent_layer"] != "mix":
            raise QEError(f"{where}: sent_layer {hp['sent_layer']!r}: only layer-wise attention ('mix') is supported")
        encoder_cls = ENCODERS.get(hp["encoder_model"])
        if encoder_cls is None:
            raise QEError(f"{where}: encoder_model {hp['encoder_model']!r} is not one of {sorted(ENCODERS)}")
        # comet >= 2.2.4: `sparsemax_patch` in hparams.yaml means softmax; otherwise the checkpoint's value
        transform = "softmax" if yaml_hp.get("layer_transformation") == "sparsemax_patch" else hp["layer_transformation"]
        self.transform = "sparsemax" if transform == "sparsemax" else "softmax"
        self.layer_norm = bool(hp["layer_norm"])
        encoder_src = self.encoder_path or _local_or(yaml_hp.get("pretrained_model"), hp["pretrained_model"])
        self.encoder_name = str(encoder_src)
        self.tokenizer = _encoder_tokenizer(str(encoder_src))
        config = transformers.AutoConfig.from_pretrained(str(encoder_src))
        net = getattr(transformers, encoder_cls)(config, add_pooling_layer=False)
        enc_state = {k[len("encoder.model."):]: v for k, v in state.items() if k.startswith("encoder.model.")}
        missing, _ = net.load_state_dict(enc_state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing:
            raise QEError(f"{where}: checkpoint lacks encoder weights {missing[:5]}")
        self.max_positions = config.max_position_embeddings - 2
        self.special = {}
        for token, fallback in (("<s>", config.bos_token_id), ("</s>", config.eos_token_id), ("<pad>", config.pad_token_id)):
            tid = self.tokenizer.token_to_id(token)
            self.special[token] = fallback if tid is None else tid
        dtype = getattr(torch, self.options.precision)
        self.encoder = net.to(self.device, dtype=dtype).eval()
        n_layers = config.num_hidden_layers + 1
        try:
            self.layer_weights = torch.cat([state[f"layerwise_attention.scalar_parameters.{i}"] for i in range(n_layers)])
            self.gamma = state["layerwise_attention.gamma"]
        except KeyError as e:
            raise QEError(f"{where}: checkpoint lacks layer-wise attention weights ({e})") from e
        self.layer_weights, self.gamma = self.layer_weights.float().to(self.device), self.gamma.float().to(self.device)
        self.estimator = self._estimator(state, hp, config.hidden_size).to(self.device).eval()

    def _estimator(self, state: dict, hp: dict, width: int):
        import torch
        from torch import nn

        def activation(name: str):
            if not hasattr(nn, name.title()):
                raise QEError(f"{self.model.path}: unknown activation {name!r}")
            return getattr(nn, name.title())()

        sizes = [width, *hp["hidden_sizes"], 1]
        layers: list = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers += [activation(hp["activations"]), nn.Dropout(hp["dropout"])]
        if hp["final_activation"]:
            layers.append(activation(hp["final_activation"]))
        ff = nn.Sequential(*layers)
        head = {k[len("estimator.ff."):]: v.float() for k, v in state.items() if k.startswith("estimator.ff.")}
        try:
            ff.load_state_dict(head, strict=True)
        except RuntimeError as e:
            raise QEError(f"{self.model.path}: estimator weights do not fit hidden_sizes {hp['hidden_sizes']}: {e}") from e
        return ff.to(torch.float32)

    # ------------------------------------------------------------------------------------ scoring

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def identity(self) -> str:
        return qe_identity(self.model, self.options.precision)

    def _tokens(self, texts: Sequence[str]) -> list[list[int]]:
        self.tokenizer.enable_truncation(self.max_positions - 2)
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def join(self, mt_ids: list[int], src_ids: list[int]) -> list[int]:
        """``<s> mt </s></s> src </s>``, cut at the encoder's positions when too long (as comet does)."""
        a, b = mt_ids[1:-1], src_ids[1:-1]
        cls, sep = self.special["<s>"], self.special["</s>"]
        seq = [cls, *a, sep, sep, *b, sep]
        if len(a) + len(b) > self.max_positions - 5:
            seq = seq[: self.max_positions]
        return seq

    def _forward(self, batch: list[list[int]]) -> list[float]:
        import torch

        width = max(len(x) for x in batch)
        pad = self.special["<pad>"]
        ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch], device=self.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch], device=self.device)
        with torch.inference_mode():
            hidden = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            weights = sparsemax(self.layer_weights) if self.transform == "sparsemax" else torch.softmax(self.layer_weights, 0)
            m = mask.float().unsqueeze(-1)
            n = mask.float().sum(1) * hidden[0].size(-1)
            mixed = 0
            for w, h in zip(weights, hidden):
                h = h.float()
                if self.layer_norm:  # normalise each sequence over its unmasked positions
                    mean = ((h * m).view(h.size(0), -1).sum(1) / n).view(-1, 1, 1)
                    var = (((h * m - mean) * m) ** 2).view(h.size(0), -1).sum(1) / n
                    h = (h - mean) / torch.sqrt(var + 1e-12).view(-1, 1, 1)
                mixed = mixed + w * h
            scores = self.estimator(self.gamma * mixed[:, 0, :]).view(-1)
        return scores.tolist()

    def score(self, sources: Sequence[str], translations: Sequence[str]) -> list[float]:
        """One score per (source, translation) pair, in order."""
        if len(sources) != len(translations):
            raise ValueError(f"{len(sources)} sources but {len(translations)} translations")
        start = time.perf_counter()
        seqs = [self.join(m, s) for m, s in zip(self._tokens(translations), self._tokens(sources))]
        out: list[float] = [0.0] * len(seqs)
        o = self.options
        for batch in length_batches([len(x) for x in seqs], o.max_batch_tokens, o.batch_size):
            scores = run_with_backoff([seqs[i] for i in batch], self._forward, self._count_backoff)
            for i, sc in zip(batch, scores):
                out[i] = sc
            self.stats["batches"] += 1
        self.stats["pairs"] += len(seqs)
        self.stats["seconds"] += time.perf_counter() - start
        return out

    def _count_backoff(self, new_size: int) -> None:
        self.stats["backoffs"] += 1


def _encoder_tokenizer(source: str):
    """The encoder's ``tokenizer.json`` loaded as it is, with the ``tokenizers`` library that comet's
    XLMRobertaTokenizerFast wraps (transformers 5's XLMRobertaTokenizer rebuilds the pipeline from the vocabulary,
    which can split text differently from the file). A repo with only a sentencepiece model goes through
    transformers' conversion."""
    from tokenizers import Tokenizer

    local = Path(source) / "tokenizer.json"
    if not Path(source).is_dir():
        from huggingface_hub import hf_hub_download

        try:
            local = Path(hf_hub_download(source, "tokenizer.json"))
        except Exception:  # no tokenizer.json in the repo (or offline): let transformers find what there is
            local = Path("/nonexistent")
    if local.is_file():
        return Tokenizer.from_file(str(local))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source).backend_tokenizer


def qe_identity(model: ResolvedModel, precision: str) -> str:
    """The QE cache namespace: model id, revision (Hub commit or folder hash) and precision."""
    return f"{model.model_id}@{model.revision}|{precision}"


QE_ALLOW = ["hparams.yaml", "checkpoints/*", "*.md", "LICENSE"]


def _local_or(candidate: str | None, default: str) -> str:
    """hparams.yaml's pretrained_model when it names a local folder (an offline copy of the encoder), else
    the checkpoint's own value (a Hub id, as comet uses it)."""
    return candidate if candidate and Path(candidate).is_dir() else default


def load_qe(model: str = DEFAULT_QE_MODEL, device: str = "cpu", options: QEOptions | None = None,
            encoder: str | None = None, revision: str | None = None) -> CometKiwi:
    """A CometKiwi model from the Hub (gated: accept its license and log in) or a local comet folder."""
    resolved = resolve(model, revision, allow_patterns=QE_ALLOW)
    return CometKiwi(resolved, device=device, options=options or QEOptions(), encoder_path=encoder)


class CachedScorer:
    """A QE model whose scores persist in a ``SegmentCache``: each unique (source, translation) is scored once."""

    def __init__(self, scorer: CometKiwi, cache: SegmentCache):
        self.scorer, self.cache = scorer, cache

    @property
    def model_id(self) -> str:
        return self.scorer.model_id

    def key(self, src: str, mt: str) -> str:
        return cache_key("qe", self.scorer.identity, src, mt)

    def score(self, sources: Sequence[str], translations: Sequence[str]) -> list[float]:
        keys = [self.key(s, t) for s, t in zip(sources, translations)]
        found = self.cache.get_many(keys)
        todo = {k: (s, t) for k, s, t in zip(keys, sources, translations) if k not in found}
        if todo:
            pairs = list(todo.values())
            new = dict(zip(todo, self.scorer.score([p[0] for p in pairs], [p[1] for p in pairs])))
            self.cache.put_many(new)
            found.update(new)
        return [float(found[k]) for k in keys]
