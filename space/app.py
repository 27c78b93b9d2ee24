"""Arabic Prompts chat: a Gradio Space for our LoRA fine-tune of Qwen2-7B, right to left, streamed.

Run it with ``python app.py`` (as Spaces does). Gradio itself reads GRADIO_SERVER_NAME / GRADIO_SERVER_PORT;
the model comes from BASE_MODEL / ADAPTER (see README.md for every variable). The model side is in
chat_engine.py; this file is the page.
"""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

try:  # ZeroGPU: `spaces` must be imported before torch; off ZeroGPU its decorator changes nothing
    import spaces
except ImportError:  # a plain GPU or CPU machine without the package
    spaces = None

import gradio as gr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # chat_engine sits beside this file

from chat_engine import (  # noqa: E402
    Engine,
    Settings,
    StopRegistry,
    load_engine,
    read_examples,
    reply_stream,
    setup_logging,
)

log = logging.getLogger("arabic_prompts_space")

# Right to left for the whole page. Message text is laid out per paragraph by its own first strong letter
# (`unicode-bidi: plaintext`), so an English line or a code block inside an Arabic reply still reads left to right.
# Components without an `rtl` option (accordion, sliders, labels) carry dir="ltr": the rule after the first
# turns them right to left too, leaving code alone.
CSS = """
html, body, gradio-app, .gradio-container { direction: rtl; }
.gradio-container [dir="ltr"]:not(pre):not(code) { direction: rtl; }
.gradio-container { font-family: "Noto Naskh Arabic", "Noto Sans Arabic", "Amiri", "DejaVu Sans", sans-serif; }
.message-wrap .message :is(p, li, h1, h2, h3, h4, blockquote, td, th),
.prose :is(p, li, h1, h2, h3, h4, blockquote, td, th), .example-text, textarea, label span, .info-text {
  unicode-bidi: plaintext; text-align: start;
}
.message-wrap .message { font-size: 1.05rem; line-height: 1.8; }
pre, code { direction: ltr; unicode-bidi: isolate; text-align: left; }
/* sliders run right to left like the page, their filled part too (Gradio paints the fill left to right) */
input[type="range"] { direction: ltr; transform: scaleX(-1); }
/* the chat's corner label and buttons swap sides too (Gradio places them with left/right) */
#chat [data-testid="block-label"] { left: auto; right: 0; }
#chat .top-panel { right: auto; left: var(--block-label-margin); }
#model-banner { border-inline-start: 4px solid var(--color-accent); padding-inline-start: .75rem; }
"""
HEAD = """<script>
  document.documentElement.setAttribute("dir", "rtl");
  document.documentElement.setAttribute("lang", "ar");
</script>"""
JS = """() => {
  document.documentElement.setAttribute("dir", "rtl");
  document.documentElement.setAttribute("lang", "ar");
  document.querySelectorAll(".gradio-container").forEach((el) => el.setAttribute("dir", "rtl"));
}"""

TITLE = "دردشة أوامر عربية"
SUBTITLE = "Arabic Prompts chat: our LoRA fine-tune of Qwen2-7B on Arabic instruction prompts"


def _banner(engine: Engine) -> str:
    base, adapter = engine.settings.base_model, engine.settings.adapter
    dataset = "[arabic-prompts](https://huggingface.co/datasets/arabic-prompts/arabic-prompts)"
    if adapter:
        return (f"النموذج: `{base}` مع محوّل LoRA `{adapter}`، مضبوط على مجموعة {dataset}.\n\n"
                f"Model: `{base}` with the LoRA adapter `{adapter}`, fine-tuned on {dataset}.")
    return (f"⚠️ **لم يُضبط مُحوِّل (ADAPTER)**: هذا هو النموذج الأساسي `{base}` وحده، وليس نموذجنا المضبوط.\n\n"
            f"⚠️ **No adapter configured (ADAPTER is unset)**: this is the base model `{base}` alone, "
            "not our fine-tuned model.")


def build_demo(engine: Engine) -> gr.Blocks:
    """The page: a ChatInterface (messages) with a system prompt, sampling controls and a working Stop."""
    settings = engine.settings
    stops = StopRegistry()

    def respond(message, history, system, temperature, top_p, max_new_tokens, session):
        stop = stops.arm(session)
        try:
            yield from reply_stream(engine, message, history, system, temperature, top_p, max_new_tokens, stop)
        finally:
            stops.release(session, stop)

    if spaces is not None:  # ZeroGPU attaches a GPU for the call; elsewhere this returns `respond` itself
        respond = spaces.GPU(duration=120)(respond)

    examples = read_examples()
    with gr.Blocks(title=f"{TITLE} · Arabic Prompts chat", fill_height=True) as demo:
        gr.Markdown(f"# {TITLE}\n{SUBTITLE}", rtl=True, elem_id="title")
        gr.Markdown(_banner(engine), rtl=True, elem_id="model-banner")
        session = gr.State(lambda: uuid.uuid4().hex)  # one per visitor: whose generation a Stop ends
        chatbot = gr.Chatbot(rtl=True, label="المحادثة", elem_id="chat", height="60vh", render=False,
                             placeholder="اكتب رسالتك بالعربية، أو اختر مثالًا من مهامّ مجموعة البيانات.")
        textbox = gr.Textbox(rtl=True, placeholder="اكتب رسالتك هنا… (Enter للإرسال)", show_label=False,
                             elem_id="message", lines=1, max_lines=8, submit_btn="إرسال", stop_btn="إيقاف",
                             autofocus=True, scale=7, render=False)
        controls = [
            gr.Textbox(settings.system_prompt, label="موجّه النظام (System prompt)", rtl=True, lines=2,
                       elem_id="system-prompt", render=False),
            gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="درجة الحرارة (temperature)", elem_id="temperature",
                      info="0 = توليد جشع (greedy)", render=False),
            gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="أعلى احتمال تراكمي (top-p)", elem_id="top-p", render=False),
            gr.Slider(1, settings.max_new_tokens_limit, value=min(settings.default_max_new_tokens,
                                                                   settings.max_new_tokens_limit),
                      step=1, label="أقصى عدد من الرموز الجديدة (max new tokens)", elem_id="max-new-tokens", render=False),
        ]
        chat = gr.ChatInterface(
            respond,
            chatbot=chatbot,
            textbox=textbox,
            additional_inputs=[*controls, session],
            additional_inputs_accordion=gr.Accordion("الإعدادات (Settings)", open=False, elem_id="settings",
                                                      render=False),
            examples=[[e["text"], None, None, None, None, None] for e in examples] or None,
            example_labels=[e["label"] for e in examples] or None,
            run_examples_on_click=False,  # a click fills the box: read or edit the prompt, then send it
            cache_examples=False,
            concurrency_limit=settings.concurrency,
            fill_height=True,
        )
        # Stop also ends this visitor's generate thread at its next token (Gradio's own cancel closes the
        # generator too, but only once it yields again); queue=False so a Stop never waits behind a full queue.
        chat.textbox.stop(stops.stop, inputs=[session], outputs=None, queue=False, api_visibility="private")
    return demo


def main() -> None:
    setup_logging()
    settings = Settings.from_env()
    engine = load_engine(settings)
    demo = build_demo(engine)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    # no host or port here: Gradio reads GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (as on Spaces)
    demo.launch(css=CSS, head=HEAD, js=JS, show_error=False)


if __name__ == "__main__":
    main()
