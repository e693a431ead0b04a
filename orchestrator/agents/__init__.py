"""The node agent (`orchestrator agent`): one daemon per GPU server.

It samples its GPUs and publishes telemetry over MQTT, executes the switches that `serve`
commands, keeps each GPU's workload alive, and survives its own restarts.

- `agent`: the daemon, put together;
- `executor` and `switching`: commands become switches, exactly once, one at a time per GPU,
  with rollback when a step fails;
- `watchdog` and `workload_health`: restart an unhealthy workload, quarantine a GPU that will
  not stay up;
- `state` and `recovery`: the persisted promises, and re-attaching to running workloads at start;
- `gpu` (NVML and a fake), `miners` (miner API readers), `inference` (readiness probes, draining).
"""
