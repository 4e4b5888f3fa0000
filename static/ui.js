// Rendering: builds DOM with textContent only (never innerHTML), keyed so live updates keep scroll and focus.

const GROUP_WINDOW_MS = 5 * 60 * 1000;
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

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

function parseTime(iso) {
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

function shortTime(iso) {
  const date = parseTime(iso);
  return date ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false }) : "";
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

// --- sidebar ----------------------------------------------------------------

const TYPE_ICON = { public_channel: "hash", private_channel: "lock", group: "people" };

function chatPreview(store, chat) {
  const last = chat.last_message;
  if (!last) return chat.description || "";
  if (last.deleted) return "message deleted";
  const who = store.me && last.sender_id === store.me.id ? "You" : store.userName(last.sender_id).split(" ")[0];
  return `${who}: ${last.content}`;
}

function chatItem(store, chat) {
  const peer = store.directPeer(chat);
  const marker = chat.type === "direct"
    ? presenceDot(peer, store.status(peer))
    : h("span", { class: "chat-icon", title: chat.type.replace("_", " ") }, icon(TYPE_ICON[chat.type] || "hash"));
  const unread = chat.unread_count > 0
    ? h("span", { class: "badge", dataset: { testid: "unread-badge" }, "aria-label": `${chat.unread_count} unread`, text: chat.unread_count > 99 ? "99+" : String(chat.unread_count) })
    : null;
  const selected = chat.id === store.openChatId;
  return h(
    "li",
    {},
    h(
      "a",
      {
        href: `#/chat/${encodeURIComponent(chat.id)}`,
        class: `chat-item${unread ? " unread" : ""}${selected ? " selected" : ""}`,
        "aria-current": selected ? "page" : null,
        dataset: { testid: "chat-item", chatId: chat.id, chatType: chat.type, unread: String(chat.unread_count) },
      },
      marker,
      h("span", { class: "chat-item-text" },
        h("span", { class: "chat-item-title", dataset: { testid: "chat-item-title" }, text: store.chatTitle(chat) }),
        h("span", { class: "chat-item-preview", text: chatPreview(store, chat) })),
      unread,
    ),
  );
}

export function renderChatList(listEl, emptyEl, store) {
  const focusedId = document.activeElement && listEl.contains(document.activeElement) ? document.activeElement.dataset.chatId : null;
  const items = store.sortedChats().map((chat) => chatItem(store, chat));
  listEl.replaceChildren(...items);
  emptyEl.hidden = items.length > 0;
  if (focusedId) {
    const again = listEl.querySelector(`[data-chat-id="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
}

// --- messages ------------------------------------------------------------------

// Same sender within five minutes: the header is left out, like Slack.
function continues(prev, message) {
  if (!prev || prev.sender_id !== message.sender_id || prev.pending) return false;
  const a = parseTime(prev.created_at);
  const b = parseTime(message.created_at);
  return Boolean(a && b && b - a < GROUP_WINDOW_MS);
}

function messageBody(store, message, compact, mine) {
  const name = store.userName(message.sender_id);
  const parts = [];
  if (!compact) {
    parts.push(h("div", { class: "message-meta" },
      h("span", { class: "author", dataset: { testid: "message-author" }, text: name }),
      h("time", { datetime: message.created_at || "", title: message.created_at ? new Date(message.created_at).toLocaleString() : "", text: formatTime(message.created_at) })));
  }
  if (message.deleted) {
    parts.push(h("div", { class: "message-content deleted", dataset: { testid: "message-content" }, text: "message deleted" }));
    return parts;
  }
  parts.push(h("div", { class: "message-text" },
    h("span", { class: "message-content", dataset: { testid: "message-content" } }, linkify(message.content || "")),
    message.edited_at ? h("span", { class: "edited", dataset: { testid: "message-edited" }, title: new Date(message.edited_at).toLocaleString(), text: " (edited)" }) : null));
  if (message.pending) {
    const failed = message.pending === "failed";
    parts.push(h("div", { class: `pending-state${failed ? " failed" : ""}` },
      failed ? "Not sent. " : "Sending…",
      failed ? h("button", { type: "button", class: "link", dataset: { action: "retry-send", testid: "retry-send" }, text: "Retry" }) : null,
      failed ? h("button", { type: "button", class: "link", dataset: { action: "discard-send", testid: "discard-send" }, text: "Discard" }) : null));
  } else if (mine) {
    parts.push(h("div", { class: "message-actions" },
      h("button", { type: "button", class: "icon", dataset: { action: "edit-message", testid: "edit-message" }, "aria-label": "Edit message", title: "Edit" }, icon("pencil")),
      h("button", { type: "button", class: "icon", dataset: { action: "delete-message", testid: "delete-message" }, "aria-label": "Delete message", title: "Delete" }, icon("trash"))));
  }
  return parts;
}

function messageKey(message) {
  return message.pending ? `pending:${message.key}` : message.id;
}

// A version string: a node is rebuilt only when what it shows changed.
function messageVersion(message, compact, senderName) {
  return [message.content, message.deleted, message.edited_at, message.pending, compact, senderName].join("\u0000");
}

function buildMessage(store, message, compact) {
  const mine = store.me && message.sender_id === store.me.id;
  const attrs = message.pending
    ? { class: "message pending", dataset: { testid: "message-pending", key: message.key } }
    : {
        class: `message${compact ? " compact" : ""}${message.deleted ? " is-deleted" : ""}${mine ? " mine" : ""}`,
        dataset: { testid: "message", messageId: message.id, seq: String(message.seq), senderId: message.sender_id, deleted: String(Boolean(message.deleted)) },
      };
  const gutter = compact
    ? h("span", { class: "gutter", "aria-hidden": "true", text: shortTime(message.created_at) })
    : avatar(message.sender_id, store.userName(message.sender_id));
  return h("li", attrs, gutter, h("div", { class: "message-main" }, messageBody(store, message, compact, mine)));
}

// Keyed render of a chat's messages plus our unsent ones; nodes being edited are left alone.
export function renderMessages(listEl, store, messages, { editingId = null } = {}) {
  const existing = new Map();
  for (const node of listEl.children) existing.set(node.dataset.renderKey, node);
  let prev = null;
  let cursor = listEl.firstElementChild;
  const keep = new Set();
  for (const message of messages) {
    const key = messageKey(message);
    const compact = !message.pending && !message.deleted && continues(prev, message);
    const version = messageVersion(message, compact, store.userName(message.sender_id));
    let node = existing.get(key);
    if (!node || (node.dataset.version !== version && (key !== editingId || message.deleted))) {
      const fresh = buildMessage(store, message, compact);
      fresh.dataset.version = version;
      fresh.dataset.renderKey = key;
      if (node) {
        node.replaceWith(fresh);
        if (cursor === node) cursor = fresh;
      }
      node = fresh;
    }
    keep.add(node);
    if (node !== cursor) listEl.insertBefore(node, cursor);
    else cursor = cursor.nextElementSibling;
    prev = message;
  }
  for (const node of [...listEl.children]) if (!keep.has(node)) node.remove();
}

// Turns a message's content into a small editor; resolves with the new text or null.
export function editInPlace(node, content) {
  return new Promise((resolve) => {
    const target = node.querySelector(".message-text");
    const actions = node.querySelector(".message-actions");
    const editor = h("textarea", { class: "edit-input", rows: "2", maxlength: "4000", "aria-label": "Edit message", dataset: { testid: "edit-input" } });
    editor.value = content;
    const finish = (value) => {
      form.remove();
      target.hidden = false;
      if (actions) actions.hidden = false;
      resolve(value);
    };
    const form = h("form", { class: "edit-form", dataset: { testid: "edit-form" } },
      editor,
      h("div", { class: "edit-actions" },
        h("span", { class: "hint", text: "Enter to save · Escape to cancel" }),
        h("button", { type: "button", dataset: { testid: "edit-cancel" }, onclick: () => finish(null), text: "Cancel" }),
        h("button", { type: "submit", class: "primary", dataset: { testid: "edit-save" }, text: "Save" })));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      finish(editor.value);
    });
    editor.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(null);
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        finish(editor.value);
      }
    });
    target.hidden = true;
    if (actions) actions.hidden = true;
    target.after(form);
    editor.focus();
    editor.setSelectionRange(editor.value.length, editor.value.length);
  });
}

// --- members, typing, pickers ------------------------------------------------------

function memberRow(store, userId, role) {
  const status = store.status(userId);
  const you = store.me && userId === store.me.id ? " (you)" : "";
  return h("li", { class: "member", dataset: { testid: "member", userId, status } },
    presenceDot(userId, status),
    h("span", { class: "member-name", text: store.userName(userId) + you }),
    role && role !== "member" ? h("span", { class: "role", text: role }) : null);
}

export function renderMembers(onlineEl, offlineEl, countEl, store, members) {
  const online = [];
  const offline = [];
  const sorted = [...members].sort((a, b) => store.userName(a.user_id).localeCompare(store.userName(b.user_id)));
  for (const member of sorted) {
    (store.status(member.user_id) === "online" ? online : offline).push(memberRow(store, member.user_id, member.role));
  }
  onlineEl.replaceChildren(...online);
  offlineEl.replaceChildren(...offline);
  countEl.textContent = String(online.length);
}

export function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return "Several people are typing…";
}

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
