"""The central daemon (`orchestrator serve`): one per site.

It ingests the nodes' telemetry, polls market prices (`orchestrator.markets`), plans with the
pure planner (`orchestrator.policy`) and dispatches switches. Its HTTP API, metrics and status
page live one layer up, in `orchestrator.web`, which reads it only through `reader`; the
daemon is put together (start and stop order) above both, in `orchestrator.serve`.

- `ingest` and `fleet`: MQTT messages into the latest snapshot of every node;
- `observe`: the fleet's telemetry into the planner's `GpuState`s;
- `policy_loop`: when to plan, planning, and handing the plan to `dispatch`;
- `dispatch`: planned switches become commands, with acks and retries;
- `wave`: which of a plan's switches may go out now so the site power cap holds meanwhile;
- `store`: SQLite, the daemon's memory across restarts; `overrides`: operators' pins and drains;
- `reader`: `ServeReader`, the read-only door the HTTP surface reads the daemon through;
- `gpubook`: each GPU's lifecycle line; `sla` and `market_memory`: the SLA ledger's accrual
  and the remembered prices.
"""
