// DOM helpers every view shares: builds elements with textContent only (never innerHTML), icons, toasts, dialogs.

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

// h("li", {class: "x", dataset: {id}}, child, "text") -> element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

export function parseTime(iso) {
  const date = iso ? new Date(iso) : null;
  return date && !Number.isNaN(date.getTime()) ? date : null;
}

export function formatTime(iso) {
  const date = parseTime(iso);
  if (!date) return "";
  const now = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === now.toDateString()) return time;
  const day = date.toLocaleDateString([], { month: "short", day: "numeric", year: date.getFullYear() === now.getFullYear() ? undefined : "numeric" });
  return `${day}, ${time}`;
}

// Text with http(s) links made clickable; everything else stays text.
export function linkify(text) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    if (match.index > last) fragment.append(text.slice(last, match.index));
    fragment.append(h("a", { href: match[0], target: "_blank", rel: "noopener noreferrer", text: match[0] }));
    last = match.index + match[0].length;
  }
  if (last < text.length) fragment.append(text.slice(last));
  return fragment;
}

export function memberCountText(count) {
  return `${count} member${count === 1 ? "" : "s"}`;
}

export function presenceDot(userId, status) {
  return h("span", {
    class: "presence-dot",
    dataset: { testid: "presence-dot", userId, status },
    title: status,
    "aria-label": status,
  });
}

export function updatePresenceDots(root, userId, status) {
  for (const dot of root.querySelectorAll(`[data-testid="presence-dot"][data-user-id="${CSS.escape(userId)}"]`)) {
    dot.dataset.status = status;
    dot.title = status;
    dot.setAttribute("aria-label", status);
  }
}

function initials(name) {
  const parts = String(name || "?").trim().split(/\s+/);
  return ((parts[0] || "?")[0] + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
}

// A stable hue per user so avatars are told apart at a glance.
function hue(id) {
  let n = 0;
  for (const ch of String(id)) n = (n * 31 + ch.charCodeAt(0)) % 360;
  return n;
}

export function avatar(userId, name) {
  const el = h("span", { class: "avatar", "aria-hidden": "true", text: initials(name) });
  el.style.setProperty("--hue", hue(userId));
  return el;
}

// Small line icons drawn as SVG: emoji fonts are not installed everywhere.
const ICON_PATHS = {
  lock: "M5 11h14v10H5zM8 11V7a4 4 0 0 1 8 0v4",
  people: "M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM1 21v-1a7 7 0 0 1 14 0v1M16 3.5a4 4 0 0 1 0 7.5M19 14a6 6 0 0 1 4 6v1",
  hash: "M4 9h16M4 15h16M10 3 8 21M16 3l-2 18",
  pencil: "M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4",
  trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13",
};

export function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", `icon-svg icon-${name}`);
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICON_PATHS[name]);
  svg.append(path);
  return svg;
}

// --- pickers, notices, dialogs ---------------------------------------------------

// Checkbox (or radio) list of users; returns nothing, read the checked inputs on submit.
export function renderUserPicker(listEl, store, users, { multiple = true, filter = "", selected = new Set() } = {}) {
  const needle = filter.trim().toLowerCase();
  const rows = users
    .filter((user) => !needle || `${user.fullname} ${user.email}`.toLowerCase().includes(needle))
    .sort((a, b) => (a.fullname || "").localeCompare(b.fullname || ""))
    .map((user) => h("li", {},
      h("label", { class: "user-option", dataset: { testid: "user-option", userId: user.id } },
        h("input", { type: multiple ? "checkbox" : "radio", name: "member", value: user.id, checked: selected.has(user.id) }),
        presenceDot(user.id, store.status(user.id)),
        h("span", { class: "user-option-name", text: user.fullname || user.email }),
        h("span", { class: "user-option-email", text: user.email || "" }))));
  listEl.replaceChildren(...(rows.length ? rows : [h("li", { class: "hint", text: "Nobody matches." })]));
}

let toastTimer = null;

export function toast(text, { error = false } = {}) {
  const el = byTestId("toast");
  el.textContent = text;
  el.classList.toggle("error", error);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.hidden = true;
  }, 4000);
}

// Shows the API's message, and per-field reasons when it sent them.
export function showFormError(el, error) {
  if (!error) {
    el.textContent = "";
    return;
  }
  const fields = error.fields ? Object.entries(error.fields).map(([name, why]) => `${name}: ${why}`) : [];
  el.textContent = [error.message, ...fields].filter(Boolean).join(" · ");
}

// A promise of true when the user confirms in the confirm dialog.
export function confirmDialog({ title, text, ok = "Delete" }) {
  const dialog = document.getElementById("confirm-dialog");
  byTestId("confirm-title", dialog).textContent = title;
  byTestId("confirm-text", dialog).textContent = text;
  byTestId("confirm-ok", dialog).textContent = ok;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    byTestId("confirm-cancel", dialog).focus();
  });
}
