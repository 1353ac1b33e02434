"""The Docker files checked without an engine: the container config mirrors litellm_config.yaml, compose
wires the services to it, the Dockerfile's base is a build argument. tests/docker/ runs them for real."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from urllib.parse import urlparse

import yaml

from policies.common.settings import load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
DOCKER_CONFIG_PATH = REPO / "docker" / "litellm_config.docker.yaml"
DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()
IN_IMAGE_CONFIG = "/app/docker/litellm_config.docker.yaml"
PUBLIC_BASE = "python:3.11-slim-bookworm"


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
    for name, module, backend in (
        ("llama", "local_backends.llama_server", b.llama),
        ("embed", "local_backends.embedding_server", b.embed),
    ):
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
        if k in ("api_key", "api_base") and isinstance(v, str) and v.startswith("os.environ/")
    }
    assert keys and keys <= set(env), f"compose must pass {keys - set(env)}"
    # An API base is passed through only when set: an empty value must not replace the provider's default.
    assert all(env[k] is None for k in keys if k.endswith("_API_BASE"))
    assert "SYNQRA_MASTER_KEY" in env
    store = urlparse(load_config(DOCKER_CONFIG_PATH).synqra.budget.store)
    assert (store.scheme, store.hostname) == ("redis", "redis")
    assert env["REDIS_URL"].startswith("redis://redis:")


def test_dockerfile_installs_what_the_services_run() -> None:
    text = DOCKERFILE
    assert "torch==2.13.0" in text and "llama-cpp-python[server]==0.3.36" in text
    assert "GGML_NATIVE=OFF" in text
    assert IN_IMAGE_CONFIG.removeprefix("/app/") in text
    assert "/models" in text and "/data" in text
    for vol in ("models", "data"):
        assert any(v.startswith(vol + ":") for v in COMPOSE["services"]["proxy"]["volumes"])


def _arg_default(name: str) -> str:
    m = re.search(rf'^ARG {name}="?([^"\n]*)"?$', DOCKERFILE, re.MULTILINE)
    assert m, f"no ARG {name} with a default"
    return m.group(1)


def test_base_image_is_a_build_argument_defaulting_to_the_public_image() -> None:
    # ARG before the first FROM, so FROM can use it; every stage derives from that base.
    first_from = DOCKERFILE.index("\nFROM ")
    assert DOCKERFILE.index("ARG BASE_IMAGE=") < first_from
    assert _arg_default("BASE_IMAGE") == PUBLIC_BASE
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", DOCKERFILE, re.MULTILINE)
    assert froms[0][0] == "${BASE_IMAGE}"
    stages = {alias for _, alias in froms if alias}
    assert all(image in stages for image, _ in froms[1:]), f"a stage does not build on the base: {froms}"
    # compose passes the same argument, with the same default (override with SYNQRA_BASE_IMAGE).
    arg = COMPOSE["x-synqra"]["build"]["args"]["BASE_IMAGE"]
    assert arg == f"${{SYNQRA_BASE_IMAGE:-{PUBLIC_BASE}}}"


def test_a_base_without_python_gets_debians_python_311() -> None:
    # scripts/docker-base.sh builds a bare Debian (no Python): the first stage installs python3 and
    # python3-venv when the base lacks them, and fails the build unless that Python is 3.11.
    assert "python3 python3-venv" in DOCKERFILE
    assert "sys.version_info[:2] == (3, 11)" in DOCKERFILE
    assert "python3 -m venv /opt/venv" in DOCKERFILE and "COPY --from=build /opt/venv /opt/venv" in DOCKERFILE


def test_torch_is_the_cpu_build_and_llama_cpp_avoids_native_and_amx() -> None:
    # PyPI's torch 2.13.0 for Linux is the CUDA build: the default index is PyTorch's CPU one.
    assert _arg_default("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    assert "assert not torch.version.cuda" in DOCKERFILE
    flags = _arg_default("LLAMA_CMAKE_ARGS").split()
    assert "-DGGML_NATIVE=OFF" in flags
    assert not any("AMX" in f or "BACKEND_DL" in f for f in flags)
    assert 'CMAKE_ARGS="$LLAMA_CMAKE_ARGS"' in DOCKERFILE


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    # .dockerignore is an allow-list (no .venv or .git in the context): each COPY source must be on it.
    allowed = {line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    sources = [
        src for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.MULTILINE) for src in line.split()[:-1]
    ]
    assert sources and set(sources) <= allowed, f"not in .dockerignore's allow-list: {set(sources) - allowed}"
    assert all((REPO / src).exists() for src in sources)


def test_compose_file_runs_on_debians_docker_compose() -> None:
    # docker-compose 1.29 (Debian bookworm) rejects top-level keys outside the v3 schema, e.g. `name:`.
    assert set(COMPOSE) - {"services", "volumes", "networks", "configs", "secrets"} <= {"x-synqra"}
    assert COMPOSE["services"]["redis"]["image"] == "${SYNQRA_REDIS_IMAGE:-redis:7-alpine}"


def test_the_smoke_test_changes_only_addresses_and_ports() -> None:
    from tests.docker.smoke import smoke_config

    ports = {"proxy": 41000, "llama": 41001, "embed": 41002, "redis": 41003}
    smoke = smoke_config(ports)
    shipped = yaml.safe_load(DOCKER_CONFIG_PATH.read_text())

    def without_ports(c: dict) -> dict:
        c = _strip_addresses(c)
        c["synqra"]["server"].pop("port")
        for key in ("llama", "embed"):
            c["synqra"]["backends"][key].pop("port")
        return c

    assert without_ports(smoke) == without_ports(shipped)
    s = smoke["synqra"]
    assert s["server"]["host"] == s["backends"]["llama"]["host"] == s["backends"]["embed"]["host"] == "127.0.0.1"
    assert s["backends"]["llama"]["external_url"] == "http://llama:41001"  # service names kept (mapped to 127.0.0.1)
    assert s["budget"]["store"] == "redis://redis:41003/0"
