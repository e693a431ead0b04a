"""The pure decision core: what each GPU should run, and why.

No I/O, no clock reads, no globals (an import-linter contract forbids asyncio, HTTP, MQTT,
NVML, SQLite and `orchestrator.markets` here), so the central loop and the backtest call the
same code with plain values.

- `model`: the planner's words (`PolicyInputs`, `GpuState`, `Market`, contracts, `Plan`);
- `economics`: what each workload is worth on each GPU, in US$ per hour;
- `planner`: `plan()`, the fleet's next assignment, solved as a MILP (`milp`, over HiGHS);
- `explain`: readable reasons and candidate tables for each decision;
- `sla_ledger`: GPU-hours delivered against GPU-hours committed, per billing period.
"""
