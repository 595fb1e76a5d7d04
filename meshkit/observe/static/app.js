// The meshkit dashboard: polls the control plane's observe API and redraws in place.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const state = { selected: null, status: null, polls: 0 };

function el(tag, attributes, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, options) {
  const answer = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(body.error || `${path} answered ${answer.status}`);
  return body;
}

function layout(graph) {
  const incoming = new Map(graph.nodes.map((node) => [node.id, 0]));
  for (const edge of graph.edges) incoming.set(edge.target, (incoming.get(edge.target) || 0) + 1);
  const depth = new Map();
  const queue = graph.nodes.filter((node) => incoming.get(node.id) === 0).map((node) => node.id);
  queue.forEach((id) => depth.set(id, 0));
  while (queue.length) {
    const id = queue.shift();
    for (const edge of graph.edges) {
      if (edge.source === id && !depth.has(edge.target)) {
        depth.set(edge.target, depth.get(id) + 1);
        queue.push(edge.target);
      }
    }
  }
  graph.nodes.forEach((node) => { if (!depth.has(node.id)) depth.set(node.id, 0); });
  const columns = new Map();
  const position = new Map();
  for (const node of graph.nodes) {
    const column = depth.get(node.id);
    const row = columns.get(column) || 0;
    columns.set(column, row + 1);
    position.set(node.id, { x: 100 + column * 360, y: 60 + row * 130 });
  }
  return position;
}

function edgeLabel(edge) {
  const share = (edge.error_share * 100).toFixed(edge.error_share ? 1 : 0);
  const latency = edge.p50_ms === null ? "" : `p50 ${edge.p50_ms} / p99 ${edge.p99_ms} ms`;
  const mtls = edge.mtls === "mutual_tls" ? " · mTLS" : edge.mtls === "none" ? " · PLAINTEXT" : "";
  return [`${edge.requests} req · ${edge.rate}/s · ${share}% err`, `${latency}${mtls}`];
}

function drawGraph(graph) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  document.getElementById("graph-empty").hidden = graph.edges.length > 0;
  const position = layout(graph);
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto" });
  marker.appendChild(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#7d8aa0" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  let width = 400, height = 200;
  for (const edge of graph.edges) {
    const from = position.get(edge.source), to = position.get(edge.target);
    const group = el("svg:g", {
      class: "edge" + (edge.error_share > 0 ? " errors" : "") + (edge.mtls === "none" ? " plaintext" : ""),
      "data-source": edge.source, "data-target": edge.target, "data-requests": String(edge.requests),
      "data-error-share": String(edge.error_share), "data-mtls": edge.mtls,
    });
    group.appendChild(el("svg:line", { x1: from.x + 70, y1: from.y, x2: to.x - 70, y2: to.y, "marker-end": "url(#arrow)" }));
    const flags = Object.entries(edge.flags).map(([flag, count]) => `${flag} ×${count}`).join(" ");
    const lines = [...edgeLabel(edge), flags].filter((line) => line);
    const label = el("svg:text", { class: "label", "text-anchor": "middle" });
    lines.forEach((line, index) => label.appendChild(el("svg:tspan", {
      x: (from.x + to.x) / 2, y: (from.y + to.y) / 2 - 18 + index * 13,
    }, line)));
    group.appendChild(label);
    svg.appendChild(group);
  }
  for (const node of graph.nodes) {
    const at = position.get(node.id);
    width = Math.max(width, at.x + 100); height = Math.max(height, at.y + 60);
    const group = el("svg:g", { class: "node" + (node.service === state.selected ? " selected" : ""), "data-id": node.id, "data-service": node.service });
    group.appendChild(el("svg:rect", { x: at.x - 70, y: at.y - 20, width: 140, height: 40 }));
    group.appendChild(el("svg:text", { x: at.x, y: at.y }, node.id));
    group.addEventListener("click", () => select(node.service));
    svg.appendChild(group);
  }
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
}

function drawServices(status) {
  document.getElementById("mesh-name").textContent = `· mesh ${status.mesh}`;
  const list = document.getElementById("services");
  list.replaceChildren();
  const names = [...new Set(status.services.map((service) => service.name))];
  for (const name of names) {
    const item = el("li", { "data-service": name, class: name === state.selected ? "selected" : "" }, name);
    item.addEventListener("click", () => select(name));
    list.appendChild(item);
  }
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", {}, String(cell)));
  return tr;
}

async function drawDetail() {
  const name = state.selected;
  const status = state.status;
  const detail = document.getElementById("service-detail");
  if (!name || !status) { detail.hidden = true; return; }
  detail.hidden = false;
  document.getElementById("detail-title").textContent = name;
  const instances = status.services.filter((service) => service.name === name).flatMap((service) => service.instances);
  document.querySelector("#instances tbody").replaceChildren(...instances.map((instance) =>
    row([instance.id, instance.state, instance.restarts, instance.cert_state || "-", instance.sync || "-"])));
  const faults = (status.faults || []).filter((fault) => fault.service === name);
  document.getElementById("faults").replaceChildren(...(faults.length ? faults.map((fault) =>
    el("li", { "data-fault": fault.id }, `${fault.id}: ${fault.abort !== null ? "abort " + fault.abort : ""}${fault.delay ? " delay " + fault.delay + "s" : ""} at ${fault.percent}% · ${Math.round(fault.expires_in)}s left`))
    : [el("li", {}, "none")]));
  const calls = await api(`/api/calls/${encodeURIComponent(name)}`);
  document.querySelector("#calls tbody").replaceChildren(...calls.calls.map((call) => {
    const request = el("td", { class: "request" }, `${call.method} ${call.route}`);
    request.title = `request ${call.request_id}`;
    request.addEventListener("click", () => showTrace(call.trace_id));
    return row([new Date(call.start * 1000).toLocaleTimeString(), call.instance, request,
      el("td", { class: call.status >= 500 ? "bad" : "" }, String(call.status)), call.flag, call.duration_ms.toFixed(1)]);
  }));
  if (instances.length) {
    try {
      const applied = await api(`/api/control/instances/${encodeURIComponent(instances[0].id)}/config`);
      const config = applied.config || {};
      const shown = {
        routes: (config.routes || []).filter((table) => table.service === name),
        policies: (config.policies || []).filter((policy) => policy.service === name),
      };
      document.getElementById("routes").textContent = JSON.stringify(shown, null, 1);
    } catch (error) {
      document.getElementById("routes").textContent = String(error.message);
    }
  }
}

function select(name) {
  state.selected = name;
  refresh();
}

async function showTrace(traceId) {
  const trace = await api(`/api/traces/${encodeURIComponent(traceId)}`);
  const lines = [`trace ${trace.trace_id}`];
  const walk = (nodes, depth) => nodes.forEach((span) => {
    lines.push(`${"  ".repeat(depth)}${span.kind.padEnd(6)} ${span.instance} ${span.method} ${span.route} -> ${span.upstream} ${span.status}${span.flag === "-" ? "" : " " + span.flag} ${span.duration_ms.toFixed(1)}ms`);
    walk(span.children, depth + 1);
  });
  walk(trace.spans, 0);
  document.getElementById("trace-view").textContent = lines.join("\n");
}

async function drawTraces() {
  const traces = await api("/api/traces");
  document.getElementById("traces").replaceChildren(...traces.traces.slice(0, 12).map((trace) => {
    const item = el("li", { "data-trace": trace.trace_id, class: trace.status >= 500 ? "bad" : "" },
      `${new Date(trace.start * 1000).toLocaleTimeString()} ${trace.route} · ${trace.spans} spans · ${trace.status} · ${trace.duration_ms.toFixed(1)}ms`);
    item.addEventListener("click", () => showTrace(trace.trace_id));
    return item;
  }));
}

async function refresh() {
  try {
    const [graph, status] = await Promise.all([api("/api/graph"), api("/api/control/status")]);
    state.status = status;
    drawGraph(graph);
    drawServices(status);
    await drawDetail();
    await drawTraces();
    state.polls += 1;
    const updated = document.getElementById("updated");
    updated.dataset.count = String(state.polls);
    updated.textContent = `updated ${new Date().toLocaleTimeString()} (every ${POLL_MS / 1000}s)`;
  } catch (error) {
    document.getElementById("updated").textContent = `cannot reach the mesh: ${error.message}`;
  }
}

async function setFault(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { service: state.selected, percent: Number(form.get("percent") || 100), duration: form.get("duration") || "5m" };
  const abort = String(form.get("abort") || "").trim();
  const delay = String(form.get("delay") || "").trim();
  if (abort) body.abort = /^\d+$/.test(abort) ? Number(abort) : abort;
  if (delay) body.delay = delay;
  const result = document.getElementById("fault-result");
  try {
    const answer = await api("/api/control/faults", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    result.textContent = `fault ${answer.id} set${answer.synced ? " and in force" : ""}`;
  } catch (error) {
    result.textContent = error.message;
  }
  refresh();
}

async function clearFaults() {
  const result = document.getElementById("fault-result");
  try {
    const answer = await api(`/api/control/faults?service=${encodeURIComponent(state.selected)}`, { method: "DELETE" });
    result.textContent = `cleared ${answer.removed.length} fault(s)`;
  } catch (error) {
    result.textContent = error.message;
  }
  refresh();
}

document.getElementById("fault-form").addEventListener("submit", setFault);
document.getElementById("fault-clear").addEventListener("click", clearFaults);
refresh();
setInterval(refresh, POLL_MS);
