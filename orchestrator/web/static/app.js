// The status page: polls the API, renders the panels, and drives the operator controls.
//
// One poll reads state, plan, SLA, decisions and overrides together, then renders; the next
// starts a few seconds after this one ended (never two at once), and later on a large fleet
// where a poll itself takes long. A 401 asks for a token; a write shows the API's own error
// text, and a 409 (the override would break an SLA) offers to send it again with force.

import { api, ApiError, setToken, takeTokenFromFragment, token } from "./api.js";
import { FleetGrid, classify, paletteClass, seedPalette } from "./grid.js";
import {
  clock,
  h,
  renderContracts,
  renderCurtailments,
  renderDecisions,
  renderExplain,
  renderExplainError,
  renderMarket,
  renderOverrides,
} from "./panels.js";

const POLL_MS = 4000;
const MAX_POLL_MS = 30000;
const $ = (id) => document.getElementById(id);

const page = {
  state: null,
  plan: null,
  workloads: [],
  explained: null, // the GPU whose explanation is shown
  pending: null, // the last refused override request, for "force"
  needsToken: false,
  forbidden: false,
  timer: null,
};

const grid = new FleetGrid($("grid"), {
  onExplain: (gpu) => explain(gpu),
  onSelectionChange: (names) => {
    $("selected-count").textContent = String(names.length);
    if (names.length) document.querySelector('input[name="target"][value="gpus"]').checked = true;
  },
});

// ------------------------------------------------------------------ banner and token

function banner(text, kind = "bad") {
  const element = $("banner");
  element.textContent = text || "";
  element.className = `banner ${kind}`;
  element.hidden = !text;
}

function showTokenState() {
  $("token-state").textContent = token() ? "token set for this tab" : "no token";
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token").value.trim());
  $("token").value = "";
  showTokenState();
  pollNow();
});

$("token-forget").addEventListener("click", () => {
  setToken("");
  showTokenState();
  pollNow();
});

// ------------------------------------------------------------------ polling

async function settle(promise) {
  try {
    return { value: await promise };
  } catch (error) {
    return { error };
  }
}

async function poll() {
  const started = performance.now();
  const [state, plan, sla, decisions, overrides, curtailments] = await Promise.all([
    settle(api("/api/v1/state")),
    settle(api("/api/v1/plan")),
    settle(api("/api/v1/sla")),
    settle(api("/api/v1/decisions?limit=200")),
    settle(api("/api/v1/overrides")),
    settle(api("/api/v1/curtailments")),
  ]);
  const failures = [state, sla, decisions, overrides].filter((r) => r.error).map((r) => r.error);
  if (failures.some((e) => e.status === 401)) {
    page.needsToken = true;
    banner(
      token()
        ? "The API refused this token (401). Paste a valid one in the token field above."
        : "The API needs a token: paste a viewer or operator token in the field above.",
    );
    if (!token()) $("token").focus();
    return performance.now() - started;
  }
  page.needsToken = false;
  if (failures.length) banner(`Could not read the API: ${failures[0].message}`);
  else banner("");

  if (state.value) {
    page.state = state.value;
    render(state.value, plan.value || null, sla.value || null);
  }
  if (decisions.value) {
    renderDecisions($("decisions"), decisions.value.decisions, {
      quietPlans: $("quiet-plans") ? $("quiet-plans").checked : true,
    });
  }
  if (curtailments.value) renderCurtailments($("curtailments"), curtailments.value);
  if (overrides.value) {
    page.workloads = overrides.value.workloads || page.workloads;
    fillWorkloads();
    renderOverrides($("overrides"), overrides.value.overrides, { canWrite: Boolean(token()) });
  }
  if (page.explained && plan.value && plan.value.generation !== page.explainedGeneration) {
    explain(page.explained, { quiet: true });
  }
  return performance.now() - started;
}

function render(state, plan, sla) {
  seedPalette([...page.workloads, ...((sla && sla.contracts) || []).map((c) => `ai:${c.contract}`)]);
  $("site").textContent = state.site;
  const s = state.summary;
  $("summary").textContent =
    `${s.nodes_online} of ${s.nodes_total} nodes online · ${s.gpus_total} GPUs, ` +
    `${s.gpus_ok} healthy, ${s.gpus_unknown} unknown`;
  $("updated").textContent = `updated ${clock(state.generated_at_s)}`;
  grid.render(state.nodes);
  renderLegend(state.nodes);
  renderMarket($("market"), plan);
  renderContracts($("contracts"), sla, plan, state.nodes);
  fillNodes(state.nodes);
}

function renderLegend(nodes) {
  const byWorkload = new Map();
  const byKind = { idle: 0, off: 0, bad: 0 };
  for (const node of nodes) {
    for (const gpu of node.gpus) {
      const { kind, workload } = classify(gpu);
      if (kind === "mine" || kind === "ai") byWorkload.set(workload, (byWorkload.get(workload) || 0) + 1);
      else byKind[kind] += 1;
    }
  }
  const item = (cls, label, count) =>
    h("li", {}, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), `${label} `, h("b", {}, String(count)));
  const items = [...byWorkload.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([w, n]) => item(`k-${w.startsWith("ai:") ? "ai" : "mine"} ${paletteClass(w)}`, w, n));
  items.push(item("k-idle", "idle", byKind.idle));
  items.push(item("k-off", "unknown / offline", byKind.off));
  items.push(item("k-bad", "unhealthy / quarantined", byKind.bad));
  items.push(h("li", {}, h("span", { class: "swatch k-idle sw", "aria-hidden": "true" }), "switching"));
  $("legend").replaceChildren(...items);
}

function schedule(delayMs) {
  clearTimeout(page.timer);
  page.timer = setTimeout(async () => {
    let took = 0;
    try {
      took = await poll();
    } catch (error) {
      banner(`The page failed to render: ${error.message}`);
      console.error(error);
    }
    // a poll that takes long (a very large fleet) spaces the next one out
    schedule(Math.min(MAX_POLL_MS, Math.max(POLL_MS, took * 3)));
  }, delayMs);
}

function pollNow() {
  schedule(0);
}

// ------------------------------------------------------------------ explanation

async function explain(gpu, { quiet = false } = {}) {
  page.explained = gpu;
  const container = $("explain");
  if (!quiet) container.replaceChildren(h("p", { class: "muted" }, `Asking why ${gpu}…`));
  try {
    const view = await api(`/api/v1/gpus/${encodeURIComponent(gpu)}/explain`);
    page.explainedGeneration = view.generation;
    renderExplain(container, view);
  } catch (error) {
    renderExplainError(container, gpu, error);
  }
}

// ------------------------------------------------------------------ operator controls

function fillSelect(select, values, labels = values) {
  const current = select.value;
  const same =
    select.options.length === values.length &&
    values.every((v, i) => select.options[i].value === v);
  if (same) return;
  select.replaceChildren(...values.map((v, i) => h("option", { value: v }, labels[i])));
  if (values.includes(current)) select.value = current;
}

function fillNodes(nodes) {
  fillSelect($("node-select"), nodes.map((n) => n.node));
}

function fillWorkloads() {
  const values = page.workloads;
  const labels = values.map((w) => (w === "drain" ? "drain (idle for maintenance)" : w));
  fillSelect($("workload-select"), values, labels);
}

function result(text, kind) {
  const element = $("control-result");
  element.textContent = text;
  element.className = `result ${kind}`;
}

function overrideRequest({ drain }) {
  const form = $("override-form");
  const reason = $("reason").value.trim();
  if (!reason) {
    $("reason").focus();
    throw new Error("Give a reason: it goes into the audit log.");
  }
  const body = { workload: drain ? "drain" : $("workload-select").value, reason };
  const ttl = $("ttl").value;
  if (ttl) body.ttl_s = Number(ttl);
  const target = drain ? "node" : form.elements.target.value;
  if (target === "node") {
    if (!$("node-select").value) throw new Error("No node to choose yet.");
    body.node = $("node-select").value;
  } else {
    if (!grid.selection.size) throw new Error("Select GPUs in the grid first (Ctrl- or Shift-click).");
    body.gpus = [...grid.selection];
  }
  if (!body.workload) throw new Error("No workload to choose: the API has not listed any yet.");
  return body;
}

async function sendOverride(body) {
  $("force-button").hidden = true;
  page.pending = null;
  result("Sending…", "busy");
  try {
    const created = await api("/api/v1/overrides", { method: "POST", body });
    const what = created.workload === "drain" ? "Drained" : `Pinned to ${created.workload}:`;
    result(`${what} ${created.gpus.length} GPU(s), override ${created.id} (${created.sla}).`, "ok");
    pollNow();
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      page.pending = body;
      $("force-button").hidden = false;
    }
    if (error instanceof ApiError && error.status === 401) {
      result(`${error.message}: enter an operator token above.`, "bad");
      $("token").focus();
      return;
    }
    result(error.message, "bad");
  }
}

function submit(drain) {
  try {
    sendOverride(overrideRequest({ drain }));
  } catch (error) {
    result(error.message, "bad");
  }
}

$("override-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submit(false);
});
$("drain-button").addEventListener("click", () => submit(true));
$("clear-selection").addEventListener("click", () => grid.setSelection([]));
$("node-select").addEventListener("change", () => {
  document.querySelector('input[name="target"][value="node"]').checked = true;
});
$("force-button").addEventListener("click", () => {
  if (page.pending) sendOverride({ ...page.pending, force: true });
});

// deleting an override: one listener for the whole table
$("overrides").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-delete]");
  if (!button) return;
  button.disabled = true;
  try {
    await api(`/api/v1/overrides/${encodeURIComponent(button.dataset.delete)}`, { method: "DELETE" });
    result(`Deleted override ${button.dataset.delete}.`, "ok");
    pollNow();
  } catch (error) {
    result(error.message, "bad");
    button.disabled = false;
  }
});

// ------------------------------------------------------------------ start

function addDecisionFilter() {
  const toggle = h(
    "label",
    { class: "filter" },
    h("input", { type: "checkbox", id: "quiet-plans", checked: true }),
    " hide plans without switches",
  );
  toggle.querySelector("input").addEventListener("change", pollNow);
  $("decisions-h").after(toggle);
}

takeTokenFromFragment();
showTokenState();
addDecisionFilter();
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) pollNow();
});
pollNow();
