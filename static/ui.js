// DOM helpers every view shares: builds elements with textContent only (never innerHTML), icons, toasts, dialogs.

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

// h("li", {class: "x", dataset: {id}}, child, "text") -> element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") {
      for (const [name, item] of Object.entries(value)) if (item !== null && item !== undefined) el.dataset[name] = item;
    }
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

// Keyed render of a list: items [{key, version, build, keep}] in order. A node is rebuilt only when
// its version changed (keep: leave it as it is anyway), so a node under the pointer or the caret stays
// the same node: a click that began on it still lands, and scroll and focus stay.
export function renderKeyed(listEl, items) {
  const existing = new Map();
  for (const node of listEl.children) existing.set(node.dataset.renderKey, node);
  let cursor = listEl.firstElementChild;
  const kept = new Set();
  for (const { key, version, build, keep = false } of items) {
    let node = existing.get(key);
    if (!node || (node.dataset.version !== version && !keep)) {
      const fresh = build();
      fresh.dataset.version = version;
      fresh.dataset.renderKey = key;
      if (node) {
        node.replaceWith(fresh);
        if (cursor === node) cursor = fresh;
      }
      node = fresh;
    }
    kept.add(node);
    if (node !== cursor) listEl.insertBefore(node, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const node of [...listEl.children]) if (!kept.has(node)) node.remove();
}

export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

export function parseTime(iso) {
  const date = iso ? new Date(iso) : null;
  return date && !Number.isNaN(date.getTime()) ? date : null;
}

// One time format for the whole page, the locale's own ("3:04 PM", "15:04").
const TIME_FORMAT = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const FULL_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });
const DAY_FORMAT = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const DAY_YEAR_FORMAT = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric", year: "numeric" });

export function formatTime(iso) {
  const date = parseTime(iso);
  return date ? TIME_FORMAT.format(date) : "";
}

// For tooltips: the day and the time, spelled out.
export function formatFull(iso) {
  const date = parseTime(iso);
  return date ? FULL_FORMAT.format(date) : "";
}

// The local calendar day of a time, as a key ("2026-11-22").
export function dayKey(iso) {
  const date = parseTime(iso);
  if (!date) return "";
  return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
}

// What a date separator says: "Today", "Yesterday", "Monday, March 3" (with the year when not this one).
export function dayLabel(iso, now = new Date()) {
  const date = parseTime(iso);
  if (!date) return "";
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (dayKey(iso) === dayKey(now.toISOString())) return "Today";
  if (dayKey(iso) === dayKey(yesterday.toISOString())) return "Yesterday";
  return (date.getFullYear() === now.getFullYear() ? DAY_FORMAT : DAY_YEAR_FORMAT).format(date);
}

// @username, @channel, @here, @everyone: after a start, a space or punctuation, never inside an e-mail address.
const MENTION_PATTERN = /(^|[^\w@.])@([a-z0-9._-]{1,32})/gi;

// Text with @mentions marked: mentionOf(name) -> null (plain text) or {me, label, userId?}.
function withMentions(text, mentionOf) {
  if (!mentionOf) return [text];
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(MENTION_PATTERN)) {
    // "@ada." at the end of a sentence: the dot is not part of the name (unless the name has it).
    let name = match[2];
    let found = mentionOf(name.toLowerCase());
    if (!found) {
      name = name.replace(/[._-]+$/, "");
      found = name && mentionOf(name.toLowerCase());
    }
    if (!found) continue;
    const start = match.index + match[1].length;
    if (start > last) parts.push(text.slice(last, start));
    parts.push(h("span", {
      class: `mention${found.me ? " mention-me" : ""}`,
      dataset: { testid: "mention", mention: name.toLowerCase(), userId: found.userId, me: found.me ? "true" : null },
      title: found.label || null,
      text: `@${name}`,
    }));
    last = start + 1 + name.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

// Text with http(s) links made clickable and mentions marked (see withMentions); everything else stays text.
export function linkify(text, mentionOf = null) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    if (match.index > last) fragment.append(...withMentions(text.slice(last, match.index), mentionOf));
    fragment.append(h("a", { href: match[0], target: "_blank", rel: "noopener noreferrer", text: match[0] }));
    last = match.index + match[0].length;
  }
  if (last < text.length) fragment.append(...withMentions(text.slice(last), mentionOf));
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

// A stable hue per user so avatars are told apart at a glance: one of 12, 30° apart. Ids made one
// after another differ in a last digit or two, so the hash mixes every bit (FNV-1a, then murmur3's
// finaliser); a plain sum put such users a degree apart, all the same colour.
const HUES = 12;

function hue(id) {
  let n = 0x811c9dc5;
  for (const ch of String(id)) n = Math.imul(n ^ ch.charCodeAt(0), 0x01000193);
  n = Math.imul(n ^ (n >>> 16), 0x85ebca6b);
  n = Math.imul(n ^ (n >>> 13), 0xc2b2ae35);
  n ^= n >>> 16;
  return ((n >>> 0) % HUES) * (360 / HUES);
}

// avatar_url at a size the server renders (64 or 256): the small one for lists, the large one for cards.
export function avatarSrc(url, size = 64) {
  if (!url) return "";
  return `${url}${url.includes("?") ? "&" : "?"}size=${size >= 128 ? 256 : 64}`;
}

// A person's picture: the server's image (their upload, or their initials drawn for them) over the
// initials on the same colour, which show while it loads or if it cannot. `profile`: a click opens
// their profile card (app.js "profile").
export function avatar(userId, name, url = "", { size = 64, profile = false } = {}) {
  const attrs = { class: "avatar", "aria-hidden": "true", text: initials(name), dataset: { userId } };
  if (profile) Object.assign(attrs.dataset, { action: "profile" });
  const el = h("span", attrs);
  el.style.setProperty("--hue", hue(userId));
  if (url) {
    const img = h("img", { class: "avatar-img", src: avatarSrc(url, size), alt: "", decoding: "async", dataset: { testid: "avatar-img" } });
    img.addEventListener("error", () => img.remove(), { once: true });
    el.append(img);
  }
  return el;
}

// Small line icons drawn as SVG: emoji fonts are not installed everywhere.
const ICON_PATHS = {
  lock: "M5 11h14v10H5zM8 11V7a4 4 0 0 1 8 0v4",
  people: "M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM1 21v-1a7 7 0 0 1 14 0v1M16 3.5a4 4 0 0 1 0 7.5M19 14a6 6 0 0 1 4 6v1",
  hash: "M4 9h16M4 15h16M10 3 8 21M16 3l-2 18",
  pencil: "M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4",
  trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13",
  bell: "M6 16V11a6 6 0 0 1 12 0v5l2 2H4zM10 20a2 2 0 0 0 4 0",
  "bell-off": "M6 16V11a6 6 0 0 1 9.5-4.9M18 11v5l2 2H4l2-2M10 20a2 2 0 0 0 4 0M3 3l18 18",
  check: "M5 12l5 5L20 7",
  "arrow-up": "M12 19V5M6 11l6-6 6 6",
  "arrow-down": "M12 5v14M6 13l6 6 6-6",
  smile: "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM8 14s1.5 2 4 2 4-2 4-2M9 9.5h.01M15 9.5h.01",
  thread: "M21 12a8 8 0 0 1-11.6 7.1L4 20l1.1-4.6A8 8 0 1 1 21 12zM8 10h8M8 14h5",
  pin: "M9 4h6l-1 5 3 3v2H7v-2l3-3zM12 14v6",
  link: "M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1",
  close: "M6 6l12 12M18 6 6 18",
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
        avatar(user.id, user.fullname, user.avatar_url),
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

// Shows the API's reasons, one line per field as the server wrote them (each a sentence), or its
// message when it named no field; never the same line twice.
export function showFormError(el, error) {
  if (!error) {
    el.textContent = "";
    return;
  }
  const fields = error.fields ? Object.values(error.fields).filter(Boolean) : [];
  const lines = [...new Set(fields.length ? fields : [error.message].filter(Boolean))];
  el.replaceChildren(...lines.map((line) => h("span", { class: "form-error-line", dataset: { testid: "form-error-line" }, text: line })));
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
