"""The request fields the proxy or LiteLLM reads, per API, as pydantic models: a body that would crash
LiteLLM's handlers or provider layer (a 500, or a fault that cools a deployment down and sends a client's
mistake to a paid fallback) is a 400 naming the field instead.

Lenient where nobody reads: unknown fields are allowed (providers add fields faster than anyone can list
them) and every optional field may be null (SDKs send `"stop": null`). Strict on the types of the fields
that are read: no string for a number, no number for a string, numbers finite (JSON has no NaN; LiteLLM
cannot send one on). Part and block types the providers do not know are left to them to refuse, except in
OpenAI user messages, whose part types LiteLLM itself checks (with a 500). Only the validation matters
here; the validated objects are thrown away.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
)

# --- field types -------------------------------------------------------------------------------------

# LiteLLM writes the model name into response headers: a control character or an edge space there makes
# the HTTP layer drop the connection without an answer. Model names are printable ASCII.
ModelName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[!-~](?:[ -~]*[!-~])?$")]
Number = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
TokenId = Annotated[int, Field(ge=0)]
Obj = dict[str, Any]


def _has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must hold text, not be empty or only whitespace")
    return value


# Anthropic refuses empty text blocks and empty turns (all but a final assistant turn); LiteLLM's adapter for
# other providers drops them, and a conversation left empty fails as a fault (a fallback, a cooldown).
BlockText = Annotated[StrictStr, AfterValidator(_has_text)]
Stop = StrictStr | list[StrictStr] | None


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


# Anthropic's prompt-cache breakpoint, wherever LiteLLM reads one (the request's top level, a message, a content part
# or block, a system block, a tool or an OpenAI tool's function) and passes it on: Anthropic takes two TTLs and
# refuses any other with a 400 after synqra reserved for the call (and the TTL prices the cache writes). Checked for
# models served through Anthropic's API only (cache_ttls.py): other providers' caches spell TTLs their own way.
CACHE_TTLS = ("5m", "1h")


class CacheControl(Shape):
    ttl: Literal["5m", "1h"] | None = None


class Cached(Shape):
    cache_control: CacheControl | None = None


class Body(Shape):
    """Every request body. LiteLLM passes the body on as keyword arguments and reads its own from it: a
    client's credentials for a provider (LiteLLM_Params) must at least be strings."""

    api_key: StrictStr | None = None
    api_base: StrictStr | None = None
    base_url: StrictStr | None = None
    api_version: StrictStr | None = None
    client: None = None  # LiteLLM's HTTP client object: no JSON value is one


# --- OpenAI chat completions ---------------------------------------------------------------------------


class TextPart(Cached):
    type: Literal["text"]
    text: StrictStr


class ImageURL(Shape):
    url: StrictStr
    detail: StrictStr | None = None


class ImagePart(Cached):
    type: Literal["image_url"]
    image_url: StrictStr | ImageURL


class InputAudio(Shape):
    data: StrictStr
    format: StrictStr


class AudioPart(Cached):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(Cached):
    type: Literal["file"]
    file: Obj


class OtherUserPart(Cached):
    """The other part types LiteLLM accepts in a user message (litellm.types.llms.openai.ValidUserMessageContentTypes)."""

    type: Literal["audio_url", "document", "guarded_text", "grounding_source", "query", "video_url"]


class AnyPart(Cached):
    """A part of a non-user message: a typed object (its provider judges the type)."""

    type: StrictStr
    text: StrictStr | None = None


def _tag(value: Any) -> str | None:
    return value.get("type") if isinstance(value, dict) and isinstance(value.get("type"), str) else None


UserPart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ImagePart, Tag("image_url")]
    | Annotated[AudioPart, Tag("input_audio")]
    | Annotated[FilePart, Tag("file")]
    | Annotated[OtherUserPart, Tag("audio_url")]
    | Annotated[OtherUserPart, Tag("document")]
    | Annotated[OtherUserPart, Tag("guarded_text")]
    | Annotated[OtherUserPart, Tag("grounding_source")]
    | Annotated[OtherUserPart, Tag("query")]
    | Annotated[OtherUserPart, Tag("video_url")],
    Discriminator(
        _tag,
        custom_error_type="part_type",
        custom_error_message="a user message's content part must be an object whose 'type' is one of "
        "'text', 'image_url', 'input_audio', 'file', 'audio_url', 'document', 'video_url'",
    ),
]


class FunctionCall(Shape):
    name: StrictStr
    arguments: StrictStr


class ToolCall(Shape):
    id: StrictStr | None = None
    type: StrictStr | None = None
    function: FunctionCall


class UserMessage(Cached):
    role: Literal["user"]
    content: StrictStr | list[UserPart]
    name: StrictStr | None = None


class AssistantMessage(Cached):
    role: Literal["assistant"]
    content: StrictStr | list[AnyPart] | None = None  # null when it holds tool calls
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None


class OtherMessage(Cached):
    role: Literal["system", "developer", "tool", "function"]
    content: StrictStr | list[AnyPart]
    name: StrictStr | None = None
    tool_call_id: StrictStr | None = None


def _role(value: Any) -> str | None:
    role = value.get("role") if isinstance(value, dict) else None
    return role if role in ("user", "assistant") else "other" if isinstance(role, str) else None


ChatMessage = Annotated[
    Annotated[UserMessage, Tag("user")]
    | Annotated[AssistantMessage, Tag("assistant")]
    | Annotated[OtherMessage, Tag("other")],
    Discriminator(
        _role, custom_error_type="message", custom_error_message="a message must be an object with a string 'role'"
    ),
]


class FunctionDef(Cached):
    name: StrictStr
    description: StrictStr | None = None
    parameters: Obj | None = None
    strict: StrictBool | None = None


class ChatTool(Cached):
    type: StrictStr
    function: FunctionDef | None = None


class JsonSchemaFormat(Shape):
    name: StrictStr
    schema_: Obj | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(Shape):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(Shape):
    include_usage: StrictBool | None = None


class Sampling(Body, Cached):
    """Fields every generation API shares."""

    model: ModelName
    stream: StrictBool | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    metadata: Obj | None = None
    user: StrictStr | None = None
    # OpenAI's chat and Responses flag; LiteLLM takes it from any route (and drops it for a provider without it).
    store: StrictBool | None = None


class ChatRequest(Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Count | None = None
    max_completion_tokens: Count | None = None
    n: Count | None = None
    stop: Stop = None
    stream_options: StreamOptions | None = None
    tools: list[ChatTool] | None = None
    tool_choice: StrictStr | Obj | None = None
    functions: list[Obj] | None = None
    function_call: StrictStr | Obj | None = None
    response_format: ResponseFormat | None = None
    seed: StrictInt | None = None
    logprobs: StrictBool | None = None
    top_logprobs: NonNegative | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    logit_bias: Obj | None = None
    parallel_tool_calls: StrictBool | None = None
    reasoning_effort: StrictStr | None = None


# --- Anthropic Messages (and count_tokens) --------------------------------------------------------------


class AnthropicText(Cached):
    type: Literal["text"]
    text: BlockText


class AnthropicSource(Shape):
    type: StrictStr


class AnthropicMedia(Cached):
    type: Literal["image", "document"]
    source: AnthropicSource | None = None  # without one, Anthropic refuses it (tests/integration/test_bad_input.py)


class AnthropicToolUse(Cached):
    type: Literal["tool_use", "server_tool_use"]
    id: StrictStr
    name: StrictStr
    input: Obj


class AnthropicToolResult(Cached):
    type: Literal["tool_result"]
    tool_use_id: StrictStr
    content: StrictStr | list[AnyPart] | None = None
    is_error: StrictBool | None = None


class AnthropicThinking(Cached):
    type: Literal["thinking"]
    thinking: StrictStr
    signature: StrictStr | None = None


class AnthropicOther(Cached):
    type: StrictStr


Block = Annotated[
    Annotated[AnthropicText, Tag("text")]
    | Annotated[AnthropicMedia, Tag("image")]
    | Annotated[AnthropicMedia, Tag("document")]
    | Annotated[AnthropicToolUse, Tag("tool_use")]
    | Annotated[AnthropicToolUse, Tag("server_tool_use")]
    | Annotated[AnthropicToolResult, Tag("tool_result")]
    | Annotated[AnthropicThinking, Tag("thinking")]
    | Annotated[AnthropicOther, Tag("other")],
    Discriminator(
        lambda v: t if (t := _tag(v)) in _BLOCK_TAGS else "other" if t is not None else None,
        custom_error_type="block",
        custom_error_message="a content block must be an object with a string 'type'",
    ),
]
_BLOCK_TAGS = frozenset({"text", "image", "document", "tool_use", "server_tool_use", "tool_result", "thinking"})


class AnthropicMessage(Cached):
    # "system" mid-conversation: Claude Code 2.1 sends its environment notes as a system turn.
    role: Literal["user", "assistant", "system"]
    content: BlockText | Annotated[list[Block], Field(min_length=1)]


class AnthropicTool(Cached):
    name: StrictStr
    type: StrictStr | None = None
    description: StrictStr | None = None
    input_schema: Obj | None = None


class AnthropicToolChoice(Shape):
    type: Literal["auto", "any", "tool", "none"]
    name: StrictStr | None = None


class Thinking(Shape):
    type: StrictStr
    budget_tokens: Count | None = None


class MessagesFields(Body, Cached):
    model: ModelName
    messages: Annotated[list[AnthropicMessage], Field(min_length=1)]
    system: StrictStr | list[AnthropicText] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: Thinking | None = None


class AnthropicMetadata(Shape):
    # LiteLLM validates it into its own AnthropicMetadata model (a 500 on a non-string user_id).
    user_id: StrictStr | None = None


class MessagesRequest(MessagesFields, Sampling):
    metadata: AnthropicMetadata | None = None  # type: ignore[assignment]  # narrower than Sampling's object
    max_tokens: Count | None = None
    stop_sequences: list[StrictStr] | None = None
    top_k: StrictInt | None = None


# --- OpenAI text completions, Responses, embeddings ------------------------------------------------------


class CompletionRequest(Sampling):
    # LiteLLM passes the body on as keyword arguments beside the messages it makes of the prompt.
    messages: None = Field(default=None, description="a chat field: not allowed in a text completion")
    prompt: StrictStr | list[StrictStr] | list[TokenId] | list[list[TokenId]]
    max_tokens: Count | None = None
    n: Count | None = None
    best_of: Count | None = None
    stop: Stop = None
    echo: StrictBool | None = None
    suffix: StrictStr | None = None
    logprobs: NonNegative | None = None
    seed: StrictInt | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    logit_bias: Obj | None = None
    stream_options: StreamOptions | None = None


class ResponsesMessage(Cached):
    type: Literal["message"] | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: StrictStr | list[AnyPart]


class ResponsesCall(Cached):
    type: Literal["function_call", "custom_tool_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr | None = None


class ResponsesCallOutput(Cached):
    type: Literal["function_call_output", "custom_tool_call_output", "computer_call_output", "tool_result"]
    call_id: StrictStr
    output: StrictStr | list[AnyPart] | Obj


class ResponsesWebSearch(Shape):
    """LiteLLM reads it with openai's ResponseFunctionWebSearch, which requires these."""

    type: Literal["web_search_call"]
    id: StrictStr
    status: StrictStr
    action: Obj


class ResponsesOtherItem(Cached):
    type: StrictStr


_ITEM_TAGS = {
    "message": "message",
    "function_call": "call",
    "custom_tool_call": "call",
    "function_call_output": "output",
    "custom_tool_call_output": "output",
    "computer_call_output": "output",
    "tool_result": "output",
    "web_search_call": "web_search",
}


def _item_tag(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind is None:
        return "message"  # an easy input message: {"role": ..., "content": ...}
    return _ITEM_TAGS.get(kind, "other") if isinstance(kind, str) else None


ResponsesInputItem = Annotated[
    Annotated[ResponsesMessage, Tag("message")]
    | Annotated[ResponsesCall, Tag("call")]
    | Annotated[ResponsesCallOutput, Tag("output")]
    | Annotated[ResponsesWebSearch, Tag("web_search")]
    | Annotated[ResponsesOtherItem, Tag("other")],
    Discriminator(
        _item_tag,
        custom_error_type="item",
        custom_error_message="an input item must be an object with a string 'type' or a 'role'",
    ),
]


class ResponsesText(Shape):
    format: Obj | None = None


class ResponsesRequest(Sampling):
    input: StrictStr | list[ResponsesInputItem]
    instructions: StrictStr | None = None
    max_output_tokens: Count | None = None
    tools: list[AnyPart] | None = None
    tool_choice: StrictStr | Obj | None = None
    text: ResponsesText | None = None
    reasoning: Obj | None = None
    previous_response_id: StrictStr | None = None
    parallel_tool_calls: StrictBool | None = None
    include: list[StrictStr] | None = None


class EmbeddingRequest(Body):
    model: ModelName
    input: StrictStr | list[StrictStr] | list[TokenId] | list[list[TokenId]]
    dimensions: Count | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: StrictStr | None = None


# --- the 400 message ----------------------------------------------------------------------------------


def _path(body: Any, loc: tuple[int | str, ...], missing: bool = False) -> str:
    """The field an error is about, as the client wrote it (`messages[0].content[1].text`): pydantic's
    location also names union members and tags, which are dropped by walking the body itself. A tag may
    also be a key of the body (the "text" block's tag and its `text`): of the walks, the one that follows
    the most steps wins (`messages[0].content[0].cache_control.ttl`, not `...content[0].text`). A missing
    field is the location's last step."""
    out = "".join(_steps(body, loc, 0, {}))
    if missing and loc and isinstance(loc[-1], str):
        out = f"{out}.{loc[-1]}"
    return out.removeprefix(".")


def _steps(node: Any, loc: tuple[int | str, ...], i: int, seen: dict[tuple[int, int], list[str]]) -> list[str]:
    """The longest walk of `loc[i:]` through `node`, as path pieces (".key", "[3]"); at a tie the step is taken.
    `seen`: the walks already found, by (node, step), so each is found once."""
    if i == len(loc):
        return []
    key = (id(node), i)
    if key in seen:
        return seen[key]
    best = _steps(node, loc, i + 1, seen)
    step = loc[i]
    if isinstance(node, dict) and isinstance(step, str) and step in node:
        taken = [f".{step}", *_steps(node[step], loc, i + 1, seen)]
        best = taken if len(taken) >= len(best) else best
    elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        taken = [f"[{step}]", *_steps(node[step], loc, i + 1, seen)]
        best = taken if len(taken) >= len(best) else best
    seen[key] = best
    return best


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# What a value must be, by pydantic's error type; the type mismatches of a union's members are joined.
_TYPES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
}
_PHRASES = {
    "finite_number": "must be a finite number",
    "missing": "is required",
    "none_required": "is not a field of this route",
    "string_pattern_mismatch": "must be printable ASCII with no leading or trailing space",
}


def _what(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _TYPES:
        return "must be " + _TYPES[kind]
    if kind in _PHRASES:
        return _PHRASES[kind]
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def litellm_params_problem(shape: type[BaseModel], body: dict[str, Any]) -> str | None:
    """LiteLLM's own parameters in a body (`max_retries`, `litellm_trace_id`, ...: the proxy passes the body on
    as keyword arguments), validated by LiteLLM's own model of them as the router will, before any call."""
    from litellm.types.router import GenericLiteLLMParams

    own = GenericLiteLLMParams.model_fields.keys() - shape.model_fields.keys()
    params = {k: v for k, v in body.items() if k in own}
    return shape_problem(GenericLiteLLMParams, params) if params else None


def shape_problem(model: type[BaseModel], body: dict[str, Any]) -> str | None:
    """None if `body` fits `model`, else one clear sentence about the most specific field that does not."""
    try:
        model.model_validate(body)
    except ValidationError as e:
        errors = [
            (_path(body, err["loc"], err["type"] == "missing") or "body", err) for err in e.errors(include_url=False)
        ]
        # Of a union's members, the one that went deepest into the body says what is wrong; at one depth a
        # broken constraint (a negative token id) says more than another member's type.
        where, first = max(errors, key=lambda pe: (len(pe[0]), pe[1]["type"] not in _TYPES))
        if first["type"] in _TYPES:  # every member refused the value's type: name them all
            wanted = list(
                dict.fromkeys(_TYPES[err["type"]] for path, err in errors if path == where and err["type"] in _TYPES)
            )
            what = "must be " + (
                " or ".join(wanted) if len(wanted) < 3 else ", ".join(wanted[:-1]) + " or " + wanted[-1]
            )
        else:
            what = _what(first)
        got = "" if first["type"] == "missing" else f", got {_got(first.get('input'))}"
        return f"'{where}' {what}{got}"
    return None
