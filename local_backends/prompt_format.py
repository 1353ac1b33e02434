"""Turn chat messages into a plain completion prompt for base models.

A base GGUF (no chat template) only continues text. Framing the conversation as
Question/Answer pairs and stopping at the next "Question:" makes it produce one
answer. Instruct models don't come here: they use their own chat template.
"""
from __future__ import annotations

from typing import Any

from proxy.message_content import join_parts
from proxy.settings import CompletionPromptFormat


def _text_part(part: Any) -> str:
    if isinstance(part, dict) and part.get("type") in ("text", "input_text"):
        return str(part.get("text", ""))
    return ""


def message_text(content: Any) -> str:
    """OpenAI content may be a string or a list of typed parts; keep the text parts only."""
    return join_parts(content, _text_part)


def build_completion_prompt(messages: list[dict[str, Any]], fmt: CompletionPromptFormat) -> str:
    system = "\n".join(message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    parts: list[str] = [fmt.system_prefix.format(system=system)] if system.strip() else []
    for m in messages:
        role, text = m.get("role"), message_text(m.get("content")).strip()
        if role == "user" or role == "tool":
            parts.append(fmt.user_turn.format(content=text))
        elif role == "assistant":
            parts.append(fmt.assistant_turn.format(content=text))
    parts.append(fmt.answer_prefix)
    return "".join(parts)
