"""Environment switches that keep LiteLLM and Hugging Face fully offline.

Set before `import litellm`: otherwise it tries to download its price map and
other assets at import time, which hangs or fails on a machine without internet.
"""

from __future__ import annotations

import os

OFFLINE_ENV: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # /v1/messages on OpenAI-protocol models (llama.cpp, DeepSeek) must use /chat/completions.
    "LITELLM_USE_CHAT_COMPLETIONS_URL_FOR_ANTHROPIC_MESSAGES": "True",
    "LITELLM_TELEMETRY": "False",
}


def apply_offline_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set the switches (without overriding what the operator set) and return the env."""
    target = os.environ if env is None else env
    for k, v in OFFLINE_ENV.items():
        target.setdefault(k, v)
    return dict(target)
