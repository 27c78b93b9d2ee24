"""The versioned dialogue prompt: ``prompts/dialogue.yaml`` rendered for one grid cell in the project's Jinja
sandbox (``builders.templates.ENV``: SandboxedEnvironment with StrictUndefined), with the template renderer's
bound on the output's length (``builders.templates._render_bounded``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jinja2
import yaml

from builders.dialogues.grid import Cell
from builders.templates import OutputTooLong, TemplateError, _render_bounded, compile_jinja

PROMPT_FILE = Path(__file__).resolve().parent / "prompts" / "dialogue.yaml"


@dataclass
class DialoguePrompt:
    name: str
    version: int
    jinja: str
    user_label: str
    assistant_label: str
    path: str = ""

    def __getstate__(self) -> dict:  # the compiled template is rebuilt in each datatrove worker
        return {k: v for k, v in self.__dict__.items() if k != "compiled"}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DialoguePrompt":
        path = Path(path) if path else PROMPT_FILE
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            roles = doc["roles"]
            prompt = cls(name=str(doc["name"]), version=int(doc["version"]), jinja=str(doc["jinja"]),
                         user_label=str(roles["user"]), assistant_label=str(roles["assistant"]), path=str(path))
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
            raise TemplateError(f"dialogue prompt {path}: cannot load ({type(e).__name__}: {e}); it needs name, "
                                "version, roles.user, roles.assistant and jinja") from e
        if prompt.user_label == prompt.assistant_label or ":" in prompt.user_label + prompt.assistant_label:
            raise TemplateError(f"dialogue prompt {path}: role labels must differ and contain no ':'")
        prompt.compiled  # syntax errors surface at load time
        return prompt

    @cached_property
    def compiled(self) -> jinja2.Template:
        return compile_jinja(self.jinja, f"dialogue prompt {self.path}")

    @property
    def sha(self) -> str:
        payload = "\x1f".join([self.name, str(self.version), self.jinja, self.user_label, self.assistant_label])
        return hashlib.sha256(payload.encode()).hexdigest()[:8]

    @property
    def prompt_version(self) -> str:
        """Recorded in every row: name, version and a hash of the text (an edit without a bump still shows)."""
        return f"{self.name}-v{self.version}-{self.sha}"

    def render(self, cell: Cell, num_turns: int) -> str:
        variables = {
            "topic_ar": cell.topic.name_ar, "topic_description_ar": cell.topic.description_ar,
            "country_ar": cell.country.name_ar, "dialect_ar": cell.country.dialect_ar, "msa": cell.country.is_msa,
            "num_turns": num_turns, "user_label": self.user_label, "assistant_label": self.assistant_label,
        }
        try:
            return _render_bounded(self.compiled, **variables).strip()
        except (jinja2.exceptions.SecurityError, OutputTooLong) as e:
            raise TemplateError(f"dialogue prompt {self.path}: unsafe template operation blocked: {e}") from e
        except jinja2.exceptions.UndefinedError as e:
            raise TemplateError(f"dialogue prompt {self.path}: {e} (variables: {sorted(variables)})") from e
