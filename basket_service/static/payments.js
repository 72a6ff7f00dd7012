// The counter's checkout codes on the dashboard (docs/shopper.md): the shoppers' pending
// checkouts (GET api/payments, every 2 s) and confirming the code a shopper shows once the
// money is taken (POST api/payments/confirm). textContent only.
"use strict";
(() => {
  const list = document.getElementById("payments");
  const msg = document.getElementById("paymsg");

  async function refresh() {
    try {
      const resp = await fetch("api/payments");
      if (!resp.ok) return;
      const pending = await resp.json();
      list.replaceChildren(...pending.map((p) => el("li", { "data-code": p.code },
        el("b", { text: p.code }), " basket " + p.basket + " · " + fmtWon(p.total))));
    } catch (e) { /* the board's feed shows a lost connection */ }
  }

  document.getElementById("payform").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = document.getElementById("paycode");
    msg.className = "";
    let resp, data = {};
    try {
      resp = await fetch("api/payments/confirm", { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code: input.value }) });
      data = await resp.json();
    } catch (e) {
      msg.textContent = "cannot reach the service";
      msg.className = "error";
      return;
    }
    if (resp.ok) {
      msg.textContent = "paid: receipt " + data.receipt + ", basket " + data.basket + ", " + fmtWon(data.total);
      input.value = "";
    } else {
      msg.textContent = data.detail || "refused (" + resp.status + ")";
      msg.className = "error";
    }
    refresh();
  });

  refresh();
  setInterval(refresh, 2000);
})();
