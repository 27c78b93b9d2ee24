"""The Space in a real browser: space/app.py runs in its own venv (only space/requirements.txt) on 127.0.0.1
with a tiny random Qwen2 + LoRA adapter, and headless Debian Chromium drives it through Playwright.
Screenshots go to each test's tmp_path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

BOT = '[data-testid="bot"]'
TEXTBOX = "#message textarea"
EXAMPLES = Path(__file__).resolve().parents[1] / "space" / "examples.json"


@pytest.fixture
def page(browser, space_app):
    page = browser.new_page()
    page.goto(space_app.url, wait_until="load")
    page.wait_for_selector(TEXTBOX, timeout=60_000)
    yield page
    page.close()


def bot_texts(page) -> list[str]:
    return page.eval_on_selector_all(BOT, "els => els.map(e => e.innerText.trim())")


def replying(pages) -> list:
    """The pages whose last reply has text."""
    return [p for p in pages if bot_texts(p) and bot_texts(p)[-1]]


def click_stop(page) -> None:
    """Click the Stop button if the page shows one (without waiting: a reply may have ended meanwhile)."""
    page.evaluate("() => document.querySelector('#message [data-testid=stop-button]')?.click()")


def set_max_new_tokens(page, n: int, timeout: float = 30) -> None:
    """Open the settings, type n and leave the field (Enter, then Tab: its change event), until the page holds
    n for a whole second: a page that has only just loaded can put its default back while it starts (seen on a
    loaded machine), and a send right after the keystrokes could carry the old value."""
    box = page.locator("#max-new-tokens input[type=number]")
    deadline, held_since = time.monotonic() + timeout, None
    while True:
        if not box.is_visible():
            page.locator("#settings button.label-wrap").click()  # the settings accordion, closed
            box.wait_for(state="visible", timeout=timeout * 1000)
        if box.input_value() != str(n):
            box.fill(str(n))
            box.press("Enter")
            box.press("Tab")
            held_since = None
        elif held_since is None:
            held_since = time.monotonic()
        elif time.monotonic() - held_since >= 1.0:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"max new tokens {n} did not stay in the page (it holds {box.input_value()!r})")
        time.sleep(0.05)
    time.sleep(0.5)  # the change event's round trip to the server


def send(page, text: str) -> None:
    box = page.locator(TEXTBOX)
    box.fill(text)
    box.press("Enter")


def wait_for(condition, timeout: float = 30, what: str = "condition", interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ended(app, gen_id: int):
    return next((e for e in app.status_lines() if e["event"] == "end" and e["id"] == gen_id), None)


def last_started(app) -> int:
    return max((e["id"] for e in app.status_lines() if e["event"] == "start"), default=0)


def direction(page, selector: str) -> tuple[str | None, str | None]:
    return tuple(page.eval_on_selector(selector, "e => [e.getAttribute('dir'), getComputedStyle(e).direction]"))


def test_space_page_is_right_to_left(page, tmp_path):
    assert page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["rtl", "ar"]
    for selector in ("#chat", TEXTBOX):  # the chat area and the textbox carry dir=rtl themselves
        assert direction(page, selector) == ("rtl", "rtl"), selector
    # the examples (real test prompts, labelled by task family) sit in the chat area, right to left
    labels = page.eval_on_selector_all("#chat button.example", "els => els.map(e => e.innerText)")
    assert any("تحليل المشاعر" in t for t in labels) and any("الشعر" in t for t in labels), labels
    assert page.eval_on_selector("#chat button.example", "e => getComputedStyle(e).direction") == "rtl"
    page.locator("#settings button.label-wrap").click()  # the controls' accordion
    page.wait_for_selector("#system-prompt textarea", state="visible")
    for selector in ("body", ".gradio-container", "#title", "#model-banner", "#settings", "#chat label",
                     "#temperature", "#top-p", "#max-new-tokens", "#system-prompt label"):
        assert direction(page, selector)[1] == "rtl", selector
    assert direction(page, "#system-prompt textarea") == ("rtl", "rtl")
    # the labels read right to left: the Arabic label text starts at the right edge of its control
    box = page.eval_on_selector("#temperature", "e => e.getBoundingClientRect().right")
    label = page.eval_on_selector("#temperature [data-testid=block-info]", "e => e.getBoundingClientRect().right")
    assert box - label < 40, (box, label)
    page.screenshot(path=tmp_path / "rtl_page.png", full_page=True)
    # an example fills the textbox with its prompt (a real test prompt), ready to read, edit and send
    page.locator("#chat button.example").first.click()
    first = json.loads(EXAMPLES.read_text(encoding="utf-8"))["examples"][0]["text"]
    wait_for(lambda: page.locator(TEXTBOX).input_value() == first, 10, "the example in the textbox")


def test_space_streams_a_reply_and_stop_ends_generation(page, space_app, tmp_path):
    # 1. an Arabic message (with an English tail): the reply grows in the page, update after update
    first = last_started(space_app) + 1
    send(page, "ما عاصمة مصر؟ وما أشهر معالمها؟ What is the capital of Egypt?")
    seen, shot = [], False
    while not ended(space_app, first):
        texts = bot_texts(page)
        if texts and texts[-1] and (not seen or texts[-1] != seen[-1]):
            seen.append(texts[-1])
            if len(seen) == 2 and not shot:
                page.screenshot(path=tmp_path / "streaming.png", full_page=True)
                shot = True
        time.sleep(0.03)
        assert len(seen) < 10_000
    lengths = [len(t) for t in seen]
    assert len(seen) >= 2 and lengths == sorted(lengths), lengths  # at least two growing steps
    assert ended(space_app, first)["tokens"] == 40 and not ended(space_app, first)["stopped"]
    user = page.eval_on_selector_all('[data-testid="user"]', "els => els.map(e => e.innerText)")
    assert user and "What is the capital of Egypt?" in user[-1]
    # mixed Arabic/English: each paragraph takes the direction of its own first letter
    assert page.eval_on_selector(f"{BOT} p", "e => getComputedStyle(e).unicodeBidi") == "plaintext"

    # 2. a long reply, stopped midway with the Stop button: generation ends and nothing more arrives
    set_max_new_tokens(page, 400)
    second = last_started(space_app) + 1
    send(page, "اكتب قصيدة طويلة عن البحر")
    wait_for(lambda: len(bot_texts(page)) == 2 and bot_texts(page)[-1], 30, "the second reply to start")
    time.sleep(0.5)
    page.get_by_role("button", name="إيقاف").click()
    end = wait_for(lambda: ended(space_app, second), 15, "the stopped generation to end")
    assert end["stopped"] and not end["thread_alive"] and 0 < end["tokens"] < 400, end
    start = next(e for e in space_app.status_lines() if e["event"] == "start" and e["id"] == second)
    assert start["max_new_tokens"] == 400  # the control reached the model
    assert end["time"] - start["time"] < 0.05 * 400 / 2  # stopped well before the reply would have finished
    shown = bot_texts(page)[-1]
    time.sleep(1.5)
    assert bot_texts(page)[-1] == shown  # no further tokens in the page...
    assert last_started(space_app) == second and ended(space_app, second) == end  # ...or in the background
    page.screenshot(path=tmp_path / "stopped.png", full_page=True)
    assert page.get_by_role("button", name="إرسال").is_visible()  # ready for the next message


def test_space_answers_over_long_and_empty_input_with_a_notice(page, space_app, tmp_path):
    send(page, "هذه رسالة طويلة جدًا تتجاوز الحد المسموح به. " * 10)  # > MAX_INPUT_CHARS=300
    notice = wait_for(lambda: (bot_texts(page) or [""])[-1], 20, "the notice")
    assert "الرسالة طويلة جدًا" in notice and "Message too long" in notice and "the limit is 300" in notice
    page.screenshot(path=tmp_path / "too_long.png", full_page=True)
    before = last_started(space_app)
    send(page, "   ")
    time.sleep(1.0)
    replies = bot_texts(page)
    assert len(replies) == 1 or "فارغة" in replies[-1]  # Gradio either ignores it or we answer with a notice
    assert last_started(space_app) == before  # no generation for either message
    # the app is still serving: a normal message gets a streamed reply
    send(page, "مرحبا")
    wait_for(lambda: last_started(space_app) == before + 1 and ended(space_app, before + 1), 30, "a reply")
    assert space_app.process.poll() is None


def test_space_queue_runs_at_most_concurrency_generations_at_once(browser, space_app):
    """Three visitors at once with CONCURRENCY=2: the third reply waits in the queue until a slot is free.
    Replies are long (400 tokens, about 20 s), so the first two overlap however slowly the messages go out on a
    loaded machine; one of them is then stopped, and only then does the third start."""
    before = last_started(space_app)
    pages = []
    try:
        for _ in range(3):
            p = browser.new_page()
            pages.append(p)
            p.goto(space_app.url, wait_until="load")
            p.wait_for_selector(TEXTBOX, timeout=60_000)
            set_max_new_tokens(p, 400)
        for i, p in enumerate(pages):
            send(p, f"الزائر رقم {i + 1}: ما أجمل مدن الشام؟")
        ids = list(range(before + 1, before + 4))
        wait_for(lambda: last_started(space_app) >= ids[1], 60, "two generations to start")
        wait_for(lambda: len(replying(pages)) >= 2, 60, "a token in the first two replies")
        time.sleep(2.0)  # every message has reached the server by now: the third waits
        assert last_started(space_app) == ids[1] and not ended(space_app, ids[0]) and not ended(space_app, ids[1])
        running = replying(pages)
        assert len(running) == 2  # and its visitor sees no reply yet
        click_stop(running[0])
        wait_for(lambda: last_started(space_app) >= ids[2], 30, "the third generation to start")
        wait_for(lambda: len(replying(pages)) == 3, 60, "a token in every reply")
        for p in pages:  # done: stop whatever still runs (one has ended already)
            click_stop(p)
        ends = {i: wait_for(lambda i=i: ended(space_app, i), 30, f"generation {i} to end")["time"] for i in ids}
        started = [e for e in space_app.status_lines() if e["event"] == "start" and e["id"] in ids]
        assert [e["max_new_tokens"] for e in started] == [400] * 3  # every visitor's setting reached the model
        starts = {e["id"]: e["time"] for e in started}
        spans = sorted((starts[i], ends[i]) for i in ids)
        at_once = [sum(1 for s, t in spans if s <= moment < t) for moment, _ in spans]
        assert max(at_once) == 2, spans  # two at once, never three
        assert spans[2][0] >= min(spans[0][1], spans[1][1]), spans  # the third waited for a free slot
        assert len(replying(pages)) == 3  # and every visitor got a reply
    finally:
        for p in pages:
            p.close()


def test_space_log_names_the_model_and_never_the_token(space_app):
    log = space_app.log_text()
    assert "LoRA" in log and "applying the LoRA adapter" in log and "Running on local URL" in log
    assert space_app.secret not in log
