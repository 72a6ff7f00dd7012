// The fleet page: one row per basket with its latest health report and its alerts, sortable by
// any column; rows with an alert are highlighted. Kept current by the live feed (a `fleet` event
// carries one basket's new row) and by reading api/fleet again every 10 s, so a basket that went
// silent shows its alert even when nothing else changes. The update column shows an update's
// progress from the basket's report (`ota`) beside the release last pushed to it.
"use strict";

const rows = new Map();  // basket number -> latest row from api/fleet
const tbody = document.getElementById("fleetrows");
const table = document.getElementById("fleet");
let sortKey = "basket";
let sortDir = 1;  // 1 ascending, -1 descending
// Baskets whose row came by the live feed while a read of api/fleet was on its way: that read
// may be older, so it does not replace them.
let pushed = null;

const downReaders = (r) => (r.readers || []).filter((x) => x.state !== "ok").length;

// The value a column sorts by: a number, a string, or null (always last).
function sortValue(r, key) {
  switch (key) {
    case "alerts": return (r.alerts || []).length;
    case "readers": return r.readers && r.readers.length ? downReaders(r) : null;
    case "ota": return r.ota ? r.ota.state + " " + (r.ota.version || "") : null;
    case "last_seen":
      if (r.last_seen === null || r.last_seen === undefined) return null;
      return typeof r.last_seen === "number" ? r.last_seen : Date.parse(r.last_seen);
    default: {
      const v = r[key];
      return v === undefined ? null : v;
    }
  }
}

function compare(a, b) {
  const va = sortValue(a, sortKey);
  const vb = sortValue(b, sortKey);
  if (va === null || vb === null) {
    if (va !== vb) return va === null ? 1 : -1;
  } else if (va !== vb) {
    const c = typeof va === "number" && typeof vb === "number" ? va - vb :
      String(va).localeCompare(String(vb), "ko", { numeric: true });
    if (c !== 0) return c * sortDir;
  }
  return a.basket - b.basket;
}

function fmtUptime(s) {
  if (s === null || s === undefined) return "—";
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + pad2(m) + "m";
  return m + "m " + pad2(s % 60) + "s";
}

function fmtAgo(iso) {
  const t = typeof iso === "number" ? iso * 1000 : Date.parse(iso);
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return s + "초 전";
  if (s < 3600) return Math.floor(s / 60) + "분 전";
  return Math.floor(s / 3600) + "시간 전";
}

function readersCell(r) {
  const list = r.readers || [];
  if (!list.length) return el("td", { class: "readers", text: "—", title: "RFID 없음 · no RFID reader" });
  const down = list.filter((x) => x.state !== "ok");
  const td = el("td", { class: "readers" + (down.length ? " bad" : ""),
    title: list.map((x) => x.name + ": " + x.state +
      (x.last_read_s === null ? "" : " (" + x.last_read_s + " s since a read)")).join("\n") },
  (list.length - down.length) + "/" + list.length + " ok");
  for (const x of down) td.append(" · ", el("span", { class: "down", text: x.name + " down" }));
  return td;
}

const OTA_BAD = ["failed", "rolled_back"];
const OTA_WORDS = { idle: "대기 · idle", deferred: "세션 후 · deferred", downloading: "받는 중 · downloading",
  staged: "준비됨 · staged", trial: "시험 중 · trial", ok: "완료 · ok", failed: "실패 · failed",
  rolled_back: "되돌림 · rolled back" };

// The update's state and version (and error); the pushed release when the basket runs another.
function otaCell(r) {
  const o = r.ota;
  const td = el("td", { class: "ota" + (o && OTA_BAD.includes(o.state) ? " bad" : ""),
    "data-state": o ? o.state : "off",
    title: (o && o.error ? o.error + "\n" : "") + (r.pushed_version ? "pushed " + r.pushed_version : "") });
  if (!o) td.append(r.version ? "꺼짐 · off" : "—");
  else {
    td.append(el("span", { class: "otastate", text: OTA_WORDS[o.state] || o.state }));
    if (o.version) td.append(" ", el("span", { class: "otaversion", text: o.version }));
    if (o.error) td.append(el("div", { class: "otaerror", text: o.error }));
  }
  if (r.pushed_version && r.pushed_version !== r.version &&
      !(o && o.version === r.pushed_version)) {
    td.append(el("div", { class: "otapushed", text: "→ " + r.pushed_version }));
  }
  return td;
}

function alertsCell(r) {
  const list = r.alerts || [];
  const td = el("td", { class: "alerts" });
  if (!list.length) td.append(el("span", { class: "okmark", text: "정상 · ok" }));
  for (const a of list) td.append(el("span", { class: "alert " + a.kind, title: a.kind, text: a.text }));
  return td;
}

function rowFor(r) {
  const avail = r.online === null || r.online === undefined ? "unknown" : (r.online ? "online" : "offline");
  const alerts = (r.alerts || []).length;
  const tr = el("tr", { id: "fleet-" + r.basket, "data-basket": String(r.basket),
    "data-alerts": String(alerts), class: alerts ? "alerting" : "" },
  el("td", { class: "num basketno" }, String(r.basket), " ",
    el("span", { class: "pill avail " + avail, text: avail })),
  el("td", { class: "version", text: r.version || "—", title: r.runtime || "" }),
  el("td", { class: "num uptime", text: fmtUptime(r.uptime_s) }),
  el("td", { class: "lastseen", title: r.last_seen || "",
    text: r.last_seen ? fmtTime(r.last_seen) + " · " + fmtAgo(r.last_seen) : "—" }),
  el("td", { class: "num rssi", text: r.rssi === null || r.rssi === undefined ? "—" : r.rssi + " dBm" }),
  readersCell(r),
  el("td", { class: "num battery", text: r.battery_mv === null || r.battery_mv === undefined ? "—" :
    new Intl.NumberFormat("ko-KR").format(r.battery_mv) + " mV" }),
  otaCell(r),
  alertsCell(r));
  return tr;
}

function render() {
  const list = [...rows.values()].sort(compare);
  tbody.replaceChildren(...list.map(rowFor));
  document.getElementById("empty").hidden = list.length > 0;
  const bad = list.filter((r) => (r.alerts || []).length).length;
  document.getElementById("fleetsum").textContent =
    list.length + "대 중 " + bad + "대 경고 · " + bad + " of " + list.length + " with alerts";
  for (const th of table.querySelectorAll("th[data-key]")) {
    th.setAttribute("aria-sort", th.dataset.key === sortKey ?
      (sortDir > 0 ? "ascending" : "descending") : "none");
  }
}

async function load() {
  const msg = document.getElementById("fleetmsg");
  let res;
  pushed = new Set();
  try {
    res = await api("api/fleet");
  } catch (e) {
    return;  // the connection state already shows it
  }
  if (!res.ok) { msg.hidden = false; msg.textContent = res.body.detail || "failed"; return; }
  msg.hidden = true;
  const fresh = new Map(res.body.map((r) => [r.basket, r]));
  for (const n of pushed || []) if (rows.has(n)) fresh.set(n, rows.get(n));
  pushed = null;
  rows.clear();
  for (const [n, r] of fresh) rows.set(n, r);
  render();
}

for (const th of table.querySelectorAll("th[data-key]")) {
  th.querySelector("button").addEventListener("click", () => {
    if (sortKey === th.dataset.key) sortDir = -sortDir;
    else { sortKey = th.dataset.key; sortDir = 1; }
    render();
  });
}

live({
  snapshot: load,
  fleet(r) {
    if (r && r.basket !== undefined) {
      rows.set(r.basket, r);
      if (pushed) pushed.add(r.basket);
      render();
    } else load();
  },
});
setInterval(load, 10000);
