"""The central daemon (`orchestrator serve`): one per site.

It ingests the nodes' telemetry, polls market prices (`orchestrator.markets`), plans with the
pure planner (`orchestrator.policy`), dispatches switches, and serves the HTTP API, metrics
and status page.

- `serve`: the daemon, put together (start and stop order);
- `ingest` and `fleet`: MQTT messages into the latest snapshot of every node;
- `observe`: the fleet's telemetry into the planner's `GpuState`s;
- `policy_loop`: when to plan, planning, and handing the plan to `dispatch`;
- `dispatch`: planned switches become commands, with acks and retries;
- `store`: SQLite, the daemon's memory across restarts; `overrides`: operators' pins and drains;
- `api`, `auth`, `openapi`, `views`, `rendering`, `statuspage`: the HTTP API, bearer tokens and
  the status page; `metrics` and `plan_metrics`: scrape-time Prometheus gauges.
"""
