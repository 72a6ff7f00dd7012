// The receipts page: one day's receipts and their totals; a new receipt reloads the list.
"use strict";

const dayInput = document.getElementById("day");

function localDay() {
  const d = new Date();
  return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" +
    String(d.getDate()).padStart(2, "0");
}

async function load() {
  const day = dayInput.value;
  const res = await api("api/receipts?day=" + encodeURIComponent(day));
  const summary = document.getElementById("summary");
  if (!res.ok) { summary.textContent = res.body.detail || "failed"; return; }
  const d = res.body;
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

dayInput.value = new URLSearchParams(location.search).get("day") || localDay();
dayInput.addEventListener("change", load);
live({ snapshot: load, receipt: load });
