"""`synqra.learning` settings: defaults, the learning folder, and wrong values named at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from policies.common.learning_settings import LearningSettings


def test_defaults_keep_no_text_and_store_under_the_data_dir(tmp_path: Path) -> None:
    s = LearningSettings()
    assert s.enabled and not s.keep_text and s.schedule == "off"
    assert s.store_path(tmp_path) == tmp_path / "learning"
    assert LearningSettings(store_dir=str(tmp_path / "x")).store_path("/elsewhere") == tmp_path / "x"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"schedule": "hourly"}, "schedule"),
        ({"target_local_share": 1.5}, "target_local_share"),
        ({"queue_size": 0}, "queue_size"),
        ({"source_weights": {"gossip": 1.0}}, "unknown label sources"),
        ({"retention": 3}, "retention"),
    ],
)
def test_wrong_values_fail_naming_the_key(bad: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        LearningSettings(**bad)
