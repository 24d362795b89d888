// Renders the node's /status.json every few seconds. Every value from the
// node goes into the page as text (textContent) or as a data-* attribute,
// never as markup: object names and error messages come from clients.
"use strict";

(function () {
  const TOKEN_KEY = "quiver-admin-token";
  const REFRESH_MS = 3000;
  const KNOWN_STATES = ["ok", "degraded", "unreachable", "unknown"];
  let timer = null;

  const byId = (id) => document.getElementById(id);

  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) {
      e.textContent = String(text);
    }
    if (className) {
      e.className = className;
    }
    return e;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      tr.appendChild(cell);
    }
    return tr;
  }

  function num(n) {
    return el("td", n === null || n === undefined ? "–" : String(n), "num");
  }

  function bytes(n) {
    if (n === null || n === undefined) {
      return "–";
    }
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = n;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
  }

  function percent(ratio) {
    return ratio === null || ratio === undefined ? "–" : (ratio * 100).toFixed(1) + "%";
  }

  function ranges(list) {
    if (!list || list.length === 0) {
      return "none";
    }
    return list.map(([a, b]) => (a === b ? String(a) : a + "–" + b)).join(", ");
  }

  function duration(seconds) {
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + s + "s";
  }

  function stateCell(health) {
    const state = health && health.state ? health.state : "unknown";
    const td = el("td", state, KNOWN_STATES.includes(state) ? "state-" + state : "");
    if (health && health.error) {
      td.title = health.error;
      td.appendChild(el("div", health.error, "note"));
    }
    return td;
  }

  function fillList(dl, pairs) {
    dl.replaceChildren();
    for (const [name, value] of pairs) {
      dl.appendChild(el("dt", name));
      const dd = value instanceof Node ? value : el("dd", value);
      dl.appendChild(dd);
    }
  }

  function ddState(health) {
    const state = health && health.state ? health.state : "unknown";
    return el("dd", state, KNOWN_STATES.includes(state) ? "state-" + state : "");
  }

  function renderNode(s) {
    const n = s.node;
    byId("node-id").textContent = n.id;
    document.title = "Quiver " + n.id;
    const origins = n.origins.map((o) => o.source + ": circuit " + o.circuit).join(", ") || "none";
    fillList(byId("node"), [
      ["id", n.id],
      ["url", n.url],
      ["version", n.version],
      ["health", ddState(n.health)],
      ["ready", n.ready ? "yes" : "no"],
      ["uptime", duration(n.uptime_seconds)],
      ["disk tier", n.disk.state + (n.disk.problem ? ": " + n.disk.problem : "")],
      ["origins", origins],
      ["scans", n.scans + " (" + n.active_scans + " running)"],
      ["served", bytes(n.served_bytes) + ", " + n.served_rows + " rows"],
      ["from the origin", bytes(n.origin_bytes) + " in " + n.origin_requests + " requests"],
      ["warm-up queue", String(n.warm_queue)],
    ]);
  }

  function tierRow(key, label, t) {
    const used = el("td", null, "num");
    if (t.capacity > 0) {
      const meter = document.createElement("meter");
      meter.min = 0;
      meter.max = t.capacity;
      meter.value = Math.min(t.usage, t.capacity);
      used.appendChild(meter);
    } else {
      used.textContent = "–";
    }
    const ratio = el("td", percent(t.hit_ratio), "num ratio");
    ratio.dataset.ratio = t.hit_ratio === null ? "" : String(t.hit_ratio);
    const tr = row([
      el("td", label),
      el("td", t.usage === undefined ? "–" : bytes(t.usage), "num"),
      el("td", t.capacity === undefined ? "–" : bytes(t.capacity), "num"),
      used,
      num(t.hits),
      num(t.lookups),
      ratio,
    ]);
    tr.dataset.tier = key;
    return tr;
  }

  function renderTiers(s) {
    const t = s.tiers;
    const body = byId("tiers").tBodies[0];
    body.replaceChildren(
      tierRow("memory", "memory", t.memory),
      tierRow("disk", "disk", t.disk),
      tierRow("chunks", "memory + disk", t.chunks),
      tierRow("hot", t.hot.enabled ? "hot (decoded arrays)" : "hot (off)", t.hot),
    );
  }

  function renderCluster(s) {
    const c = s.cluster;
    let summary = "epoch " + c.epoch + ", " + c.nodes.length + " node(s), replication " + c.replication;
    summary += c.document ? ", topology " + c.document : ", running alone";
    if (!c.in_topology) {
      summary += "; this node is not in the topology and redirects every read";
    }
    byId("cluster-summary").textContent = summary;
    if (c.error) {
      byId("cluster-summary").appendChild(el("div", "last reload not adopted: " + c.error, "error"));
    }
    const body = byId("cluster-nodes").tBodies[0];
    body.replaceChildren();
    for (const n of c.nodes) {
      const tr = row([
        el("td", n.id + (n.this_node ? " (this node)" : "")),
        el("td", n.url),
        el("td", ranges(n.primary), "primary"),
        el("td", ranges(n.replica), "replica"),
        num(n.primary_slots),
        stateCell(n.health),
        num(n.health.epoch),
      ]);
      tr.dataset.node = n.id;
      if (n.this_node) {
        tr.className = "this-node";
      }
      body.appendChild(tr);
    }
  }

  function renderHandoff(s) {
    const h = s.handoff;
    fillList(byId("handoff"), [
      ["state", h.state],
      ["epoch", String(h.epoch)],
      ["objects", h.objects_done + " of " + h.objects + " (" + h.objects_refused + " refused)"],
      ["received", bytes(h.bytes)],
      ["chunks rejected", String(h.chunks_rejected)],
    ]);
    const list = byId("handoff-errors");
    list.replaceChildren(...h.errors.map((e) => el("li", e, "error")));
  }

  function renderHot(s) {
    const body = byId("hot-objects").tBodies[0];
    body.replaceChildren(
      ...s.hot_objects.top.map((o) => row([el("td", o.object, "object"), num(o.requests), num(o.at_least)])),
    );
    byId("hot-note").textContent =
      s.hot_objects.top.length === 0
        ? "No reads yet."
        : "Estimated over the " + s.hot_objects.tracked + " objects tracked at a time: " +
          "the true count lies between the two columns.";
  }

  function renderErrors(s) {
    const body = byId("errors").tBodies[0];
    if (s.errors.length === 0) {
      body.replaceChildren(row([el("td", "none since the node started", "note")]));
      return;
    }
    body.replaceChildren(
      ...s.errors.map((e) =>
        row([el("td", e.time), el("td", e.request_id), el("td", e.code), el("td", e.message, "message")]),
      ),
    );
  }

  function setState(text, stale) {
    const p = byId("state");
    p.textContent = text;
    p.className = stale ? "stale" : "";
  }

  function render(s) {
    renderNode(s);
    renderTiers(s);
    renderCluster(s);
    renderHandoff(s);
    renderHot(s);
    renderErrors(s);
    byId("login").hidden = true;
    byId("content").hidden = false;
    setState("Updated " + s.generated_at + "; refreshes every " + REFRESH_MS / 1000 + " s.", false);
  }

  // Removes every rendered value, so a refused token leaves no data behind.
  function clearData() {
    byId("node-id").textContent = "";
    for (const id of ["node", "handoff", "handoff-errors"]) {
      byId(id).replaceChildren();
    }
    for (const id of ["tiers", "cluster-nodes", "hot-objects", "errors"]) {
      byId(id).tBodies[0].replaceChildren();
    }
    byId("cluster-summary").replaceChildren();
    byId("hot-note").textContent = "";
  }

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  async function refusalReason(response) {
    try {
      const body = await response.json();
      return body && body.error ? String(body.error) : "HTTP " + response.status;
    } catch (_) {
      return "HTTP " + response.status;
    }
  }

  function askForToken(error) {
    byId("content").hidden = true;
    clearData();
    byId("login").hidden = false;
    byId("login-error").textContent = error;
    setState("Locked: this node needs its admin token.", false);
    byId("token").focus();
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }

  async function refresh() {
    clearTimeout(timer);
    const token = storedToken();
    const headers = token ? { Authorization: "Bearer " + token } : {};
    let response;
    try {
      response = await fetch("/status.json", { headers, cache: "no-store", credentials: "omit" });
    } catch (e) {
      setState("Cannot reach the node (" + e.message + "); showing the last answer.", true);
      later();
      return;
    }
    if (response.status === 401 || response.status === 403) {
      const why = await refusalReason(response);
      if (token) {
        sessionStorage.removeItem(TOKEN_KEY);
        askForToken("The token was refused: " + why);
      } else {
        askForToken("");
      }
      return;
    }
    if (!response.ok) {
      setState("/status.json answered " + response.status + "; showing the last answer.", true);
      later();
      return;
    }
    let status;
    try {
      status = await response.json();
    } catch (e) {
      setState("/status.json is not readable (" + e.message + ").", true);
      later();
      return;
    }
    render(status);
    later();
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = byId("token");
      const token = input.value.trim();
      input.value = "";
      if (!token) {
        return;
      }
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch (_) {
        byId("login-error").textContent = "This browser does not let the page keep the token.";
        return;
      }
      byId("login-error").textContent = "";
      setState("Checking the token…", false);
      refresh();
    });
    refresh();
  });
})();
