"""The HTTP surface of `serve`: the API, the status page, bearer tokens and the metrics.

It sits above `central` and reads the daemon only through `central.reader.ServeReader`, a
read-only door onto the fleet's snapshots, the newest plan, the command journal, each GPU's
lifecycle line, the SLA ledger and the contracts. It never imports the policy loop, the
dispatcher, ingest, observe, the SLA accrual or the market memory (an import-linter
contract), so those can change shape without the HTTP layer noticing, and nothing served
here can change a plan or a command. The one write path is operators' overrides, handed to
`central.overrides.OverrideService`, which checks and audits them. `orchestrator.serve`
builds the application and hands it the reader.

- `api`: the aiohttp application (`build_app`): health, readiness, `/metrics`, the
  `/api/v1/*` endpoints and overrides;
- `views`: the plan, one GPU's explanation and the contracts as plain JSON dicts;
- `openapi`: the OpenAPI document of the API;
- `rendering`: whole-fleet documents written as text (`/api/v1/state`, per-GPU families);
- `statuspage`: the built-in page at `/`, its files in `static/`;
- `auth`: bearer tokens with roles;
- `metrics` and `plan_metrics`: scrape-time Prometheus gauges over the fleet and the plan.
"""
