from local_backends.prompt_format import message_text
from policies.common.message_content import join_parts
from policies.routing.features import content_text

PARTS = [
    {"type": "text", "text": "look at this"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "x"}},
    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}]},
    {"type": "text", "text": ""},
]


def test_join_parts_shapes() -> None:
    upper = lambda p: p.upper() if isinstance(p, str) else ""  # noqa: E731
    assert join_parts(None, upper) == ""
    assert join_parts("as is", upper) == "as is"
    assert join_parts(["a", 1, "b"], upper) == "A\nB"  # empty readings skipped
    assert join_parts(7, upper) == "7"  # other shapes: str() by default
    assert join_parts(7, upper, other=lambda _: "x") == "x"


def test_router_reads_tool_calls_and_results_prompt_format_reads_text_only() -> None:
    assert content_text(PARTS) == "look at this\n{'q': 'x'}\n42"
    assert message_text(PARTS) == "look at this"
    assert content_text({"type": "text", "text": "single part"}) == "single part"
