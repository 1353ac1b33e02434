"""The router's fast LiteLLM complexity score equals LiteLLM's own `ComplexityRouter.classify()` score."""

from __future__ import annotations

import pytest

from policies.routing.complexity import litellm_complexity
from policies.routing.features import structural_features

PROMPTS = [
    "What is your pricing?",
    "Write a compelling brand story for a luxury tech startup",
    "hi",
    "Thanks, bye!",
    "Explain step by step how to implement a distributed rate limiter in Python with Redis; "
    "consider latency, throughput and concurrency. Compare and contrast token bucket vs sliding window.",
    "First parse the file, then refactor the class and fix the async error in the API endpoint.",
    "first we check\nthen we go",  # 'first.*?then' does not cross a newline
    "Step 1: define the schema. 2. Write the SQL query. a) index b) cache",
    "Why? How? When? Where? What is the capital of France?",
    "Is it true or false that a CPU and a GPU share memory over a TCP protocol via HTTP and gRPC?",
    "The capital of a terrorism-free nation is not an API error",  # 'api'/'error' must not match inside words
    "node.js, Node and nodes; java/javascript; pull request #12; what's up",
    "Déjà vu: l'algorithme optimise la requête. 我需要开发票 what is this?",
    "1.5 is a number; 3.\tx and 12.",  # '\\d+\\.\\s' needs whitespace after the dot
    "ab.c) d, b)x, steps 9 and Step  4",  # '[a-z]\\)\\s' and 'step\\s*\\d' (one alternative each)
    "x " * 900,  # long: tokenCount dimension
    "",
]


@pytest.fixture(scope="module")
def classify():
    from litellm.router_strategy.complexity_router import ComplexityRouter

    router = ComplexityRouter(model_name="test", litellm_router_instance=None)
    return lambda text: router.classify(text, None)[1]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_equals_litellm_classify_score(classify, prompt: str) -> None:
    assert litellm_complexity(prompt) == pytest.approx(classify(prompt), abs=1e-12)


def test_scores_the_newest_user_turn_as_a_structural_feature() -> None:
    hard = "Explain step by step how to implement and optimize a distributed Python API with Docker and Kubernetes."
    request = {
        "messages": [
            {"role": "system", "content": "You are a Python expert: code, debug, refactor, SQL, API, Docker."},
            {"role": "user", "content": hard},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": "What is your pricing?"},
        ]
    }
    f = structural_features(request)
    assert f["litellm_complexity"] == pytest.approx(litellm_complexity("What is your pricing?"))
    assert f["litellm_complexity"] < 0 < litellm_complexity(hard)
