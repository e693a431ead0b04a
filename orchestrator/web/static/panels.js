// The read-only panels: prices and the plan, contracts, recent decisions, overrides, and one
// GPU's explanation. Each takes API answers and replaces its panel's content; text goes in
// through textContent only, so nothing from the API is ever parsed as HTML.

import { paletteClass } from "./grid.js";

// A plan generation is term * 2^32 + n (the term rises each time a serve takes charge);
// people read it as "#n" with the term when there has been more than one.
export function generationLabel(generation) {
  const term = Math.floor(generation / 2 ** 32);
  const n = generation % 2 ** 32;
  return term > 1 ? `#${n} (term ${term})` : `#${n}`;
}

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = value;
    else if (key.startsWith("data-")) element.setAttribute(key, value);
    else if (key in element) element[key] = value;
    else element.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

function replace(container, ...children) {
  container.replaceChildren(...children.flat().filter(Boolean));
}

export function clock(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

function usd(value, digits = 2) {
  if (value === null || value === undefined) return "—";
  const sign = value < 0 ? "−" : "";
  return `${sign}$${Math.abs(value).toFixed(digits)}`;
}

function pct(fraction) {
  return fraction === null || fraction === undefined ? "—" : `${(fraction * 100).toFixed(1)} %`;
}

const HASH_UNITS = [["H", 1], ["kH", 1e3], ["MH", 1e6], ["GH", 1e9], ["TH", 1e12], ["PH", 1e15]];

// $ per H/s per day, in the unit that gives a readable number ($0.0119 per MH/s·day)
export function hashprice(value) {
  if (value === null || value === undefined) return "—";
  for (const [unit, scale] of HASH_UNITS) {
    if (value * scale >= 0.001 || unit === "PH") {
      return `$${(value * scale).toPrecision(3)} per ${unit}/s·day`;
    }
  }
  return String(value);
}

function swatch(workload) {
  const kind = workload.startsWith("mine:") ? "mine" : workload.startsWith("ai:") ? "ai" : "idle";
  return h("span", { class: `swatch k-${kind} ${paletteClass(workload)}`, "aria-hidden": "true" });
}

function table(caption, headers, rows) {
  return h(
    "table",
    {},
    caption ? h("caption", { class: "sr-only" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
    h("tbody", {}, rows),
  );
}

export function renderMarket(container, plan) {
  if (!plan) {
    replace(container, h("p", { class: "muted" }, "No plan yet: serve waits for telemetry and prices."));
    return;
  }
  const market = plan.market;
  const stale = new Set(market.stale || []);
  const rows = Object.entries(market.hashprice_usd_per_hs_day).map(([algorithm, value]) => {
    const quote = market.quotes[algorithm];
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, algorithm),
      h("td", { class: "num" }, hashprice(value)),
      h("td", { class: "muted" }, quote ? `${quote.source}, ${clock(quote.fetched_at_s)}` : ""),
      h(
        "td",
        {},
        stale.has(algorithm) ? h("span", { class: "tag bad" }, "stale") : "",
        quote && quote.btc_price && quote.btc_price.static
          ? h(
              "span",
              {
                class: "tag warn",
                title: `converted at a static ${quote.btc_price.usd_per_btc} US$/BTC that never goes stale`,
              },
              "static BTC price",
            )
          : "",
      ),
    );
  });
  const power = market.quotes.power;
  rows.push(
    h(
      "tr",
      {},
      h("th", { scope: "row" }, "power"),
      h("td", { class: "num" }, `$${market.power_usd_per_kwh.toFixed(4)} per kWh`),
      h("td", { class: "muted" }, power ? `${power.source}, ${clock(power.fetched_at_s)}` : ""),
      h("td", {}, stale.has("power") ? h("span", { class: "tag bad" }, "stale") : ""),
    ),
  );
  const cap = plan.power_cap_w ? ` of ${(plan.power_cap_w / 1000).toFixed(1)} kW cap` : "";
  replace(
    container,
    h(
      "p",
      { class: "plan-line" },
      h("strong", {}, `Plan ${generationLabel(plan.generation)}`),
      ` (${plan.trigger}, ${clock(plan.planned_at_s)}): net ${usd(plan.net_usd_per_hour)}/h, `,
      `${(plan.total_power_w / 1000).toFixed(1)} kW${cap}, ${plan.switches} switch${plan.switches === 1 ? "" : "es"}`,
    ),
    table("Prices", ["market", "price", "source, fetched", ""], rows),
  );
}

// contracts: /api/v1/sla; plan: /api/v1/plan (may be null); nodes: /api/v1/state's nodes
export function renderContracts(container, sla, plan, nodes) {
  const contracts = (sla && sla.contracts) || [];
  if (!contracts.length) {
    replace(container, h("p", { class: "muted" }, "No contracts configured."));
    return;
  }
  const serving = new Map();
  const planned = new Map();
  for (const node of nodes) {
    for (const gpu of node.gpus) {
      if (gpu.state === "ok" || gpu.state === "degraded") {
        serving.set(gpu.workload, (serving.get(gpu.workload) || 0) + 1);
      }
      if (gpu.planned_workload) {
        planned.set(gpu.planned_workload, (planned.get(gpu.planned_workload) || 0) + 1);
      }
    }
  }
  const planSla = new Map(((plan && plan.sla) || []).map((s) => [s.contract, s]));
  const period = new Map(((sla && sla.current) || []).map((e) => [e.contract, e]));
  const rows = contracts.map((contract) => {
    const workload = `ai:${contract.contract}`;
    const status = planSla.get(contract.contract);
    const ledger = period.get(contract.contract);
    const reserved = contract.kind === "reserved";
    const servingCount = serving.get(workload) || 0;
    const short = reserved && status && status.active && servingCount < contract.committed_gpus;
    const availability = !ledger
      ? "—"
      : ledger.availability_fraction === null || ledger.availability_fraction === undefined
        ? h("span", { class: "muted" }, "no committed hours yet")
        : h(
          "span",
          { class: ledger.below_target ? "tag bad" : "tag ok" },
          `${pct(ledger.availability_fraction)} of ${pct(ledger.availability_target_fraction)}`,
        );
    return h(
      "tr",
      { "data-contract": contract.contract },
      h("th", { scope: "row" }, swatch(workload), contract.contract),
      h("td", {}, reserved ? "reserved" : "on demand"),
      h("td", { class: "num" }, `${usd(contract.rate_usd_per_gpu_hour)}/GPU·h`),
      h("td", { class: "num" }, reserved ? String(contract.committed_gpus) : `≤ ${contract.max_gpus ?? "∞"}`),
      h("td", { class: "num" }, String(status ? status.assigned_gpus : planned.get(workload) || 0)),
      h("td", { class: short ? "num bad" : "num" }, String(servingCount)),
      h("td", {}, reserved ? availability : "—"),
      h("td", { class: "num" }, ledger ? usd(ledger.penalty_usd) : "—"),
    );
  });
  const problems = (plan && plan.problems) || [];
  replace(
    container,
    table(
      "Contracts",
      ["contract", "kind", "rate", "committed", "planned", "serving", "availability (period)", "penalty (period)"],
      rows,
    ),
    problems.length
      ? h("ul", { class: "problems" }, problems.map((p) => h("li", {}, p)))
      : null,
  );
}

function gpuList(gpus) {
  if (!gpus || !gpus.length) return "";
  const shown = gpus.slice(0, 3).join(", ");
  return gpus.length > 3 ? `${shown} +${gpus.length - 3}` : shown;
}

function decisionText(entry) {
  switch (entry.kind) {
    case "plan": {
      const summary = entry.summary || {};
      const workloads = Object.entries(summary.workloads || {})
        .map(([w, n]) => `${n} ${w}`)
        .join(", ");
      return [
        `plan ${generationLabel(entry.generation)} (${entry.trigger}): ${entry.switches} switch${entry.switches === 1 ? "" : "es"}, net ${usd(entry.net_usd_per_hour)}/h`,
        workloads,
      ];
    }
    case "switch":
      return [
        `${entry.gpu}: ${entry.previous ?? "?"} → ${entry.workload} — ${entry.failed ? "failed: " : ""}${entry.state.replace("_", " ")}${entry.outcome ? ` (${entry.outcome})` : ""}${entry.step ? `, at ${entry.step}` : ""}`,
        entry.reason,
      ];
    case "override.create": {
      const until = entry.expires_at_s ? ` until ${clock(entry.expires_at_s)}` : "";
      return [
        `${entry.by} pinned ${gpuList(entry.gpus)} to ${entry.workload}${until}${entry.forced ? " (forced)" : ""}`,
        [entry.reason, entry.sla].filter(Boolean).join(" — "),
      ];
    }
    case "override.delete":
      return [`${entry.by} removed override ${entry.id} (${entry.workload})`, entry.reason || ""];
    default:
      return [`${entry.kind} by ${entry.by}`, ""];
  }
}

function decisionClass(entry) {
  if (entry.kind === "switch") {
    if (entry.failed) return "bad"; // a rollback is a failure, whatever runs afterwards
    if (entry.state === "done") return "ok";
    return "busy";
  }
  if (entry.kind.startsWith("override")) return "op";
  return "";
}

export function renderDecisions(container, decisions, { quietPlans }) {
  const shown = decisions
    .filter((e) => !(quietPlans && e.kind === "plan" && e.switches === 0))
    .slice(0, 60);
  if (!shown.length) {
    const note = quietPlans && decisions.length
      ? "No switches or overrides yet (plans without switches are hidden)."
      : "No decisions yet.";
    replace(container, h("p", { class: "muted" }, note));
    return;
  }
  const items = shown.map((entry) => {
    const [line, why] = decisionText(entry);
    return h(
      "li",
      { class: `decision ${decisionClass(entry)}`, "data-kind": entry.kind },
      h("time", { class: "muted" }, clock(entry.at_s)),
      h("span", { class: "kind" }, entry.kind),
      h("span", { class: "what" }, line, why ? h("span", { class: "why" }, why) : null),
    );
  });
  replace(container, h("ol", { class: "decision-list" }, items));
}

// /api/v1/curtailments: the windows not over yet, and the last few that are, each with its
// SLA forecast (a reserved contract it would leave short is named before the window starts)
export function renderCurtailments(container, data) {
  const windows = data.windows || [];
  const live = windows.filter((w) => w.state === "upcoming" || w.state === "in_force");
  const past = windows.filter((w) => w.state === "ended" || w.state === "cancelled").slice(0, 3);
  const head = [];
  if (data.effective_cap_kw !== null && data.effective_cap_kw !== undefined) {
    head.push(h("p", { class: "cap" }, `Site cap in force: ${data.effective_cap_kw.toFixed(1)} kW`));
  }
  if (data.price_strike_usd_per_kwh !== null && data.price_strike_usd_per_kwh !== undefined) {
    head.push(
      h("p", { class: "muted" }, `Sheds mining and on-demand AI at or above ${usd(data.price_strike_usd_per_kwh, 4)}/kWh`),
    );
  }
  if (!live.length && !past.length) {
    replace(container, head, h("p", { class: "muted" }, "No curtailment windows."));
    return;
  }
  const rows = [...live, ...past].map((w) =>
    h(
      "tr",
      { "data-curtailment": w.id, class: w.state },
      h("td", {}, h("code", {}, w.id)),
      h("td", {}, `${w.cap_kw.toFixed(1)} kW`),
      h("td", {}, `${clock(w.start_s)}–${clock(w.end_s)}`),
      h("td", {}, w.state.replace("_", " ")),
      h("td", {}, w.reason, h("span", { class: "muted" }, ` — ${w.source}`)),
      h("td", { class: forecastOk(w.forecast) === false ? "bad" : "" }, forecastText(w.forecast)),
    ),
  );
  replace(
    container,
    head,
    table("Curtailment windows", ["id", "cap", "when", "state", "reason — source", "SLA forecast"], rows),
  );
}

function forecastOk(forecast) {
  return forecast && forecast.checked_at_s ? forecast.ok : null;
}

function forecastText(forecast) {
  if (!forecast || !forecast.checked_at_s) return (forecast && forecast.note) || "not checked yet";
  if (forecast.ok) return "contracts kept";
  return forecast.shortfalls.map((s) => `${s.contract} short ${s.shortfall_gpus} of ${s.committed_gpus}`).join("; ");
}

export function renderOverrides(container, overrides, { canWrite }) {
  if (!overrides.length) {
    replace(container, h("p", { class: "muted" }, "No live overrides."));
    return;
  }
  const rows = overrides.map((o) =>
    h(
      "tr",
      { "data-override": o.id },
      h("td", {}, h("code", {}, o.id)),
      h("td", { title: o.gpus.join(", ") }, gpuList(o.gpus)),
      h("td", {}, swatch(o.workload), o.workload),
      h("td", {}, o.reason, h("span", { class: "muted" }, ` — ${o.by}`)),
      h("td", {}, o.expires_at_s ? clock(o.expires_at_s) : "removed by hand"),
      h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            class: "small",
            "data-delete": o.id,
            disabled: !canWrite,
            "aria-label": `Delete override ${o.id}`,
          },
          "Delete",
        ),
      ),
    ),
  );
  replace(container, table("Live overrides", ["id", "GPUs", "workload", "reason — by", "until", ""], rows));
}

function powerSource(c) {
  if (!c.power_source) return "";
  return c.power_samples ? `${c.power_source} (${c.power_samples})` : c.power_source;
}

export function renderExplain(container, view) {
  const rows = view.candidates.map((c) =>
    h(
      "tr",
      { class: c.chosen ? "chosen" : "" },
      h("th", { scope: "row" }, swatch(c.workload), c.workload, c.chosen ? " ✓" : ""),
      h("td", { class: "num" }, `${usd(c.net_usd_per_hour, 3)}/h`),
      h("td", { class: "num" }, `${Math.round(c.board_w ?? c.power_w)} W`),
      h("td", { class: "num" }, `${Math.round(c.wall_w ?? c.power_w)} W`),
      h("td", { class: "muted" }, powerSource(c)),
      h("td", { class: "muted" }, c.note),
    ),
  );
  replace(
    container,
    h("p", {}, h("strong", {}, view.gpu), view.model ? ` · ${view.model.replace(/^NVIDIA /, "")}` : ""),
    h(
      "p",
      {},
      `runs ${view.current ?? "unknown"}; plan ${generationLabel(view.generation)} wants `,
      h("strong", {}, view.choice ?? "nothing"),
      view.lock && view.lock !== "free" ? ` (${view.lock})` : "",
    ),
    h("p", { class: "reason" }, view.reason),
    lifecycleLine(view.lifecycle),
    table(`Candidates for ${view.gpu}`, ["candidate", "net", "board", "wall", "power from", "note"], rows),
  );
}

const HELD_WHY = {
  site_power: "the site power cap has no room yet",
  ramp: "the ramp limit",
  node_starts: "the node's limit on starts",
};

// The GPU's switch in flight or held back by the switch wave, or how its last switch ended
// (a rollback shows as a failure).
function lifecycleLine(lifecycle) {
  if (!lifecycle) return null;
  const held = lifecycle.held;
  if (held) {
    const why = HELD_WHY[held.why] ?? "waiting for its turn";
    return h("p", { class: "lifecycle" }, `switch to ${held.workload} held back: ${why}`);
  }
  const flying = lifecycle.in_flight;
  if (flying) {
    const step = flying.step ? `, at ${flying.step}` : "";
    return h("p", { class: "lifecycle" }, `switching to ${flying.workload}${step}`);
  }
  const last = lifecycle.last_switch;
  if (!last) return null;
  const cooling = lifecycle.cooldown_until_s
    ? `; not tried again until ${clock(lifecycle.cooldown_until_s)}`
    : "";
  const verdict = last.failed ? "failed: " : "";
  const target = last.target ? ` to ${last.target}` : "";
  return h(
    "p",
    { class: `lifecycle${last.failed ? " bad" : ""}` },
    `last switch${target}: ${verdict}${last.state.replace("_", " ")}, runs ${last.workload ?? "unknown"}${cooling}`,
    last.outcome ? h("span", { class: "why" }, ` (${last.outcome})`) : null,
  );
}

export function renderExplainError(container, gpu, error) {
  replace(container, h("p", {}, h("strong", {}, gpu), ": ", error.message));
}
