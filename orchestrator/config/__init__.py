"""Settings: the config files of `serve` and `agent`, modelled in pydantic v2."""
