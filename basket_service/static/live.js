// Shared by both pages: the live feed (server-sent events on api/events) with a visible
// connection state and reconnection by itself, plus small formatting and DOM helpers.
"use strict";

const fmtWon = (n) => new Intl.NumberFormat("ko-KR").format(n) + "원";

const pad2 = (n) => String(n).padStart(2, "0");

// Local time as HH:MM:SS, with the date in front when it is not today.
function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const hms = pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  if (d.toDateString() === new Date().toDateString()) return hms;
  return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " + hms;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function lineRows(lines) {
  return lines.map((ln) => el("tr", ln.known ? {} : { class: "unknown" },
    el("td", { text: ln.known ? ln.name : ln.code + " (unknown code)", title: ln.code }),
    el("td", { class: "num", text: String(ln.count) }),
    el("td", { class: "num", text: fmtWon(ln.unit_price) }),
    el("td", { class: "num", text: fmtWon(ln.amount) })));
}

// live(handlers): handlers.snapshot/basket/receipt/fleet(data). The page shows "live" while the feed
// is open and "connection lost" otherwise; a broken feed is replaced after 1-10 s, and one that
// goes quiet (no ping for 40 s) is treated as broken.
function live(handlers) {
  const conn = document.getElementById("conn");
  const health = document.getElementById("dbhealth");
  let source = null;
  let retry = null;
  let delay = 1000;
  let lastSeen = Date.now();

  function setLive(ok) {
    conn.textContent = ok ? "live" : "connection lost — reconnecting…";
    conn.className = "conn " + (ok ? "live" : "lost");
    document.body.classList.toggle("stale", !ok);
    conn.dataset.state = ok ? "live" : "lost";
  }

  function reconnectLater() {
    if (retry) return;
    retry = setTimeout(() => { retry = null; open(); }, delay);
    delay = Math.min(delay * 2, 10000);
  }

  function on(name, fn) {
    source.addEventListener(name, (ev) => {
      lastSeen = Date.now();
      const data = JSON.parse(ev.data);
      if (fn) fn(data);
    });
  }

  function open() {
    if (source) source.close();
    source = new EventSource("api/events");
    on("snapshot", (d) => {
      delay = 1000;
      setLive(true);
      showHealth(d.health);
      handlers.snapshot && handlers.snapshot(d);
    });
    on("basket", handlers.basket);
    on("receipt", handlers.receipt);
    on("fleet", handlers.fleet);
    on("health", showHealth);
    on("ping", null);
    source.onerror = () => {
      setLive(false);
      // CONNECTING: the browser retries by itself; CLOSED (e.g. an HTTP error): we do.
      if (source.readyState === EventSource.CLOSED) reconnectLater();
    };
  }

  function showHealth(h) {
    const ok = !h || h.database === "ok" || h.database === "unknown";
    health.hidden = ok;
    health.textContent = ok ? "" : "Database " + h.database + " — the figures shown may be old.";
  }

  setInterval(() => {
    if (Date.now() - lastSeen > 40000) { lastSeen = Date.now(); setLive(false); open(); }
  }, 5000);
  setLive(false);
  open();
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({ headers: { Accept: "application/json" } }, options));
  let body = null;
  try { body = await r.json(); } catch (e) { body = { detail: r.status + " " + r.statusText }; }
  return { ok: r.ok, status: r.status, body };
}
