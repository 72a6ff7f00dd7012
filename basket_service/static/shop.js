// The shopper's page (docs/shopper.md): pair with the PIN on the basket's display, watch the
// cart live (server-sent events from /shop/<n>/api/events), check out or cancel. Everything
// is built with textContent: product names come from the catalogue, never as HTML.
"use strict";
(() => {
  const basket = location.pathname.split("/")[2];
  const api = "/shop/" + basket + "/api/";
  const $ = (id) => document.getElementById(id);
  const won = (n) => n.toLocaleString("ko-KR") + "원";
  let doc = null;

  $("basketno").textContent = "#" + basket;

  function show(id) {
    for (const s of ["pair", "cart", "code", "ended"]) $(s).hidden = s !== id;
  }

  function say(text, info) {
    const m = $("message");
    m.textContent = text || "";
    m.hidden = !text;
    m.classList.toggle("info", !!info);
  }

  const REASONS = {
    wrong_pin: (e) => "PIN이 틀렸습니다 · Wrong PIN" +
      (e.tries_left !== undefined ? " (" + e.tries_left + "회 남음 · " + e.tries_left + " tries left)" : ""),
    locked: (e) => "잘못된 PIN이 많아 잠겼습니다 · Too many wrong PINs: locked until " + localTime(e.until),
    already_paired: () => "이 바구니는 다른 휴대폰과 연결되어 있습니다 · This basket is paired with another phone",
    not_paired: () => "이 휴대폰은 바구니와 연결되어 있지 않습니다 · This phone is not paired with the basket",
    busy: () => "직원이 사용 중인 바구니입니다 · Staff are using this basket",
    offline: () => "바구니가 오프라인입니다. 직원에게 문의하세요 · The basket is offline: ask staff",
    empty_cart: () => "빈 바구니는 결제할 수 없습니다 · An empty basket cannot be checked out",
    unknown_items: () => "가격을 모르는 상품이 있습니다. 직원에게 문의하세요 · Ask staff: an item is not in the catalogue",
    not_empty: () => "바구니가 비어 있을 때만 취소할 수 있습니다 · Cancel works only with an empty basket",
    unconfirmed: () => "장바구니를 확인하는 중입니다. 잠시 후 다시 시도하세요 · The cart is being updated: try again in a moment",
    declined: () => "결제가 거절되었습니다 · The payment was declined",
  };

  function localTime(iso) {
    const d = new Date(iso);
    return isNaN(d) ? String(iso || "") : d.toLocaleTimeString("ko-KR", {hour: "2-digit", minute: "2-digit"});
  }

  async function post(what, body) {
    let resp;
    try {
      resp = await fetch(api + what, {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {})});
    } catch (e) {
      say("연결할 수 없습니다 · Cannot reach the store's server");
      return null;
    }
    let data = {};
    try { data = await resp.json(); } catch (e) { /* not JSON */ }
    if (!resp.ok) {
      const why = REASONS[data.refused];
      say(why ? why(data) : (data.detail || "오류 · Error " + resp.status));
      return null;
    }
    say("");
    return data;
  }

  function line(ln) {
    const node = $("line-tpl").content.firstElementChild.cloneNode(true);
    node.querySelector(".name").textContent = ln.known ? ln.name : ln.code;
    node.dataset.code = ln.code;
    if (!ln.known) {
      node.classList.add("unknown");
      node.querySelector(".ask").hidden = false;
      node.querySelector(".detail").textContent = "× " + ln.count;
      node.querySelector(".amount").textContent = "?";
      return node;
    }
    const off = ln.discount_percent ? " (" + ln.discount_percent + "% 할인 · off " + won(ln.price) + ")" : "";
    node.querySelector(".detail").textContent = won(ln.unit_price) + " × " + ln.count + off;
    node.querySelector(".amount").textContent = won(ln.amount);
    const pic = node.querySelector(".pic");
    if (ln.image_url && /^https:\/\//.test(ln.image_url)) {
      pic.addEventListener("error", () => { pic.hidden = true; });
      pic.src = ln.image_url;
      pic.hidden = false;
    }
    return node;
  }

  function render(d) {
    doc = d;
    if (d.error) { say("서버 오류 · " + d.error); return; }
    if (d.ended) {
      const r = d.ended.receipt;
      if (d.ended.outcome === "paid" && r) { location.assign("/shop/receipts/" + encodeURIComponent(r)); return; }
      $("endedtitle").textContent = "쇼핑이 끝났습니다 · Your session has ended";
      show("ended");
      return;
    }
    if (!d.paired) {
      show("pair");
      const form = $("pairform");
      form.hidden = d.pairing !== "free";
      $("pairnote").textContent = d.pairing === "taken" ? REASONS.already_paired()
        : d.pairing === "locked" ? REASONS.locked({until: d.locked_until}) : "";
      return;
    }
    const pay = d.payment;
    if (pay && pay.status === "pending" && pay.code) {
      $("codetext").textContent = pay.code;
      show("code");
      return;
    }
    show("cart");
    const list = $("lines");
    list.replaceChildren(...d.lines.map(line));
    $("count").textContent = d.items + "개 · " + d.items + (d.items === 1 ? " item" : " items");
    $("emptycart").hidden = d.lines.length > 0;
    $("total").textContent = won(d.total);
    $("asknote").hidden = !d.unknown.length;
    $("pay").disabled = !d.items || d.unknown.length > 0;
    $("cancel").disabled = d.items > 0;
  }

  async function refresh() {
    try {
      const resp = await fetch(api + "state", {credentials: "same-origin"});
      if (resp.ok) render(await resp.json());
    } catch (e) { /* the feed reconnects */ }
  }

  $("pairform").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const d = await post("pair", {pin: $("pin").value.trim()});
    $("pin").value = "";
    if (d) { render(d); connect(); }
  });
  $("pay").addEventListener("click", async () => {
    $("pay").disabled = true;
    const d = await post("checkout");
    if (d && d.receipt) { location.assign("/shop/receipts/" + encodeURIComponent(d.receipt.key)); return; }
    if (d && d.payment) say("결제 진행 중 · Payment " + d.payment.status, true);
    refresh();
  });
  $("cancel").addEventListener("click", async () => {
    const d = await post("cancel");
    if (d) refresh();
  });
  $("again").addEventListener("click", () => location.reload());

  let feed = null;
  function connect() {
    if (feed) feed.close();
    feed = new EventSource(api + "events");
    feed.addEventListener("cart", (ev) => render(JSON.parse(ev.data)));
    feed.addEventListener("open", () => { $("conn").hidden = true; });
    feed.addEventListener("error", () => {
      const c = $("conn");
      c.textContent = "다시 연결 중 · reconnecting";
      c.hidden = false;
    });
  }
  connect();
})();
