"""`synqra.quality` settings."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    deliver_above: float = Field(0.8, ge=0, le=1)
    escalate_below: float = Field(0.6, ge=0, le=1)
    max_extra_calls: int = Field(2, ge=0)
