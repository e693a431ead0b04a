"""The base of every config section.

Every section of a TOML config is a small pydantic model that rejects unknown keys
(a typo must fail at start, naming the key) and is frozen once loaded. Units live in
field names (`interval_s`, `power_w`, `rate_usd_per_gpu_hour`), so a reader never guesses.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys rejected, immutable after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
