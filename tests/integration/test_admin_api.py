"""/api/models/status and /api/models/init (master key only, no secrets)."""

from __future__ import annotations

import httpx

from tests.stack import MASTER_KEY


def test_status_reports_local_health_and_cloud_keys_without_secrets(stack) -> None:
    r = httpx.get(f"{stack.base_url}/api/models/status", headers=stack.headers(), timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["local"]["local-llama"]["healthy"] is True
    assert body["local"]["local-llama"]["model_path"].endswith(".gguf")
    assert body["local"]["local-embed"]["healthy"] is True and body["local"]["local-embed"]["dimensions"] == 384
    assert body["cloud"]["claude-sonnet"]["has_key"] is True
    assert body["cloud"]["claude-sonnet"]["provider_model"] == "anthropic/claude-sonnet-4-5"
    for secret in ("sk-ant-fake", "sk-fake-openai", "sk-fake-deepseek", MASTER_KEY):
        assert secret not in r.text


def test_init_warms_local_models_and_is_idempotent(stack) -> None:
    for _ in range(2):
        r = httpx.post(f"{stack.base_url}/api/models/init", headers=stack.headers(), timeout=180)
        assert r.status_code == 200
        models = r.json()["models"]
        assert models["local-llama"]["status"] == "ready"
        assert models["local-embed"]["status"] == "ready"


def test_admin_endpoints_need_the_master_key(stack) -> None:
    for method, path in (("GET", "/api/models/status"), ("POST", "/api/models/init")):
        assert httpx.request(method, f"{stack.base_url}{path}", timeout=10).status_code == 401
        assert (
            httpx.request(
                method, f"{stack.base_url}{path}", headers={"Authorization": "Bearer nope"}, timeout=10
            ).status_code
            == 401
        )
