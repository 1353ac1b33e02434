from __future__ import annotations

from local_backends.prompt_format import build_completion_prompt, message_text
from policies.common.settings import CompletionPromptFormat


def test_base_model_prompt_frames_turns_and_ends_with_answer_prefix() -> None:
    fmt = CompletionPromptFormat()
    p = build_completion_prompt(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        ],
        fmt,
    )
    assert p == "Be brief.\n\nQuestion: Hi\nAnswer: Hello!\n\nQuestion: What is 2+2?\nAnswer:"


def test_message_text_handles_parts_and_none() -> None:
    assert message_text(None) == ""
    assert message_text([{"type": "image_url", "image_url": {}}, {"type": "text", "text": "a"}]) == "a"
