"""`synqra.learning` settings: the inference log and `synqra learn` (policies/learning, wired by proxy/)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# How much one label of each source counts when a request has several (the feedback of the
# application and a judge's pairwise verdict are direct; the gate's verdict reads one answer alone).
DEFAULT_SOURCE_WEIGHTS: dict[str, float] = {"feedback": 1.0, "judge": 1.0, "file": 1.0, "gate": 0.5, "shadow_gate": 0.5}


class LearningJudgeSettings(BaseModel):
    """The pairwise judge that labels requests for the router (proxy/judge.py, policies/judging.py): a cheap
    cloud model compares the local answer with the answer the client was served, in both orders."""

    model_config = ConfigDict(extra="forbid")

    # Judge every shadow evaluation (shadow mode with shadow_eval_share > 0): the local answer against the
    # incumbent's. Off: shadow evaluations are labelled by the quality scorer alone.
    enabled: bool = True
    model: str = "deepseek-chat"  # a model_list name
    # Share of live requests whose local answer the gate escalated that are judged too (local vs escalated).
    live_share: float = Field(0.0, ge=0, le=1)
    # Judge calls stop for the rest of the month once they have cost this much (two calls per judged request).
    monthly_limit_usd: float = Field(5.0, ge=0)


class LearningSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Write the inference log (one row per routed request) and accept labels. Off: nothing is stored.
    enabled: bool = True
    # Store the newest user turn's text with each row. Off (default): only the router's numeric
    # representation (features, embedding, token ids) is kept; rows then cannot be re-read by a
    # router with another representation (another embedder or embedded length).
    keep_text: bool = False
    # Folder of the inference log (inference_log.sqlite3), the learned routers and the run log.
    # None: `<synqra.server.data_dir>/learning`.
    store_dir: str | None = None
    # Rows (and their labels) older than this are deleted by the writer's hourly purge and by `synqra learn`.
    retention_days: int = Field(90, ge=1)
    # Rows waiting for the background writer; when full, new rows are dropped and counted, never waited for.
    queue_size: int = Field(10_000, ge=1)
    # Unattended `synqra learn` by the supervisor: off, once a day or once a week, when min_new_labels
    # labels have arrived since the last run.
    schedule: Literal["off", "daily", "weekly"] = "off"
    min_new_labels: int = Field(200, ge=1)
    # Threshold refit: the local tier's share of the logged traffic to aim at ...
    target_local_share: float = Field(0.5, gt=0, lt=1)
    # ... lowered until the labelled requests below the local cut needed the strong tier at most this often.
    max_escalation: float = Field(0.2, ge=0, le=1)
    # Share of the labelled rows (the newest) held out of the fit to compare the candidate with the current router.
    validation_share: float = Field(0.2, gt=0, lt=1)
    # The candidate is installed only when its APGR on those rows beats the current router's by more than this.
    min_improvement: float = Field(0.0, ge=0)
    # Weight of each label source when a request has labels from several.
    source_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SOURCE_WEIGHTS))
    judge: LearningJudgeSettings = Field(default_factory=LearningJudgeSettings)

    @model_validator(mode="after")
    def _known_sources(self) -> LearningSettings:
        unknown = set(self.source_weights) - set(DEFAULT_SOURCE_WEIGHTS)
        if unknown:
            raise ValueError(
                f"source_weights: unknown label sources {sorted(unknown)}; known: {sorted(DEFAULT_SOURCE_WEIGHTS)}"
            )
        if any(w < 0 for w in self.source_weights.values()):
            raise ValueError("source_weights must be non-negative")
        return self

    def store_path(self, data_dir: str | Path) -> Path:
        """The learning folder: store_dir, else `<data_dir>/learning`."""
        return Path(self.store_dir).expanduser() if self.store_dir else Path(data_dir).expanduser() / "learning"
