"""GPU fleet workload orchestrator: mining or contracted AI inference, per GPU, for profit.

Layers (checked by import-linter, see pyproject.toml): the pure core (`domain`,
`protocol`, `config`, `policy`) at the bottom; adapters (`mqtt`, `httpserver`,
`drivers`, `agents`, `central`) above it; the HTTP surface (`web`) above `central`; the
central daemon's wiring (`serve`) and the entry points (`demo`, `cli`) on top.
"""

__version__ = "0.1.0"
