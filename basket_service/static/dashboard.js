// The baskets page: one card per basket, kept current by the live feed; start / end /
// checkout through the JSON API; the receipt stays on the card after a checkout. Below the
// board, the products low on stock (api/stock), read again with the board's snapshot, after
// every receipt and every 30 s; oversold ones (negative stock) are marked as such.
"use strict";

const baskets = new Map();   // basket number -> latest document from the server
const receipts = new Map();  // basket number -> receipt of its last checkout (this page only)
const errors = new Map();    // basket number -> last operation error
const busy = new Set();
const board = document.getElementById("board");
const tpl = document.getElementById("basket-tpl");

function card(n) {
  let node = document.getElementById("basket-" + n);
  if (node) return node;
  node = tpl.content.firstElementChild.cloneNode(true);
  node.id = "basket-" + n;
  node.dataset.basket = n;
  node.querySelector("h2").textContent = "Basket " + n;
  for (const b of node.querySelectorAll("button[data-op]")) {
    b.addEventListener("click", () => operate(n, b.dataset.op));
  }
  // Keep the cards in basket order.
  const after = [...board.querySelectorAll("article.basket")]
    .find((a) => Number(a.dataset.basket) > n);
  board.insertBefore(node, after || null);
  document.getElementById("empty").hidden = true;
  return node;
}

function render(n) {
  const b = baskets.get(n);
  if (!b) return;
  const node = card(n);
  const avail = b.online === null ? "unknown" : (b.online ? "online" : "offline");
  node.dataset.state = b.state;
  node.dataset.online = avail;
  const pa = node.querySelector(".pill.avail");
  pa.textContent = avail;
  pa.className = "pill avail " + avail;
  const ps = node.querySelector(".pill.state");
  ps.textContent = b.state;
  ps.className = "pill state " + b.state;
  // The fleet's alerts for this basket (basket health, see the fleet page).
  const alerts = b.alerts || [];
  const badge = node.querySelector(".badge.alerts");
  node.dataset.alerts = alerts.length;
  badge.hidden = !alerts.length;
  badge.textContent = "경고 " + alerts.length;
  badge.title = alerts.map((a) => a.text).join("\n");
  badge.setAttribute("aria-label", alerts.length + " alert(s): " + alerts.map((a) => a.text).join("; "));
  const meta = [];
  if (b.session !== null) meta.push("session " + b.session + " since " + fmtTime(b.session_started_at));
  if (b.changed_at) meta.push("last change " + fmtTime(b.changed_at));
  node.querySelector(".meta").textContent = meta.join(" · ");
  node.querySelector("caption").textContent = b.state === "idle" && b.lines.length ? "last cart" :
    (b.lines.length ? b.items + " item(s)" : "empty cart");
  node.querySelector("tbody").replaceChildren(...lineRows(b.lines));
  node.querySelector(".sum").textContent = fmtWon(b.total);
  const isBusy = busy.has(n);
  node.querySelector('[data-op="start"]').disabled = isBusy || b.state !== "idle";
  node.querySelector('[data-op="end"]').disabled = isBusy || b.state !== "shopping";
  node.querySelector('[data-op="checkout"]').disabled = isBusy || b.state !== "shopping";
  const err = node.querySelector(".error");
  err.hidden = !errors.has(n);
  err.textContent = errors.get(n) || "";
  const rs = node.querySelector(".receipt");
  const r = receipts.get(n);
  rs.hidden = !r;
  if (r) {
    rs.replaceChildren(
      el("h3", { text: "Receipt " + r.receipt + " · " + fmtTime(r.created_at) }),
      el("table", {}, el("tbody", {}, ...lineRows(r.lines))),
      el("p", { class: "total" }, "Paid ", el("b", { class: "receipt-total", text: fmtWon(r.total) })));
  }
}

function confirmCheckout(n) {
  const b = baskets.get(n);
  const dlg = document.getElementById("confirm");
  document.getElementById("confirmtext").textContent =
    "Check out basket " + n + "? " + b.items + " item(s), total " + fmtWon(b.total) + ".";
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.returnValue = "";
    dlg.showModal();
    document.getElementById("confirmno").focus();
  });
}

async function operate(n, op) {
  if (op === "checkout" && !(await confirmCheckout(n))) return;
  busy.add(n);
  errors.delete(n);
  render(n);
  let res;
  try {
    res = await api("api/baskets/" + n + "/" + op, { method: "POST" });
  } catch (e) {
    res = { ok: false, body: { detail: "the dashboard server cannot be reached" } };
  }
  busy.delete(n);
  if (!res.ok) errors.set(n, res.body.detail || "failed");
  if (op === "checkout" && res.body && (res.body.receipt !== undefined)) {
    receipts.set(n, res.body.lines ? res.body : res.body.receipt);
  }
  if (op === "start" && res.ok) receipts.delete(n);
  render(n);
  refreshToday();
  return res;
}

async function startFromForm(ev) {
  ev.preventDefault();
  const input = document.getElementById("startno");
  const n = Number(input.value);
  const msg = document.getElementById("startmsg");
  msg.textContent = "";
  const res = await api("api/baskets/" + n + "/start", { method: "POST" });
  if (!res.ok) msg.textContent = "Basket " + n + ": " + (res.body.detail || "failed");
  else input.value = "";
}

async function refreshToday() {
  try {
    const res = await api("api/receipts?limit=1");
    if (res.ok) {
      document.getElementById("today").textContent =
        "today: " + res.body.count + " receipt(s), " + fmtWon(res.body.total);
    }
  } catch (e) { /* the connection state already shows it */ }
}

const STOCK_BELOW = 5;  // list stock of 5 or less
const STOCK_ROWS = 50;  // at most this many rows; the caption says how many there are

function stockState(n) {
  if (n < 0) return { cls: "negative", text: "oversold" };
  if (n === 0) return { cls: "out", text: "out of stock" };
  return { cls: "low", text: "low" };
}

async function refreshStock() {
  let res;
  try {
    res = await api("api/stock?below=" + STOCK_BELOW + "&limit=" + STOCK_ROWS);
  } catch (e) { return; /* the connection state already shows it */ }
  if (!res.ok) return;
  const d = res.body;
  document.getElementById("stockrows").replaceChildren(...d.products.map((p) => {
    const st = stockState(p.stock);
    return el("tr", { class: st.cls, "data-code": p.code },
      el("td", { text: p.code }),
      el("td", { text: p.name }),
      el("td", { text: p.category }),
      el("td", { class: "num stockno", text: String(p.stock) }),
      el("td", { class: "num", text: String(p.sales) }),
      el("td", { class: "stockstate", text: st.text }));
  }));
  document.getElementById("stockhint").textContent = "(stock " + d.below + " or less: " +
    d.count + " product(s)" + (d.count > d.products.length ? ", lowest " + d.products.length + " shown" : "") + ")";
  document.getElementById("stockempty").hidden = d.count > 0;
}

document.getElementById("startform").addEventListener("submit", startFromForm);
live({
  snapshot(d) {
    for (const b of d.baskets) { baskets.set(b.basket, b); render(b.basket); }
    refreshToday();
    refreshStock();
  },
  basket(b) { baskets.set(b.basket, b); render(b.basket); },
  receipt() { refreshToday(); refreshStock(); },
});
setInterval(refreshStock, 30000);
