// The receipts page: one day's receipts and their totals; a new receipt reloads the list.
"use strict";

const dayInput = document.getElementById("day");
// The day asked for; empty follows the server's today (its clock and time zone decide).
let chosen = new URLSearchParams(location.search).get("day") || "";

async function load() {
  const res = await api("api/receipts" + (chosen ? "?day=" + encodeURIComponent(chosen) : ""));
  const summary = document.getElementById("summary");
  if (!res.ok) { summary.textContent = res.body.detail || "failed"; return; }
  const d = res.body;
  dayInput.value = d.day;
  summary.replaceChildren(
    el("span", { text: d.day + ": " }),
    el("b", { id: "count", text: String(d.count) }), " receipt(s), total ",
    el("b", { id: "daytotal", text: fmtWon(d.total) }));
  document.getElementById("list").replaceChildren(...d.receipts.map((r) =>
    el("article", { id: "receipt-" + r.receipt },
      el("h3", { text: "Receipt " + r.receipt + " · basket " + r.basket + " · " + fmtTime(r.created_at) }),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Product" }),
        el("th", { class: "num", text: "Qty" }), el("th", { class: "num", text: "Unit" }),
        el("th", { class: "num", text: "Amount" }))), el("tbody", {}, ...lineRows(r.lines))),
      el("p", { class: "total" }, "Total ", el("b", { text: fmtWon(r.total) })))));
}

dayInput.addEventListener("change", () => { chosen = dayInput.value; load(); });
live({ snapshot: load, receipt: load });
