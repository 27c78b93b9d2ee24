"""Padding-free packing keeps examples apart. TRL's collator flattens a batch into one row whose position ids
restart at every example; transformers 5 turns those restarts into a block-diagonal causal mask (masking_utils:
find_packed_sequence_indices, used when no 2D attention mask and no cache are given, which is how SFTTrainer calls
the model) for sdpa and eager, and into cu_seqlens for flash-attention. Checked here on the attention
implementation the tiny recipe really uses (sdpa on CPU): every example of a packed batch gets the logits and the
loss it gets alone. The flash-attention path (GPU) cannot run here."""

from __future__ import annotations

import pytest
import torch

from test_train_format import DIALOGUE, PROMPTS, trainer_for


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood of the next token where it is trained (labels != -100)."""
    targets = labels[1:]
    keep = targets != -100
    logp = torch.log_softmax(logits[:-1].float(), dim=-1)
    return -logp[keep].gather(-1, targets[keep][:, None])[:, 0]


def test_a_packed_batch_gives_each_example_the_logits_and_loss_it_gets_alone(tiny_base, tmp_path, single_thread):
    rows = PROMPTS + [{"messages": DIALOGUE}, {"messages": DIALOGUE[:3]}]
    trainer = trainer_for(tiny_base, rows, tmp_path, packing=True, per_device_train_batch_size=len(rows))
    model = trainer.model.eval()
    assert model.config._attn_implementation == "sdpa"  # what the tiny recipe trains with on CPU
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    ids, labels, pos = batch["input_ids"], batch["labels"], batch["position_ids"]
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [pos.shape[1]]
    segments = list(zip(starts, starts[1:]))
    assert len(segments) == len(rows) and ids.shape[0] == 1

    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
        packed_loss = trainer.compute_loss(model, dict(batch))  # the trainer's own loss on the packed batch
        alone_losses = []
        for a, b in segments:
            alone = model(input_ids=ids[:, a:b], use_cache=False).logits[0]
            torch.testing.assert_close(packed[a:b], alone, atol=1e-5, rtol=1e-4)
            alone_losses.append(token_losses(alone, labels[0, a:b]))
        flat = torch.cat(alone_losses)
        torch.testing.assert_close(packed_loss, flat.mean(), atol=1e-5, rtol=1e-5)

        # The control: the same tokens with positions running on across examples. Rotary embeddings are relative,
        # so the only change is that later examples now attend to earlier ones, and their logits move.
        crossed = model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None], use_cache=False).logits[0]
    torch.testing.assert_close(crossed[: segments[0][1]], packed[: segments[0][1]], atol=1e-5, rtol=1e-4)
    for a, b in segments[1:]:
        assert (crossed[a:b] - packed[a:b]).abs().max() > 1e-3
    # The README's warning: with a cache (use_cache defaults to True outside training), transformers 5 does not
    # build the packed mask from the position ids, and examples attend across their boundaries.
    with torch.no_grad():
        cached = model(input_ids=ids, position_ids=pos, use_cache=True).logits[0]
    assert max((cached[a:b] - packed[a:b]).abs().max() for a, b in segments[1:]) > 1e-3


def test_activation_checkpointing_gives_the_same_loss_and_lora_gradients(tiny_base, tmp_path, single_thread):
    """The 7B recipes checkpoint activations: that must change memory only. With LoRA the frozen embeddings give
    the checkpointed blocks inputs that need no grad, which (without TRL/PEFT's input-grad hook) leaves the LoRA
    weights of the checkpointed layers with no gradient at all. One real training step (the Trainer turns
    checkpointing on in train()) with and without it: the same loss and the same nonzero LoRA gradients."""
    from transformers import TrainerCallback

    class Grads(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            self.checkpointing = model.is_activation_checkpointing
            self.grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    rows = PROMPTS + [{"messages": DIALOGUE}]
    seen = {}
    for checkpointing in (False, True):
        (tmp_path / str(checkpointing)).mkdir()
        trainer = trainer_for(tiny_base, rows, tmp_path / str(checkpointing), packing=True, save_strategy="no",
                              per_device_train_batch_size=len(rows), activation_checkpointing=checkpointing)
        grads = Grads()
        trainer.add_callback(grads)
        trainer.train()
        assert grads.checkpointing == checkpointing
        seen[checkpointing] = (trainer.state.log_history[0]["loss"], grads)
    (plain_loss, plain), (ckpt_loss, ckpt) = seen[False], seen[True]
    assert set(ckpt.grads) == set(plain.grads) == ckpt.trainable and any("lora_A" in n for n in ckpt.trainable)
    assert all(g.abs().sum() > 0 for n, g in ckpt.grads.items() if "lora_B" in n and "layers.0." in n)
    assert ckpt_loss == pytest.approx(plain_loss, rel=1e-6)
    for name, g in plain.grads.items():
        torch.testing.assert_close(ckpt.grads[name], g, atol=1e-6, rtol=1e-5)
