// The fleet grid: one small cell per GPU, grouped by node, coloured by what the GPU runs
// and whether it is healthy.
//
// Built for 10,000 GPUs: the grid's HTML is written in one go only when the fleet's shape
// changes (nodes or GPU counts); otherwise each poll touches only the cells whose class
// changed. Cells carry no listeners: the grid handles clicks and keys for all of them
// (event delegation), with one roving tab stop, and a cell gets its text label only when
// it is pointed at or focused.

const MINING_SHADES = 4; // classes m0..m3 in style.css
const AI_SHADES = 5; // classes a0..a4

// Workload id -> palette class, stable for the page's life (first seen, first served).
const palette = new Map();
let miningSeen = 0;
let aiSeen = 0;

export function paletteClass(workload) {
  let cls = palette.get(workload);
  if (cls) return cls;
  if (workload.startsWith("mine:")) cls = `m${miningSeen++ % MINING_SHADES}`;
  else if (workload.startsWith("ai:")) cls = `a${aiSeen++ % AI_SHADES}`;
  else return "";
  palette.set(workload, cls);
  return cls;
}

// Give the palette a stable order (sorted ids) before the first render.
export function seedPalette(workloads) {
  for (const workload of [...workloads].sort()) paletteClass(workload);
}

// kind: one of mine, ai, idle, off (unknown / node offline), bad (unhealthy, lost, quarantined)
export function classify(gpu) {
  const workload = gpu.workload || "unknown";
  if (gpu.state === "unhealthy" || gpu.state === "lost") return { kind: "bad", workload };
  if (gpu.state === "unknown" || workload === "unknown") return { kind: "off", workload };
  if (workload === "idle") return { kind: "idle", workload };
  if (workload.startsWith("mine:")) return { kind: "mine", workload };
  if (workload.startsWith("ai:")) return { kind: "ai", workload };
  return { kind: "off", workload };
}

function switching(gpu) {
  return Boolean(
    gpu.planned_workload && gpu.workload !== "unknown" && gpu.planned_workload !== gpu.workload,
  );
}

export function cellClass(gpu, selected) {
  const { kind, workload } = classify(gpu);
  let cls = `c k-${kind}`;
  if (kind === "mine" || kind === "ai") cls += " " + paletteClass(workload);
  if (switching(gpu)) cls += " sw";
  if (gpu.state === "degraded") cls += " dg";
  if (selected) cls += " sel";
  return cls;
}

export function describeGpu(gpu) {
  const t = gpu.telemetry || {};
  const parts = [gpu.gpu, gpu.workload];
  if (gpu.state !== "ok") parts.push(gpu.state);
  const reasons = t.health_reasons || [];
  if (reasons.length) parts.push(reasons.join("; "));
  if (switching(gpu)) parts.push(`switching to ${gpu.planned_workload}`);
  if (t.name) parts.push(t.name.replace(/^NVIDIA /, ""));
  if (t.power_draw_w != null) parts.push(`${Math.round(t.power_draw_w)} W`);
  if (t.temperature_c != null) parts.push(`${Math.round(t.temperature_c)} °C`);
  const hashrate = t.workload && t.workload.hashrate_hs;
  if (hashrate) parts.push(`${(hashrate / 1e6).toFixed(1)} MH/s`);
  return parts.join(" · ");
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function nodeCounts(node) {
  const counts = { mine: 0, ai: 0, idle: 0, off: 0, bad: 0 };
  for (const gpu of node.gpus) counts[classify(gpu).kind] += 1;
  const words = [];
  if (counts.mine) words.push(`${counts.mine} mining`);
  if (counts.ai) words.push(`${counts.ai} AI`);
  if (counts.idle) words.push(`${counts.idle} idle`);
  if (counts.off) words.push(`${counts.off} unknown`);
  if (counts.bad) words.push(`${counts.bad} unhealthy`);
  return words.join(", ");
}

function nodeStatusText(node) {
  if (node.status === "online") return "online";
  return `offline: ${node.status_reason || "silent"}`;
}

export class FleetGrid {
  constructor(element, { onExplain, onSelectionChange }) {
    this.element = element;
    this.onExplain = onExplain;
    this.onSelectionChange = onSelectionChange;
    this.selection = new Set();
    this.shape = "";
    this.cells = []; // button elements, fleet order
    this.gpus = []; // the GPU objects of the latest state, fleet order
    this.index = new Map(); // gpu name -> position
    this.heads = []; // node header elements
    this.active = 0; // the roving tab stop
    element.addEventListener("click", (event) => this.#click(event));
    element.addEventListener("keydown", (event) => this.#key(event));
    element.addEventListener("mouseover", (event) => this.#label(event.target));
    element.addEventListener("focusin", (event) => this.#label(event.target));
  }

  render(nodes) {
    const gpus = nodes.flatMap((node) => node.gpus);
    const shape = nodes.map((node) => `${node.node}/${node.gpus.length}`).join("|");
    this.gpus = gpus;
    if (shape !== this.shape) this.#build(nodes, gpus, shape);
    else this.#update(nodes, gpus);
    for (const name of [...this.selection]) {
      if (!this.index.has(name)) this.selection.delete(name);
    }
  }

  #build(nodes, gpus, shape) {
    const size = gpus.length <= 256 ? "l" : gpus.length <= 2048 ? "m" : "s";
    this.element.dataset.size = size;
    const html = [];
    let position = 0;
    for (const node of nodes) {
      const status = node.status === "online" ? "online" : "offline";
      html.push(
        `<div class="node" role="row"><div class="node-head" role="rowheader">`,
        `<span class="node-name">${escapeHtml(node.node)}</span>`,
        `<span class="node-status ${status}">${escapeHtml(nodeStatusText(node))}</span>`,
        `<span class="node-counts">${escapeHtml(nodeCounts(node))}</span></div>`,
        `<div class="cells" role="none">`,
      );
      for (const gpu of node.gpus) {
        const text = size === "l" ? escapeHtml(gpu.gpu.slice(gpu.gpu.lastIndexOf(":") + 1)) : "";
        const cls = cellClass(gpu, this.selection.has(gpu.gpu));
        const tab = position === this.active ? "0" : "-1";
        html.push(
          `<button type="button" role="gridcell" class="${cls}" data-gpu="${escapeHtml(gpu.gpu)}"`,
          ` tabindex="${tab}">${text}</button>`,
        );
        position += 1;
      }
      html.push("</div></div>");
    }
    if (!nodes.length) html.push(`<p class="muted">No node has reported yet.</p>`);
    this.element.innerHTML = html.join("");
    this.cells = Array.from(this.element.querySelectorAll("button.c"));
    this.heads = Array.from(this.element.querySelectorAll(".node-head"));
    this.index = new Map(gpus.map((gpu, i) => [gpu.gpu, i]));
    this.shape = shape;
    if (this.active >= this.cells.length) this.active = 0;
    if (this.cells.length) this.cells[this.active].tabIndex = 0;
  }

  #update(nodes, gpus) {
    const cells = this.cells;
    for (let i = 0; i < gpus.length; i += 1) {
      const cls = cellClass(gpus[i], this.selection.has(gpus[i].gpu));
      if (cells[i].className !== cls) cells[i].className = cls;
    }
    nodes.forEach((node, i) => {
      const head = this.heads[i];
      const status = head.children[1];
      const statusText = nodeStatusText(node);
      if (status.textContent !== statusText) {
        status.textContent = statusText;
        status.className = `node-status ${node.status === "online" ? "online" : "offline"}`;
      }
      const counts = nodeCounts(node);
      if (head.children[2].textContent !== counts) head.children[2].textContent = counts;
    });
    const focused = document.activeElement;
    if (focused && focused.classList.contains("c")) this.#label(focused);
  }

  #label(target) {
    if (!(target instanceof HTMLElement) || !target.classList.contains("c")) return;
    const gpu = this.gpus[this.index.get(target.dataset.gpu)];
    if (!gpu) return;
    const text = describeGpu(gpu);
    if (target.title !== text) {
      target.title = text;
      target.setAttribute("aria-label", text);
    }
  }

  #click(event) {
    const cell = event.target.closest("button.c");
    if (!cell) return;
    this.#focus(this.index.get(cell.dataset.gpu));
    if (event.ctrlKey || event.metaKey || event.shiftKey) {
      this.toggle(cell.dataset.gpu);
    } else {
      this.setSelection([cell.dataset.gpu]);
      this.onExplain(cell.dataset.gpu);
    }
  }

  #key(event) {
    const cell = event.target.closest("button.c");
    if (!cell) return;
    const at = this.index.get(cell.dataset.gpu);
    let next = null;
    switch (event.key) {
      case "ArrowLeft": next = at - 1; break;
      case "ArrowRight": next = at + 1; break;
      case "ArrowUp": next = at - this.#columns(cell); break;
      case "ArrowDown": next = at + this.#columns(cell); break;
      case "Home": next = 0; break;
      case "End": next = this.cells.length - 1; break;
      case "Enter": this.onExplain(cell.dataset.gpu); event.preventDefault(); return;
      case " ": this.toggle(cell.dataset.gpu); event.preventDefault(); return;
      default: return;
    }
    event.preventDefault();
    this.#focus(Math.max(0, Math.min(this.cells.length - 1, next)));
  }

  #columns(cell) {
    const row = cell.parentElement.children;
    const top = row[0].offsetTop;
    for (let i = 1; i < row.length; i += 1) if (row[i].offsetTop !== top) return i;
    return row.length;
  }

  #focus(position) {
    if (position === undefined || !this.cells[position]) return;
    if (this.cells[this.active]) this.cells[this.active].tabIndex = -1;
    this.active = position;
    this.cells[position].tabIndex = 0;
    this.cells[position].focus({ preventScroll: false });
  }

  toggle(name) {
    if (this.selection.has(name)) this.selection.delete(name);
    else this.selection.add(name);
    this.#refreshSelection();
  }

  setSelection(names) {
    this.selection = new Set(names);
    this.#refreshSelection();
  }

  #refreshSelection() {
    for (let i = 0; i < this.cells.length; i += 1) {
      this.cells[i].classList.toggle("sel", this.selection.has(this.gpus[i].gpu));
    }
    this.onSelectionChange([...this.selection]);
  }
}
