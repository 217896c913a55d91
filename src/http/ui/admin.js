// The operator page's own part: the admin token, the dead letters (shortened reasons, the full record on demand)
// and their replay. app.js does the order lookup and the recent orders. As there, every value from the server is
// put into the page as text, never parsed as HTML: dead letters are, by definition, whatever arrived.
"use strict";

(function () {
  const PAGE = 10;
  // Shared with app.js: this tab only, gone when it closes.
  const TOKEN_KEY = "order-service.admin-token";

  const $ = (id) => document.getElementById(id);

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

  const text = (value) => (value === null || value === undefined ? "" : String(value));

  /** Request headers with the token; a replay also says JSON, which no cross-site form can send. */
  function headers(json) {
    const result = { accept: "application/json" };
    const token = window.sessionStorage.getItem(TOKEN_KEY);
    if (token) result.authorization = `Bearer ${token}`;
    if (json) result["content-type"] = "application/json";
    return result;
  }

  async function request(method, path) {
    const response = await fetch(path, { method, headers: headers(method !== "GET"), body: method === "GET" ? undefined : "{}" });
    if (response.status === 401) throw new Error("the admin token is missing or wrong");
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = body && typeof body.message === "string" ? `: ${body.message}` : "";
      throw new Error(`HTTP ${response.status}${detail}`);
    }
    return body;
  }

  // ---- Token ----------------------------------------------------------------------------------------------

  function showTokenStatus() {
    $("token-status").textContent = window.sessionStorage.getItem(TOKEN_KEY)
      ? "A token is set for this tab."
      : "No token set: needed when the service runs with ADMIN_TOKEN.";
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("admin-token").value.trim();
    if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
    else window.sessionStorage.removeItem(TOKEN_KEY);
    $("admin-token").value = "";
    showTokenStatus();
    document.dispatchEvent(new Event("admin-token-changed"));
  });

  // ---- Dead letters ---------------------------------------------------------------------------------------

  const newerCursors = [];
  let cursor = null;
  let generation = 0;

  async function load(before) {
    const mine = ++generation;
    const status = $("dead-letters-message");
    status.textContent = "Loading\u2026";
    let page;
    try {
      const query = `limit=${PAGE + 1}${before === null ? "" : `&before=${encodeURIComponent(before)}`}`;
      page = await request("GET", `/rejected?${query}`);
      if (!Array.isArray(page)) throw new Error("not a list");
    } catch (error) {
      if (mine === generation) status.textContent = `Could not load the dead letters (${error.message}).`;
      return;
    }
    if (mine !== generation) return;
    cursor = before;
    const shown = page.slice(0, PAGE);
    $("dead-letters-list").replaceChildren(...shown.map(entry));
    status.textContent = shown.length === 0 ? (before === null ? "No dead letters." : "No older dead letters.") : "";
    $("dead-letters-newer").disabled = newerCursors.length === 0;
    $("dead-letters-older").disabled = page.length <= PAGE;
    $("dead-letters-older").dataset.before = shown.length ? String(shown[shown.length - 1].id) : "";
  }

  function entry(letter) {
    const id = text(letter.id);
    const result = el("span", { class: "dl-result", role: "status" });
    const reasons = (Array.isArray(letter.reasons) ? letter.reasons : []).map((reason) =>
      el("li", { class: "dl-reason" }, `${text(reason.pointer) || "/"}: ${text(reason.message)}`)
    );
    return el(
      "li",
      { dataset: { id } },
      el(
        "div",
        { class: "dl-head" },
        el("span", { class: "dl-class" }, text(letter.reason_class)),
        el("span", { class: "hint" }, `#${id} \u00b7 seq ${text(letter.stan_sequence)} \u00b7 ${text(letter.payload_bytes)} bytes`),
        el("button", { type: "button", class: "link", onclick: () => details(id) }, "Details"),
        el("button", { type: "button", class: "dl-replay", onclick: () => replay(id, result) }, "Replay"),
        result
      ),
      el("ul", { class: "reasons" }, ...reasons),
      el("div", { class: "dl-excerpt" }, text(letter.payload_excerpt))
    );
  }

  async function details(id) {
    const panel = $("dead-letter");
    try {
      const letter = await request("GET", `/rejected/${encodeURIComponent(id)}`);
      $("dead-letter-title").textContent = `Dead letter #${text(letter.id)} (${text(letter.reason_class)})`;
      $("dead-letter-reasons").replaceChildren(
        ...(Array.isArray(letter.reasons) ? letter.reasons : []).map((reason) =>
          el("li", {}, `${text(reason.pointer) || "/"}: ${text(reason.message)}`)
        )
      );
      $("dead-letter-payload").textContent = text(letter.payload_excerpt);
    } catch (error) {
      $("dead-letter-title").textContent = `Dead letter #${id}: could not load it (${error.message}).`;
      $("dead-letter-reasons").replaceChildren();
      $("dead-letter-payload").textContent = "";
    }
    panel.hidden = false;
    panel.open = true;
  }

  async function replay(id, result) {
    result.textContent = "Replaying\u2026";
    try {
      const answer = await request("POST", `/rejected/${encodeURIComponent(id)}/replay`);
      result.textContent = `Replayed: ${text(answer.outcome)}${answer.reason_class ? ` (${text(answer.reason_class)})` : ""}`;
    } catch (error) {
      result.textContent = `Replay failed (${error.message}).`;
    }
  }

  const reload = () => {
    newerCursors.length = 0;
    load(null);
  };
  $("dead-letters-refresh").addEventListener("click", reload);
  document.addEventListener("admin-token-changed", reload);
  $("dead-letters-older").addEventListener("click", () => {
    const before = $("dead-letters-older").dataset.before;
    if (!before) return;
    newerCursors.push(cursor);
    load(Number(before));
  });
  $("dead-letters-newer").addEventListener("click", () => {
    if (newerCursors.length === 0) return;
    load(newerCursors.pop());
  });

  showTokenStatus();
  load(null);
})();
