// The message list of the open chat: keyed rendering (live updates keep scroll and focus), history status, edit in place.

import { avatar, byTestId, formatTime, h, icon, linkify, parseTime } from "../ui.js";

const GROUP_WINDOW_MS = 5 * 60 * 1000;
const NEAR_TOP_PX = 120;
const NEAR_BOTTOM_PX = 80;

function shortTime(iso) {
  const date = parseTime(iso);
  return date ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false }) : "";
}

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
function renderKeyed(listEl, store, messages, { editingId = null } = {}) {
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
function editInPlace(node, content) {
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

export class MessageList {
  constructor(store) {
    this.store = store;
    this.scroller = byTestId("message-scroller");
    this.list = byTestId("message-list");
    this.history = byTestId("history-status");
  }

  // Follows new messages only when the reader was already at the bottom.
  render({ toBottom = false } = {}) {
    const { store, scroller } = this;
    const chatId = store.openChatId;
    if (!chatId) return;
    const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
    const timeline = store.timelines.get(chatId);
    const messages = timeline ? timeline.sorted() : [];
    renderKeyed(this.list, store, [...messages, ...store.unsent(chatId)], { editingId: store.editingId });
    this.renderHistoryStatus();
    if (toBottom || nearBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  renderIfOpen(chatId, options) {
    if (chatId === this.store.openChatId) this.render(options);
  }

  // After older messages arrived above: the message under the reader's eye stays where it was.
  renderKeepingPosition() {
    const scroller = this.scroller;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    this.render();
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  }

  renderHistoryStatus() {
    const timeline = this.store.openTimeline();
    let text = "";
    if (!timeline || !timeline.loaded) text = "Loading messages…";
    else if (timeline.loadingOlder) text = "Loading older messages…";
    else if (!timeline.hasMore) text = timeline.bySeq.size ? "This is the very beginning of the chat." : "No messages yet. Say hello!";
    this.history.textContent = text;
  }

  showHistoryText(text) {
    this.history.textContent = text;
  }

  // Scroll events never come while the page is shorter than the pane.
  isShort() {
    return this.scroller.scrollHeight <= this.scroller.clientHeight + 4;
  }

  onNearTop(callback) {
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < NEAR_TOP_PX) callback();
    }, { passive: true });
  }

  clear() {
    this.list.replaceChildren();
  }

  // The message a node inside the list shows, from the open chat's timeline.
  messageAt(node) {
    const item = node.closest("[data-testid=message]");
    const timeline = this.store.openTimeline();
    return item && timeline ? timeline.byId.get(item.dataset.messageId) : null;
  }

  // The key of the unsent message a node inside the list belongs to.
  pendingKeyAt(node) {
    const item = node.closest("[data-testid=message-pending]");
    return item ? item.dataset.key : null;
  }

  // A promise of the edited text, null when cancelled; undefined when the message is not on screen.
  edit(message) {
    const node = this.list.querySelector(`[data-message-id="${CSS.escape(message.id)}"]`);
    return node ? editInPlace(node, message.content) : undefined;
  }

  // Touch screens have no hover: a tap on your message shows its actions.
  toggleActions(target) {
    const own = target.closest(".message.mine");
    for (const open of this.list.querySelectorAll(".actions-open")) if (open !== own) open.classList.remove("actions-open");
    if (own && !target.closest("a, form")) own.classList.toggle("actions-open");
  }
}
