// The order lookup, on both pages, and the recent orders on the operator page (when the page has that list). Every
// value that comes from an order or the server is put into the page as text (text nodes, textContent), never
// parsed as HTML: orders are data from outside and may hold markup.
"use strict";

(function () {
  // The rule the server applies (src/domain/order_uid.rs): ids outside it can never exist.
  const ORDER_UID = /^[A-Za-z0-9_-]{1,64}$/;
  const RECENT_PAGE = 10;
  // Below this, a lookup finishes before a spinner would be noticed; showing one would only flicker.
  const LOADING_DELAY_MS = 120;

  const $ = (id) => document.getElementById(id);
  // Where the operator page keeps ADMIN_TOKEN (admin.js sets it): this tab only, gone when it closes.
  const TOKEN_KEY = "order-service.admin-token";
  const form = $("lookup");
  const input = $("order-id");
  const message = $("message");
  const welcome = $("welcome");
  const orderView = $("order");
  const announce = $("announce");

  /** Builds an element; string children become text nodes, so data can never become markup. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function money(value, currency) {
    if (typeof value !== "number") return text(value);
    return currency ? `${integer.format(value)} ${currency}` : integer.format(value);
  }

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  /** "2021-11-26 06:22:19 UTC": unambiguous whatever the reader's locale; the raw value when it is no date. */
  function utc(date, raw) {
    if (Number.isNaN(date.getTime())) return text(raw);
    return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
  }

  const isoDate = (value) => utc(new Date(String(value)), value);
  const unixDate = (seconds) => (typeof seconds === "number" ? utc(new Date(seconds * 1000), seconds) : text(seconds));

  // ---- Messages (loading, not found, invalid, unavailable) -------------------------------------------------

  function showMessage(kind, title, ...details) {
    message.replaceChildren(el("strong", {}, title), ...details.map((d) => (d instanceof Node ? d : el("span", {}, d))));
    message.dataset.kind = kind;
    message.hidden = false;
  }

  function clearMessage() {
    message.hidden = true;
    message.replaceChildren();
    delete message.dataset.kind;
  }

  /** Quotes a value the reader typed; the quotes make leading or trailing spaces and empty strings visible. */
  const quoted = (value) => `\u201c${value}\u201d`;

  /** Request headers: JSON, and on the operator page the admin token when one was given. */
  function apiHeaders() {
    const headers = { accept: "application/json" };
    const token = document.body.dataset.page === "operator" ? window.sessionStorage.getItem(TOKEN_KEY) : null;
    if (token) headers.authorization = `Bearer ${token}`;
    return headers;
  }

  // ---- Order lookup ---------------------------------------------------------------------------------------

  let inFlight = null;
  let shownId = null;

  function currentId() {
    return new URLSearchParams(window.location.search).get("id");
  }

  function urlFor(id) {
    return `/?id=${encodeURIComponent(id)}`;
  }

  /** Shows the order in the address bar, adding a history entry when it is a new one. */
  function navigate(id) {
    if (currentId() !== id) window.history.pushState({ id }, "", urlFor(id));
    show(id);
  }

  function show(id) {
    if (inFlight) inFlight.abort();
    inFlight = null;
    input.value = id === null ? "" : id;
    input.removeAttribute("aria-invalid");
    shownId = id;
    markCurrentRecent();
    if (id === null || id === "") {
      document.title = "Orders · order-service";
      clearMessage();
      orderView.hidden = true;
      welcome.hidden = false;
      return;
    }
    welcome.hidden = true;
    document.title = `Order ${id} · order-service`;
    if (!ORDER_UID.test(id)) {
      orderView.hidden = true;
      input.setAttribute("aria-invalid", "true");
      showMessage(
        "invalid",
        "Not a valid order id",
        `${quoted(id)} cannot be an order id: an order id is 1 to 64 ASCII letters, digits, "_" or "-".`
      );
      return;
    }
    lookUp(id);
  }

  async function lookUp(id) {
    const controller = new AbortController();
    inFlight = controller;
    const spinner = setTimeout(() => {
      orderView.hidden = true;
      showMessage("loading", `Looking up ${quoted(id)}\u2026`);
    }, LOADING_DELAY_MS);
    let response;
    let body;
    try {
      response = await fetch(`/order/${encodeURIComponent(id)}`, {
        headers: apiHeaders(),
        signal: controller.signal,
      });
      body = await response.text();
    } catch (error) {
      if (controller.signal.aborted) return;
      clearTimeout(spinner);
      unavailable(id, "The service could not be reached. Check that it is running, then retry.");
      return;
    } finally {
      clearTimeout(spinner);
      if (inFlight === controller) inFlight = null;
    }
    if (controller.signal.aborted) return;
    handleResponse(id, response, body);
  }

  function handleResponse(id, response, body) {
    if (response.ok) {
      let order;
      try {
        order = JSON.parse(body);
      } catch (_) {
        unavailable(id, "The service answered with something that is not JSON.");
        return;
      }
      clearMessage();
      renderOrder(order);
      announce.textContent = `Order ${id} loaded.`;
      return;
    }
    orderView.hidden = true;
    const serverMessage = errorMessage(body);
    if (response.status === 404) {
      showMessage("not-found", "Order not found", `No order has the id ${quoted(id)}.`);
    } else if (response.status === 400) {
      input.setAttribute("aria-invalid", "true");
      showMessage("invalid", "Not a valid order id", serverMessage || `${quoted(id)} cannot be an order id.`);
    } else {
      unavailable(id, `The service answered ${response.status}${serverMessage ? `: ${serverMessage}` : "."}`);
    }
  }

  /** The `message` of the service's error body, if it is one. */
  function errorMessage(body) {
    try {
      const parsed = JSON.parse(body);
      return parsed && typeof parsed.message === "string" ? parsed.message : "";
    } catch (_) {
      return "";
    }
  }

  function unavailable(id, detail) {
    orderView.hidden = true;
    const retry = el("button", { type: "button", onclick: () => show(id) }, "Retry");
    showMessage("unavailable", "Service unavailable", detail, el("div", {}, retry));
  }

  // ---- Rendering an order ---------------------------------------------------------------------------------

  /** The value cell of a field; empty values show as a muted dash. */
  function valueCell(raw, field, cls) {
    const shown = text(raw);
    const dd = el("dd", { dataset: { field }, class: cls || "" }, shown === "" ? "\u2014" : shown);
    if (shown === "") dd.classList.add("empty");
    return dd;
  }

  /** A definition list from [label, value, field, class] rows. */
  function fields(list, rows) {
    list.replaceChildren(...rows.flatMap(([label, v, field, cls]) => [el("dt", {}, label), valueCell(v, field, cls)]));
  }

  /** The same as tiles: each label above its value. */
  function facts(list, rows) {
    list.replaceChildren(...rows.map(([label, v, field, cls]) => el("div", {}, el("dt", {}, label), valueCell(v, field, cls))));
  }

  function renderOrder(order) {
    const delivery = order.delivery || {};
    const payment = order.payment || {};
    const items = Array.isArray(order.items) ? order.items : [];
    const currency = text(payment.currency);
    const statuses = [...new Set(items.map((item) => text(item.status)))].join(", ");

    $("order-title").textContent = text(order.order_uid);
    document.title = `Order ${text(order.order_uid)} · order-service`;
    $("order-amount").textContent = money(payment.amount, currency);

    facts($("summary"), [
      ["Track number", order.track_number, "track_number", "mono"],
      ["Customer", order.customer_id, "customer_id"],
      ["Created", isoDate(order.date_created), "date_created"],
      ["Status", statuses, "status"],
    ]);
    fields($("details"), [
      ["Entry", order.entry, "entry"],
      ["Delivery service", order.delivery_service, "delivery_service"],
      ["Locale", order.locale, "locale"],
      ["Shard key", order.shardkey, "shardkey"],
      ["SM id", order.sm_id, "sm_id"],
      ["OOF shard", order.oof_shard, "oof_shard"],
      ["Internal signature", order.internal_signature, "internal_signature"],
    ]);
    fields($("delivery"), [
      ["Name", delivery.name, "delivery.name"],
      ["Phone", delivery.phone, "delivery.phone"],
      ["Email", delivery.email, "delivery.email"],
      ["Address", delivery.address, "delivery.address"],
      ["City", delivery.city, "delivery.city"],
      ["Region", delivery.region, "delivery.region"],
      ["ZIP", delivery.zip, "delivery.zip"],
    ]);
    fields($("payment"), [
      ["Transaction", payment.transaction, "payment.transaction", "mono"],
      ["Request id", payment.request_id, "payment.request_id"],
      ["Provider", payment.provider, "payment.provider"],
      ["Bank", payment.bank, "payment.bank"],
      ["Paid", unixDate(payment.payment_dt), "payment.payment_dt"],
      ["Currency", currency, "payment.currency"],
      ["Goods", money(payment.goods_total, currency), "payment.goods_total", "num"],
      ["Delivery cost", money(payment.delivery_cost, currency), "payment.delivery_cost", "num"],
      ["Custom fee", money(payment.custom_fee, currency), "payment.custom_fee", "num"],
      ["Amount", money(payment.amount, currency), "payment.amount", "num total"],
    ]);

    const rows = items.map((item) =>
      el(
        "tr",
        {},
        el("td", { dataset: { field: "name" } }, text(item.name)),
        el("td", { dataset: { field: "brand" } }, text(item.brand)),
        el("td", {}, text(item.size)),
        el("td", { class: "num", dataset: { field: "price" } }, money(item.price, currency)),
        el("td", { class: "num sale", dataset: { field: "sale" } }, typeof item.sale === "number" ? `\u2212${item.sale}%` : text(item.sale)),
        el("td", { class: "num", dataset: { field: "total_price" } }, money(item.total_price, currency)),
        el("td", { class: "num" }, text(item.status)),
        el("td", { class: "mono" }, text(item.track_number)),
        el("td", { class: "mono" }, text(item.nm_id))
      )
    );
    $("items").tBodies[0].replaceChildren(...rows);
    $("item-count").textContent = String(items.length);

    $("raw-json").textContent = JSON.stringify(order, null, 2);
    $("copy-result").textContent = "";
    welcome.hidden = true;
    orderView.hidden = false;
  }

  // ---- Copying the raw JSON -------------------------------------------------------------------------------

  async function copyJson() {
    const source = $("raw-json");
    const result = $("copy-result");
    try {
      if (!navigator.clipboard) throw new Error("no clipboard API");
      await navigator.clipboard.writeText(source.textContent);
      result.textContent = "Copied to the clipboard.";
    } catch (_) {
      // Without the clipboard API (or its permission), select the text so Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      const copied = document.execCommand && document.execCommand("copy");
      result.textContent = copied ? "Copied to the clipboard." : "Selected: press Ctrl+C to copy.";
    }
  }

  // ---- Recent orders --------------------------------------------------------------------------------------

  // Only the operator page lists orders; the public page only looks them up.
  const hasRecent = $("recent-list") !== null;
  // `before` cursors of the pages above the one shown, so "Newer" can go back.
  const newerCursors = [];
  let recentCursor = null;
  let recentRequest = 0;

  async function loadRecent(before) {
    const request = ++recentRequest;
    const list = $("recent-list");
    const status = $("recent-message");
    status.textContent = "Loading\u2026";
    list.setAttribute("aria-busy", "true");
    let page;
    try {
      // One more than shown tells whether an older page exists.
      const query = `limit=${RECENT_PAGE + 1}${before === null ? "" : `&before=${encodeURIComponent(before)}`}`;
      const response = await fetch(`/orders?${query}`, { headers: apiHeaders() });
      if (response.status === 401) throw new Error("the admin token is missing or wrong");
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      page = await response.json();
      if (!Array.isArray(page)) throw new Error("not a list");
    } catch (error) {
      if (request !== recentRequest) return;
      list.removeAttribute("aria-busy");
      status.textContent = `Could not load the recent orders (${error.message}).`;
      return;
    }
    if (request !== recentRequest) return;
    list.removeAttribute("aria-busy");
    recentCursor = before;
    const shown = page.slice(0, RECENT_PAGE);
    list.replaceChildren(...shown.map(recentEntry));
    status.textContent = shown.length === 0 ? (before === null ? "No orders yet." : "No older orders.") : "";
    $("recent-newer").disabled = newerCursors.length === 0;
    $("recent-older").disabled = page.length <= RECENT_PAGE;
    $("recent-older").dataset.before = shown.length ? String(shown[shown.length - 1].id) : "";
    markCurrentRecent();
  }

  function recentEntry(order) {
    const id = text(order.order_uid);
    const meta = [text(order.customer_id), order.date_created ? isoDate(order.date_created) : ""].filter(Boolean).join(" \u00b7 ");
    const link = el(
      "a",
      { href: urlFor(id), dataset: { uid: id } },
      el("span", { class: "r-uid" }, id),
      el("span", { class: "r-meta" }, meta)
    );
    link.addEventListener("click", (event) => {
      // Let the browser handle new-tab and new-window clicks.
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      navigate(id);
    });
    return el("li", {}, link);
  }

  function markCurrentRecent() {
    if (!hasRecent) return;
    for (const link of $("recent-list").querySelectorAll("a")) {
      if (link.dataset.uid === shownId) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  // ---- Wiring ---------------------------------------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = input.value.trim();
    if (id === "") {
      input.setAttribute("aria-invalid", "true");
      showMessage("invalid", "Enter an order id", "Type the id of an order, then press Enter.");
      input.focus();
      return;
    }
    navigate(id);
  });
  window.addEventListener("popstate", () => show(currentId()));
  $("copy-json").addEventListener("click", copyJson);
  if (hasRecent) {
    const reloadRecent = () => {
      newerCursors.length = 0;
      loadRecent(null);
    };
    $("recent-refresh").addEventListener("click", reloadRecent);
    // admin.js announces a new token: what failed without it may work now.
    document.addEventListener("admin-token-changed", reloadRecent);
    $("recent-older").addEventListener("click", () => {
      const before = $("recent-older").dataset.before;
      if (!before) return;
      newerCursors.push(recentCursor);
      loadRecent(Number(before));
    });
    $("recent-newer").addEventListener("click", () => {
      if (newerCursors.length === 0) return;
      loadRecent(newerCursors.pop());
    });
  }

  show(currentId());
  if (hasRecent) loadRecent(null);
})();
