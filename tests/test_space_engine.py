"""The Space's model side (space/chat_engine.py) on a tiny random Qwen2 + LoRA adapter built in-process:
loading, prompts that fit the window, notices, streaming, Stop, errors, secrets. The page itself is driven in
a real browser by test_space_ui.py."""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from fnmatch import fnmatch
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "space"))

import chat_engine as ce  # noqa: E402


@pytest.fixture(scope="module")
def engine(tiny_chat_model):
    base, adapter = tiny_chat_model
    return ce.load_engine(ce.Settings(base_model=str(base), adapter=str(adapter), test_token_delay=0.01))


def _settings(engine, **changes):
    return dataclasses.replace(engine.settings, **changes)


def _history(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out += [{"role": "user", "content": [{"type": "text", "text": f"سؤال رقم {i} عن المدن العربية"}]},
                {"role": "assistant", "content": f"جواب رقم {i} عن المدن العربية"}]
    return out


def test_load_engine_takes_the_adapters_base_and_chat_template(tiny_chat_model, monkeypatch, caplog):
    from peft import PeftModel

    base, adapter = tiny_chat_model
    monkeypatch.delenv("BASE_MODEL", raising=False)
    monkeypatch.setenv("ADAPTER", str(adapter))
    eng = ce.load_engine(ce.Settings.from_env())
    assert isinstance(eng.model, PeftModel) and ce.Settings.from_env().base_model is None
    assert eng.settings.base_model == str(base)  # read from adapter_config.json's base_model_name_or_path
    assert "<|im_start|>" in eng.tokenizer.chat_template and "LoRA" in eng.description
    assert eng.context_tokens == 1024 and eng.tokenizer.convert_tokens_to_ids("<|im_end|>") in eng.eos_token_ids

    monkeypatch.delenv("ADAPTER")
    monkeypatch.setenv("BASE_MODEL", str(base))
    with caplog.at_level(logging.WARNING, logger="arabic_prompts_space"):
        bare = ce.load_engine(ce.Settings.from_env())
    assert not isinstance(bare.model, PeftModel) and "no adapter" in bare.description
    assert "ADAPTER is not set" in caplog.text


def test_base_model_is_base_model_else_the_adapters_base_else_qwen2_7b(tiny_chat_model, tmp_path):
    base, adapter = tiny_chat_model
    assert ce.resolve_base_model("org/merged", adapter) == "org/merged"
    assert ce.resolve_base_model(None, adapter) == str(base)
    assert ce.resolve_base_model(None, None) == "Qwen/Qwen2-7B"
    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": null}')
    assert ce.resolve_base_model(None, tmp_path) == "Qwen/Qwen2-7B"


def test_load_refuses_weights_that_are_not_safetensors(tiny_chat_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    base, _ = tiny_chat_model
    pickled = tmp_path / "pickled"  # the same model as a pickle (pytorch_model.bin), which loading must refuse
    pickled.mkdir()
    torch.save(load_file(base / "model.safetensors"), pickled / "pytorch_model.bin")
    for f in base.iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    assert not list(pickled.glob("*.safetensors")) and list(pickled.glob("*.bin"))
    with pytest.raises(OSError, match="safetensors"):
        ce.load_engine(ce.Settings(base_model=str(pickled)))


def test_adapters_load_from_safetensors_only(tiny_chat_model, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub
    import torch
    from safetensors.torch import load_file

    base, adapter = tiny_chat_model
    pickled = tmp_path / "pickled_adapter"  # the same adapter as adapter_model.bin, which PEFT alone would load
    shutil.copytree(adapter, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(adapter / "adapter_model.safetensors"), pickled / "adapter_model.bin")
    with pytest.raises(ValueError, match="no adapter_model.safetensors"):
        ce.load_engine(ce.Settings(base_model=str(base), adapter=str(pickled)))
    # a Hub id is downloaded without pickles (the Hub is mocked: it cannot be reached here)
    asked = {}

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        asked.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(pickled)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(ValueError, match="ADAPTER org/adapter: no adapter_model.safetensors"):
        ce.adapter_folder("org/adapter")
    patterns = asked["allow_patterns"]
    assert asked["repo_id"] == "org/adapter" and any(fnmatch("adapter_model.safetensors", p) for p in patterns)
    assert not any(fnmatch(f, p) for p in patterns for f in ("adapter_model.bin", "training_args.bin", "x.pt"))
    assert ce.adapter_folder(str(adapter)) == adapter
    with pytest.raises(ValueError, match="no such folder, and not a Hub id"):
        ce.adapter_folder(str(tmp_path / "missing"))


def test_history_is_truncated_oldest_first_and_the_system_prompt_kept(engine):
    eng = dataclasses.replace(engine, context_tokens=160)
    prompt = eng.build_prompt("أنت مساعد دقيق", _history(12), "ما عاصمة الأردن؟", max_new_tokens=40)
    text = eng.tokenizer.decode(prompt.input_ids)
    assert len(prompt.input_ids) + prompt.max_new_tokens <= 160 and prompt.dropped_turns > 0
    assert text.startswith("<|im_start|>system\nأنت مساعد دقيق") and "ما عاصمة الأردن؟" in text
    kept = 12 - prompt.dropped_turns
    assert "سؤال رقم 11 " in text and f"سؤال رقم {12 - kept} " in text  # the newest turns stay...
    assert f"سؤال رقم {12 - kept - 1} " not in text and "سؤال رقم 0 " not in text  # ...the oldest go
    # one more turn would not have fitted
    longer = eng.encode([{"role": "system", "content": "أنت مساعد دقيق"}]
                        + [m for t in ce.conversation_turns(_history(12))[-(kept + 1):] for m in t]
                        + [{"role": "user", "content": "ما عاصمة الأردن؟"}])
    assert len(longer) + 40 > 160
    full = engine.build_prompt("أنت مساعد دقيق", _history(3), "ما عاصمة الأردن؟", max_new_tokens=40)
    assert full.dropped_turns == 0 and "سؤال رقم 0 " in engine.tokenizer.decode(full.input_ids)


def test_a_message_that_cannot_fit_gets_a_notice_not_a_crash(engine):
    eng = dataclasses.replace(engine, context_tokens=64)
    out = list(ce.reply_stream(eng, "كلمة " * 60, [], "", 0.7, 0.9, 20))
    assert len(out) == 1 and out[0].startswith(ce.NOTICE) and "context window" in out[0] and "السياق" in out[0]


def test_notices_and_the_messages_they_refused_never_reach_the_model():
    history = [{"role": "user", "content": "مرحبا"}, {"role": "assistant", "content": "أهلًا"},
               {"role": "user", "content": "نص طويل جدًا " * 500},
               {"role": "assistant", "content": ce.too_long_notice(6500, 4000)},
               {"role": "user", "content": [{"type": "text", "text": "وكيف حالك؟"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "بخير"}]}]
    assert ce.conversation_turns(history) == [
        [{"role": "user", "content": "مرحبا"}, {"role": "assistant", "content": "أهلًا"}],
        [{"role": "user", "content": "وكيف حالك؟"}, {"role": "assistant", "content": "بخير"}]]


def test_empty_and_over_long_messages_get_bilingual_notices_and_no_generation(engine):
    eng = dataclasses.replace(engine, settings=_settings(engine, max_input_chars=50), last=None)
    (empty,) = ce.reply_stream(eng, "   ", [], "", 0.7, 0.9, 20)
    (long,) = ce.reply_stream(eng, "ا" * 51, [], "", 0.7, 0.9, 20)
    assert empty.startswith(ce.NOTICE) and "فارغة" in empty and "empty" in empty
    assert long.startswith(ce.NOTICE) and "طويلة جدًا" in long and "Message too long: 51 characters" in long
    assert "50" in long and eng.last is None  # nothing was generated


def test_stream_grows_and_stop_ends_generation_and_its_thread(engine):
    eng = dataclasses.replace(engine, settings=_settings(engine, test_token_delay=0.02, throttle_s=0.0))
    stop = threading.Event()
    replies = []
    for reply in ce.reply_stream(eng, "اكتب قصة طويلة", [], "", 0.8, 0.9, 500, stop):
        replies.append(reply)
        if len(replies) == 5:
            stop.set()
    record = eng.last
    assert len(replies) >= 5 and all(len(a) <= len(b) for a, b in zip(replies, replies[1:]))
    assert record.stopped and not record.thread_alive and 0 < record.tokens < 100
    assert not [t for t in threading.enumerate() if t.name == f"generate-{record.id}"]
    time.sleep(0.3)
    assert eng.last.tokens == record.tokens  # nothing produced after the stop


def test_closing_the_stream_ends_the_generate_thread(engine):
    """What Gradio does when a visitor presses Stop or leaves: it closes the generator."""
    eng = dataclasses.replace(engine, settings=_settings(engine, test_token_delay=0.02, throttle_s=0.0))
    gen = ce.reply_stream(eng, "اكتب قصة طويلة", [], "", 0.8, 0.9, 500)
    for _ in range(3):
        next(gen)
    gen.close()
    assert eng.last.stopped and not eng.last.thread_alive and eng.last.tokens < 100


def test_updates_are_throttled_and_the_final_reply_is_complete(engine):
    eng = dataclasses.replace(engine, settings=_settings(engine, test_token_delay=0.01, throttle_s=0.1))
    replies = list(ce.reply_stream(eng, "مرحبا", [], "", 0.8, 0.9, 60))
    pieces = list(eng.stream(eng.build_prompt("", [], "مرحبا", 60), temperature=0.0, top_p=1.0))
    assert eng.last.tokens == 60 and len(pieces) > 10  # unthrottled: a piece per word or so
    assert 1 < len(replies) < 0.6 * len(pieces)  # throttled: ~0.6 s of generation, one update per 0.1 s
    assert replies[-1] and not replies[-1].startswith(ce.NOTICE)


def test_greedy_decoding_is_deterministic(engine):
    prompt = engine.build_prompt("", [], "مرحبا", 30)
    a = "".join(engine.stream(prompt, temperature=0.0, top_p=1.0))
    b = "".join(engine.stream(prompt, temperature=0.0, top_p=1.0))
    assert a and a == b


def test_generation_errors_become_a_notice_and_are_logged_without_secrets(engine, monkeypatch, caplog):
    secret = "hf_" + "abcdefghijklmnop1234"
    monkeypatch.setenv("HF_TOKEN", secret)

    class Broken:
        def generate(self, **kwargs):
            raise RuntimeError(f"CUDA out of memory (token {secret})")

    eng = dataclasses.replace(engine, model=Broken())
    handler_filter = ce.RedactingFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="arabic_prompts_space"):
            replies = list(ce.reply_stream(eng, "مرحبا", [], "", 0.7, 0.9, 20))
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert replies == [ce.error_notice()] and "حدث خطأ" in replies[0] and "went wrong" in replies[0]
    assert "CUDA out of memory" in caplog.text and secret not in caplog.text and "***" in caplog.text
    assert eng.last.error and secret not in eng.last.error and not eng.last.thread_alive


def test_redact_masks_the_token_and_token_shaped_strings(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "my-own-token-value")
    assert ce.redact("auth my-own-token-value and hf_AbCdEfGh12345678") == "auth *** and hf_***"


def test_settings_from_env(monkeypatch):
    for k, v in {"BASE_MODEL": "", "ADAPTER": "  ", "MAX_INPUT_CHARS": "123", "CONCURRENCY": "0",
                 "STREAM_THROTTLE_S": "0.2", "SPACE_TEST_TOKEN_DELAY": ""}.items():
        monkeypatch.setenv(k, v)
    s = ce.Settings.from_env()
    assert (s.base_model, s.adapter, s.max_input_chars, s.concurrency, s.throttle_s, s.test_token_delay) == \
        (None, None, 123, 1, 0.2, 0.0)
    monkeypatch.setenv("MAX_INPUT_CHARS", "many")
    with pytest.raises(ValueError, match="MAX_INPUT_CHARS must be an integer"):
        ce.Settings.from_env()


def test_stop_registry_stops_only_its_own_session():
    reg = ce.StopRegistry()
    a, b = reg.arm("a"), reg.arm("b")
    reg.stop("a")
    assert a.is_set() and not b.is_set()
    reg.release("a", a)
    reg.stop("a")  # nothing armed: no error
    newer = reg.arm("b")
    reg.release("b", b)  # an older generation's release leaves the newer one armed
    reg.stop("b")
    assert newer.is_set() and not b.is_set()
