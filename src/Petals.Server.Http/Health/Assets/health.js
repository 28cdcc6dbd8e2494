// The Petals swarm health monitor: fetches /api/v1/state every few seconds and renders it (no framework, no CDN).
(function () {
  "use strict";
  const body = document.body;
  const refreshMs = Math.max(100, parseInt(body.dataset.refreshMs, 10) || 5000);
  const peerId = body.dataset.peerId;
  const status = document.getElementById("status");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function coverageClass(n) { return "c" + Math.min(n, 3); }
  function fmt(x, digits) { return Number(x).toFixed(digits === undefined ? 1 : digits); }
  function rtts(s) {
    const entries = Object.entries(s.next_server_rtts_ms || {});
    return entries.length === 0 ? "-" : entries.map(([p, ms]) => p.slice(0, 8) + "…: " + fmt(ms) + " ms").join(", ");
  }
  function stateCell(s) { return el("td", { "class": "state-" + s.state }, s.state); }

  function serverRow(s) {
    return el("tr", { "data-peer-id": s.peer_id, "data-state": s.state },
      el("td", null, s.public_name || "-"),
      el("td", null, el("a", { href: "/servers/" + encodeURIComponent(s.peer_id) }, el("code", null, s.peer_id.slice(0, 12) + "…"))),
      el("td", null, s.span_start + ":" + s.span_end),
      stateCell(s),
      el("td", { "class": "num" }, fmt(s.throughput) + " tok/s"),
      el("td", { "class": "num" }, s.cache_tokens_left),
      el("td", null, s.quantization || "-"),
      el("td", null, s.adapters.length ? s.adapters.join(", ") : "-"),
      el("td", null, s.version || "-"),
      el("td", null, rtts(s)),
      el("td", { "class": "num" }, fmt(s.expires_in_seconds, 0) + " s"));
  }

  function renderModel(m) {
    const section = el("section", { "class": "model", "data-model-id": m.model_id });
    section.append(el("h2", null, m.model_id));
    const gaps = m.block_count - m.blocks_covered;
    section.append(el("p", { "class": "summary" },
      m.block_count + " blocks, " + m.server_count + " servers · ",
      el("span", { "class": gaps === 0 ? "good" : "bad" }, gaps === 0 ? "every block covered" : gaps + (gaps === 1 ? " block" : " blocks") + " with no online server"),
      " · ",
      el("span", { "class": m.chain_complete ? "good" : "bad" }, m.chain_complete ? "full chain" : "no full chain" + (m.problem ? ": " + m.problem : ""))));
    const bar = el("div", { "class": "bar", role: "img", "aria-label": "blocks by coverage" });
    for (const b of m.blocks) {
      bar.append(el("div", {
        "class": "block " + coverageClass(b.servers),
        "data-block": b.block,
        "data-servers": b.servers,
        title: "block " + b.block + ": " + b.servers + " servers, " + fmt(b.throughput) + " tok/s",
      }, m.blocks.length <= 64 ? b.servers : ""));
    }
    section.append(bar);
    const table = el("table", { "class": "servers" },
      el("thead", null, el("tr", null, ...["name", "peer id", "span", "state", "throughput", "cache tokens left", "quantization", "adapters", "version", "round trips to next servers", "expires in"].map(h => el("th", null, h)))));
    const tbody = el("tbody");
    for (const s of m.servers) tbody.append(serverRow(s));
    table.append(tbody);
    section.append(table);
    for (const note of m.ignored) section.append(el("p", { "class": "summary" }, "note: " + note));
    return section;
  }

  function renderServer(state) {
    const main = document.getElementById("server");
    main.replaceChildren();
    let found = 0;
    for (const m of state.models) {
      for (const s of m.servers) {
        if (s.peer_id.toLowerCase() !== peerId.toLowerCase()) continue;
        found++;
        main.append(el("h2", null, m.model_id));
        const dl = el("dl", { "class": "server", "data-state": s.state });
        const rows = [
          ["public name", s.public_name || "-"], ["peer id", s.peer_id], ["address", s.address],
          ["state", s.state], ["span", s.span_start + ":" + s.span_end],
          ["throughput", fmt(s.throughput) + " tok/s" + (s.throughput_method ? " (" + s.throughput_method + ")" : "")],
          ["cache tokens left", s.cache_tokens_left], ["dtype", s.dtype], ["quantization", s.quantization || "-"],
          ["adapters", s.adapters.length ? s.adapters.join(", ") : "-"], ["version", s.version || "-"],
          ["round trips to next servers", rtts(s)], ["announcement expires in", fmt(s.expires_in_seconds, 0) + " s"],
        ];
        for (const [k, v] of rows) dl.append(el("dt", null, k), el("dd", null, v));
        main.append(dl);
      }
    }
    if (found === 0) main.append(el("p", { "class": "status error", id: "gone" }, "This server is not announced in the swarm now (offline, or its announcement expired)."));
  }

  function render(state) {
    const when = state.updated_at ? new Date(state.updated_at).toLocaleTimeString() : "never";
    status.className = state.error ? "status error" : "status";
    status.textContent = (state.error ? "last read failed: " + state.error + " · " : "") + "swarm read at " + when + " · " + state.models.length + " models";
    if (peerId) { renderServer(state); return; }
    const main = document.getElementById("models");
    main.replaceChildren(...state.models.map(renderModel));
    if (state.models.length === 0) main.append(el("p", { "class": "status" }, "No model is announced in the swarm."));
  }

  async function tick() {
    try {
      const response = await fetch("/api/v1/state", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
    } catch (e) {
      status.className = "status error";
      status.textContent = "cannot reach the monitor: " + e.message;
    } finally {
      setTimeout(tick, refreshMs);
    }
  }

  tick();
})();
