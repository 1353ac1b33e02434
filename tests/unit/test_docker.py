"""No Docker engine here: check the compose file and the container config statically."""
from __future__ import annotations

import copy
from pathlib import Path
from urllib.parse import urlparse

import yaml

from policies.common.settings import load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
DOCKER_CONFIG_PATH = REPO / "docker" / "litellm_config.docker.yaml"
IN_IMAGE_CONFIG = "/app/docker/litellm_config.docker.yaml"


def _strip_addresses(raw: dict) -> dict:
    """The config minus what legitimately differs in containers (addresses, data dir, store)."""
    c = copy.deepcopy(raw)
    for m in c["model_list"]:
        if m["model_name"] in ("local-llama", "local-embed", "auto"):
            m["litellm_params"].pop("api_base")
    s = c["synqra"]
    for k in ("host", "data_dir"):
        s["server"].pop(k)
    for b in s["backends"].values():
        if isinstance(b, dict):
            for k in ("host", "external_url"):
                b.pop(k, None)
    s["budget"].pop("store")
    return c


def test_container_config_is_valid_and_matches_the_main_config() -> None:
    load_config(DOCKER_CONFIG_PATH)
    main = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    docker = yaml.safe_load(DOCKER_CONFIG_PATH.read_text())
    assert _strip_addresses(docker) == _strip_addresses(main), "models, prices, hooks and policies must be the same"


def test_services_commands_ports_and_health() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"proxy", "llama", "embed", "redis"}
    cfg = load_config(DOCKER_CONFIG_PATH)
    b = cfg.synqra.backends
    for name, module, backend in (("llama", "local_backends.llama_server", b.llama), ("embed", "local_backends.embedding_server", b.embed)):
        svc = services[name]
        assert svc["command"][:3] == ["python", "-m", module] and svc["command"][-1] == IN_IMAGE_CONFIG
        assert str(backend.port) in svc["expose"]
        assert backend.host == "0.0.0.0", "a backend must listen beyond its container"
        url = urlparse(backend.external_url)
        assert (url.hostname, url.port) == (name, backend.port), "the proxy reaches the backend by service name"
        assert f"http://{name}:{backend.port}/v1" == cfg.model(backend.model_alias).litellm_params["api_base"]
        assert f"127.0.0.1:{backend.port}/health" in " ".join(svc["healthcheck"]["test"])
    proxy = services["proxy"]
    assert proxy["command"] == ["synqra", "serve", "--config", IN_IMAGE_CONFIG]
    assert f"{cfg.synqra.server.port}:{cfg.synqra.server.port}" in proxy["ports"]
    assert cfg.synqra.server.host == "0.0.0.0"
    assert set(proxy["depends_on"]) == {"llama", "embed", "redis"}


def test_environment_carries_every_key_the_config_references() -> None:
    raw = yaml.safe_load(DOCKER_CONFIG_PATH.read_text())
    env = COMPOSE["services"]["proxy"]["environment"]
    keys = {
        v.removeprefix("os.environ/")
        for m in raw["model_list"]
        for k, v in m["litellm_params"].items()
        if k == "api_key" and isinstance(v, str) and v.startswith("os.environ/")
    }
    assert keys and keys <= set(env), f"compose must pass {keys - set(env)}"
    assert "SYNQRA_MASTER_KEY" in env
    store = urlparse(load_config(DOCKER_CONFIG_PATH).synqra.budget.store)
    assert (store.scheme, store.hostname) == ("redis", "redis")
    assert env["REDIS_URL"].startswith("redis://redis:")


def test_dockerfile_installs_what_the_services_run() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert 'torch==2.13.0' in text and "llama-cpp-python[server]==0.3.36" in text
    assert "GGML_NATIVE=OFF" in text
    assert IN_IMAGE_CONFIG.removeprefix("/app/") in text
    assert "/models" in text and "/data" in text
    for vol in ("models", "data"):
        assert any(v.startswith(vol + ":") for v in COMPOSE["services"]["proxy"]["volumes"])
