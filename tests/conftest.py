"""Shared fixtures: one real stack per test run, with fake cloud providers behind it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from policies.common.offline import apply_offline_env
from tests.fakes.fake_providers import FakeProvider, cloud_fakes
from tests.stack import MASTER_KEY, RunningStack, start_stack

apply_offline_env()

# CI runs the fuzz tests on a fixed seed (the same cases every run: a red CI is a reproducible finding, not luck);
# elsewhere each run draws new cases and keeps finding new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

STACK_DIRS = ("integration", "clients")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that drive the running stack carry the `stack` marker: `-m "not stack"` is the fast unit loop."""
    for item in items:
        if Path(str(item.fspath)).parent.name in STACK_DIRS:
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def providers() -> Iterator[dict[str, FakeProvider]]:
    with cloud_fakes() as p:
        yield p


@pytest.fixture(scope="session")
def stack(providers: dict[str, FakeProvider], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    s = start_stack(tmp_path_factory.mktemp("stack"), providers)
    yield s
    s.stop()


@pytest.fixture
def fresh_providers(providers: dict[str, FakeProvider]) -> dict[str, FakeProvider]:
    for fp in providers.values():
        fp.reset()
    return providers


@pytest.fixture(scope="session")
def master_key() -> str:
    return MASTER_KEY


@pytest.fixture
def openai_client(stack: RunningStack):
    import openai

    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)


@pytest.fixture
def anthropic_client(stack: RunningStack):
    import anthropic

    return anthropic.Anthropic(base_url=stack.base_url, api_key=MASTER_KEY, max_retries=0, timeout=120)


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


os.environ.setdefault("SYNQRA_TEST", "1")
