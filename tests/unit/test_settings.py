"""The typed config: the shipped file validates, mistakes fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policies.common.settings import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, mutate) -> Path:
    cfg = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    mutate(cfg)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _info(model: str, **fields):
    """A mutation setting `fields` in the model_info of `model`'s model_list entry."""

    def mutate(c) -> None:
        next(m for m in c["model_list"] if m["model_name"] == model).setdefault("model_info", {}).update(fields)

    return mutate


def test_shipped_config_is_valid() -> None:
    cfg = load_config(REPO / "litellm_config.yaml")
    assert {"local-llama", "local-embed", "deepseek-chat", "claude-sonnet", "gpt-4o", "auto"} <= set(cfg.model_names)
    assert cfg.synqra.budget.monthly_limit_usd == 200
    assert cfg.model("claude-sonnet").litellm_params["model"].startswith("anthropic/claude-sonnet-")
    assert cfg.model("local-llama").model_info["input_cost_per_token"] == 0


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c["synqra"]["backends"]["llama"].update(prot=1), "synqra.backends.llama.prot"),
        (lambda c: c["synqra"]["backends"]["llama"].update(port="eighty"), "synqra.backends.llama.port"),
        (lambda c: c["synqra"]["budget"].update(monthly_limit_usd=-5), "synqra.budget.monthly_limit_usd"),
        (lambda c: c["synqra"].update(typo_section={}), "synqra.typo_section"),
        (lambda c: c["synqra"]["routing"].update(tiers=["local-llama", "claude-opus-99"]), "synqra.routing.tiers[1]"),
        (lambda c: c["synqra"]["backends"]["embed"].update(port=9999), "local-embed"),
        (lambda c: c["model_list"][2]["litellm_params"].pop("model"), "model_list[2]"),
        (
            lambda c: c["router_settings"]["fallbacks"].append({"local-llama": ["gpt-9"]}),
            "router_settings.fallbacks[3]",
        ),
        (lambda c: c["router_settings"]["model_group_alias"].update(old="nope"), "model_group_alias.old"),
        (lambda c: c["synqra"]["routing"].update(mode="shadw"), "synqra.routing.mode"),
        (
            lambda c: c["synqra"]["routing"].update(mode="shadow", shadow_model="claude-opus-99"),
            "synqra.routing.shadow_model",
        ),
        # The model_info fields synqra prices and sizes calls by: a price that is not a number started a proxy that
        # said "ready" and failed every request (the budget could not be built); a negative one priced calls below 0
        # (every such call gave money back to the month); a string `stores_responses: "false"` was true.
        *[
            (_info("claude-sonnet", **{key: value}), f"model_list[3].model_info.{key}")
            for key, value in (
                ("input_cost_per_token", "3e-6 USD"),
                ("output_cost_per_token", -1.5e-05),
                ("cache_read_input_token_cost", [0.1]),
                ("max_output_tokens", "64k"),
                ("max_input_tokens", 0),
                ("stores_responses", "false"),
            )
        ],
        (_info("local-embed", output_vector_size=384.5), "model_list[1].model_info.output_vector_size"),
        # LiteLLM's own parts: a section it does not read, or a router_settings key it ignores with a log warning,
        # dropped every fallback without a word (`router_setting:` for `router_settings:`, `fallback:`).
        (lambda c: c.update(router_setting=c.pop("router_settings")), "router_setting"),
        (
            lambda c: c["router_settings"].update(fallback=c["router_settings"].pop("fallbacks")),
            "router_settings.fallback",
        ),
        (lambda c: c.update(router_settings=["fallbacks"]), "router_settings"),
        # A baseline model not in model_list started a proxy that said "ready" and answered every request 500 ("no
        # price for model(s) ['gpt-5']"); an embedding model or the virtual model as a tier was a 404 or `auto` served
        # as itself; a typo in vision_tiers / tool_tiers was silently no tier (found by review17).
        (lambda c: c["synqra"]["budget"].update(baseline_model="gpt-5"), "synqra.budget.baseline_model"),
        (
            lambda c: c["synqra"]["routing"].update(tiers=["local-embed", "deepseek-chat", "claude-sonnet"]),
            "synqra.routing.tiers[0]",
        ),
        (lambda c: c["synqra"]["routing"].update(tiers=["auto", "claude-sonnet"]), "synqra.routing.tiers[0]"),
        (lambda c: c["synqra"]["routing"].update(vision_tiers=["gpt4o"]), "synqra.routing.vision_tiers[0]"),
        (lambda c: c["synqra"]["routing"].update(tool_tiers=["deepseek"]), "synqra.routing.tool_tiers[0]"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, mutate, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, mutate))
    assert key in str(e.value)


def test_model_info_numbers_as_yaml_reads_them(tmp_path: Path) -> None:
    """YAML reads `3e-6` (no dot) as text; synqra's pricing and LiteLLM read it as the number, and so does the check."""
    p = tmp_path / "c.yaml"
    text = (REPO / "litellm_config.yaml").read_text()
    p.write_text(text.replace("input_cost_per_token: 0.000003\n", "input_cost_per_token: 3e-6\n", 1))
    assert "3e-6" in p.read_text()
    assert load_config(p).model("claude-sonnet").model_info["input_cost_per_token"] == "3e-6"


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_swapping_the_gguf_is_a_config_edit(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        lambda c: c["synqra"]["backends"]["llama"].update(model_path="/models/llama-3.2-1b-instruct-q4_k_m.gguf"),
    )
    assert load_config(p).synqra.backends.llama.model_path == "/models/llama-3.2-1b-instruct-q4_k_m.gguf"


def test_serve_exits_with_the_message_on_bad_config(tmp_path: Path, capsys) -> None:
    from proxy.supervisor import main

    p = _write(tmp_path, lambda c: c["synqra"]["server"].update(port=0))
    assert main(["--config", str(p)]) == 2
    assert "synqra.server.port" in capsys.readouterr().err


def test_shadow_mode_serves_the_incumbent() -> None:
    """Shadow mode: an intercepted name the config serves stays as asked; the virtual model, and names
    only the interception knows, go to shadow_model (default: the strongest tier)."""
    cfg = load_config(REPO / "litellm_config.yaml")
    r = cfg.synqra.routing.model_copy(update={"mode": "shadow", "intercept_models": ["claude-*", "gpt-4o"]})
    known = lambda m: cfg.model(cfg.canonical(m)) is not None  # noqa: E731
    assert r.shadow_target("auto", known) == "claude-sonnet" == r.tiers[-1]
    assert r.shadow_target("gpt-4o", known) == "gpt-4o"
    assert r.shadow_target("claude-3-5-sonnet-20241022", known) == "claude-3-5-sonnet-20241022"  # an alias
    assert r.shadow_target("claude-3-opus-20240229", known) == "claude-sonnet"  # no model serves that name
    assert r.model_copy(update={"shadow_model": "deepseek-chat"}).shadow_target("auto", known) == "deepseek-chat"


def test_the_tables_of_litellms_sections_are_litellms_own() -> None:
    """The tables load_config checks LiteLLM's parts of the file against (kept as tables: reading a config must not
    import LiteLLM) are what the installed LiteLLM reads: after an upgrade this says what to add or remove."""
    import litellm
    from litellm.proxy._types import ConfigYAML
    from litellm.proxy.proxy_server import ROUTER_SETTINGS_MANAGED_OUTSIDE_CONFIG

    from policies.common.litellm_sections import ROUTER_SETTINGS, TOP_LEVEL

    router = {x for x in litellm.Router.get_valid_args() if x not in ROUTER_SETTINGS_MANAGED_OUTSIDE_CONFIG}
    assert set(ROUTER_SETTINGS) == router
    assert set(ConfigYAML.model_fields) <= TOP_LEVEL
    # every other section in the table is one LiteLLM's proxy reads from the file
    proxy = Path(litellm.__file__).parent / "proxy"
    source = (proxy / "proxy_server.py").read_text() + (proxy / "common_utils" / "config_includes.py").read_text()
    for section in TOP_LEVEL - set(ConfigYAML.model_fields) - {"synqra"}:
        assert f'"{section}"' in source, section


# --- files brought in with LiteLLM's `include:` ------------------------------------------------------------


def _with_include(tmp_path: Path, files: dict[str, str], include: list[str] | None = None) -> Path:
    """The shipped config including `files` (relative path -> YAML text), each written under tmp_path."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return _write(tmp_path, lambda c: c.update(include=include if include is not None else list(files)[:1]))


@pytest.mark.parametrize(
    ("files", "key", "bad_file"),
    [
        ({"extra.yaml": "litellm_setting:\n  drop_params: true\n"}, "litellm_setting", "extra.yaml"),
        (
            {"extra.yaml": "router_settings:\n  fallback:\n    - deepseek-chat: [claude-sonnet]\n"},
            "router_settings.fallback",
            "extra.yaml",
        ),
        # an include of an included file, next to the file that names it
        (
            {"conf/a.yaml": "include: [b.yaml]\nenvironment_variables: {}\n", "conf/b.yaml": "routr_settings: {}\n"},
            "routr_settings",
            "conf/b.yaml",
        ),
    ],
)
def test_a_wrong_key_in_an_included_file_fails_naming_the_key_and_the_file(
    tmp_path: Path, files: dict[str, str], key: str, bad_file: str
) -> None:
    """LiteLLM merges included files into the config and ignores their unknown keys as silently as the main file's:
    the main file's were refused at start, an included file's started a proxy without its fallbacks."""
    with pytest.raises(ConfigError) as e:
        load_config(_with_include(tmp_path, files))
    assert f"  {key}: not a" in str(e.value) and str(tmp_path / bad_file) in str(e.value), str(e.value)


def test_a_missing_or_malformed_include_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="included file .*not found: .*nope.yaml"):
        load_config(_with_include(tmp_path, {}, include=["nope.yaml"]))
    with pytest.raises(ConfigError, match="include: must be a list of file paths"):
        load_config(_with_include(tmp_path, {}, include="extra.yaml"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_with_include(tmp_path, {"list.yaml": "- a\n"}))


def test_included_files_are_merged_as_litellm_merges_them(tmp_path: Path) -> None:
    """synqra reads what LiteLLM serves: the merge is LiteLLM's own (resolve_includes), lists extended, other values
    replaced, so a model or a fallback in an included file is one synqra knows."""
    import asyncio

    from litellm.proxy.common_utils.config_includes import resolve_include_file_path, resolve_includes

    from policies.common.settings import read_config

    extra_model = {
        "model_name": "deepseek-reasoner",
        "litellm_params": {"model": "deepseek/deepseek-reasoner", "api_key": "os.environ/DEEPSEEK_API_KEY"},
        "model_info": {"mode": "chat", "input_cost_per_token": 0.00000055, "output_cost_per_token": 0.0000022},
    }
    main = _with_include(
        tmp_path,
        {
            "models.yaml": yaml.safe_dump({"model_list": [extra_model], "include": ["more/router.yaml"]}),
            "more/router.yaml": yaml.safe_dump({"router_settings": {"fallbacks": [{"deepseek-reasoner": ["gpt-4o"]}]}}),
        },
    )

    async def read(location: str) -> dict:
        return yaml.safe_load(Path(location).read_text())

    root = str(main)
    theirs = asyncio.run(
        resolve_includes(
            yaml.safe_load(main.read_text()), root, lambda e, d: resolve_include_file_path(e, d, root), read
        )
    )
    assert read_config(main) == theirs
    cfg = load_config(main)
    assert cfg.model("deepseek-reasoner") is not None and cfg.model("claude-sonnet") is not None
    assert cfg.fallback_chain("deepseek-reasoner") == ["gpt-4o"]  # the included router_settings replace the main's
    assert cfg.aliases == {}


def test_the_configs_environment_variables_count_when_serve_says_which_tiers_answer(
    tmp_path: Path, monkeypatch
) -> None:
    # LiteLLM sets `environment_variables:` in the proxy's process, so a key given there works; `synqra serve`
    # still printed "deepseek-chat unavailable (DEEPSEEK_API_KEY not set)" (found by review17).
    from proxy.supervisor import apply_environment_variables, tiers_line

    monkeypatch.setenv("DEEPSEEK_API_KEY", "")  # restored (removed) after the test
    monkeypatch.delenv("DEEPSEEK_API_KEY")
    cfg = load_config(
        _write(tmp_path, lambda c: c.update(environment_variables={"DEEPSEEK_API_KEY": "sk-from-config"}))
    )
    assert "deepseek-chat unavailable" in tiers_line(cfg)
    apply_environment_variables(cfg)
    assert "deepseek-chat ok" in tiers_line(cfg)
