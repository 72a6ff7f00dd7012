// The receipt page: /shop/receipts/<key> reads /shop/receipts/<key>/doc (textContent only).
"use strict";
(async () => {
  const key = location.pathname.split("/")[3];
  const $ = (id) => document.getElementById(id);
  const won = (n) => n.toLocaleString("ko-KR") + "원";
  const base = "/shop/receipts/" + encodeURIComponent(key);
  let r;
  try {
    const resp = await fetch(base + "/doc");
    if (!resp.ok) throw new Error(resp.status === 404 ? "no such receipt" : "error " + resp.status);
    r = await resp.json();
  } catch (e) {
    $("message").textContent = "영수증을 찾을 수 없습니다 · " + e.message;
    $("message").hidden = false;
    return;
  }
  $("receiptno").textContent = "#" + r.receipt;
  $("when").textContent = "바구니 · basket " + r.basket + " · " + new Date(r.created_at).toLocaleString("ko-KR");
  const rows = r.lines.map((ln) => {
    const tr = document.createElement("tr");
    const what = document.createElement("td");
    what.textContent = (ln.known ? ln.name : ln.code + " (직원 확인 · checked by staff)") + " × " + ln.count;
    const amount = document.createElement("td");
    amount.className = "num";
    amount.textContent = won(ln.amount);
    tr.append(what, amount);
    return tr;
  });
  $("rlines").replaceChildren(...rows);
  $("rtotal").textContent = won(r.total);
  $("qr").src = base + "/qr.svg";
  const link = $("keep");
  link.href = location.href;
  link.textContent = location.href;
})();
