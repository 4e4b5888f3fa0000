// The message list of the open chat: keyed rendering (live updates keep scroll and focus), date separators,
// the "New messages" line with its jump pills, mentions, history status, edit in place.

import { isSystem, systemText } from "../system-lines.js";
import { avatar, byTestId, dayKey, dayLabel, formatFull, formatTime, h, parseTime, renderKeyed } from "../ui.js";
import { fileParts, filesVersion } from "../files.js";
import { actionBar, editedMark, messageContent, partsVersion, pinnedMark, reactionRow, threadSummary } from "./message-parts.js";

const GROUP_WINDOW_MS = 5 * 60 * 1000;
const NEAR_TOP_PX = 120;
const NEAR_BOTTOM_PX = 80;
// Opening at the first unread message leaves a little of what came before it in view.
const LINE_CONTEXT_SHARE = 0.2;
const LINE_CONTEXT_MAX_PX = 140;

// Same sender within five minutes: the header is left out, like Slack.
function continues(prev, message) {
  if (!prev || prev.sender_id !== message.sender_id || prev.pending || isSystem(prev) || isSystem(message)) return false;
  const a = parseTime(prev.created_at);
  const b = parseTime(message.created_at);
  return Boolean(a && b && b - a < GROUP_WINDOW_MS);
}

function messageBody(store, message, compact, mine, { inThread = false } = {}) {
  const name = store.userName(message.sender_id);
  const parts = [];
  if (!compact) {
    parts.push(h("div", { class: "message-meta" },
      h("button", { type: "button", class: "author", dataset: { testid: "message-author", action: "profile", userId: message.sender_id }, text: name }),
      h("time", { datetime: message.created_at || "", title: formatFull(message.created_at), text: formatTime(message.created_at) })));
  }
  if (message.deleted) {
    parts.push(h("div", { class: "message-content deleted", dataset: { testid: "message-content" }, text: "message deleted" }));
    return parts;
  }
  parts.push(h("div", { class: "message-text" }, messageContent(store, message), editedMark(message)));
  parts.push(fileParts(message));
  if (message.pending) {
    const failed = message.pending === "failed";
    parts.push(h("div", { class: `pending-state${failed ? " failed" : ""}` },
      failed ? "Not sent. " : "Sending…",
      failed ? h("button", { type: "button", class: "link", dataset: { action: "retry-send", testid: "retry-send" }, text: "Retry" }) : null,
      failed ? h("button", { type: "button", class: "link", dataset: { action: "discard-send", testid: "discard-send" }, text: "Discard" }) : null));
  } else {
    parts.push(reactionRow(store, message), inThread ? null : threadSummary(store, message));
    if (!store.isPreviewing(message.chat_id)) parts.push(actionBar(store, message, { inThread }));
  }
  return parts;
}

function messageKey(message) {
  return message.pending ? `pending:${message.key}` : message.id;
}

// A version string: a node is rebuilt only when what it shows changed (users loading can turn
// plain @names into mentions).
export function messageVersion(store, message, compact) {
  const mentions = Array.isArray(message.mentions) ? message.mentions.join(",") : "-";
  const system = isSystem(message) ? systemText(store, message) : "";
  return [message.content, message.deleted, message.edited_at, message.pending, compact, store.userName(message.sender_id),
    mentions, message.mentions_all, store.users.size, system, store.avatarUrl(message.sender_id), partsVersion(store, message), filesVersion(message)].join("\u0000");
}

// A system message: a quiet grey line ("Alice joined the channel"), no avatar, no actions.
function buildSystemLine(store, message) {
  return h("li", { class: "message system-line", dataset: { testid: "system-message", messageId: message.id, seq: String(message.seq), systemType: message.system.type } },
    h("span", { class: "system-text", text: systemText(store, message) }),
    h("time", { datetime: message.created_at || "", title: formatFull(message.created_at), text: formatTime(message.created_at) }));
}

export function buildMessage(store, message, compact, { inThread = false, testid = "message" } = {}) {
  if (isSystem(message)) return buildSystemLine(store, message);
  const mine = store.me && message.sender_id === store.me.id;
  const forMe = !message.pending && store.mentionsMe(message);
  const attrs = message.pending
    ? { class: "message pending", dataset: { testid: "message-pending", key: message.key } }
    : {
        class: `message${compact ? " compact" : ""}${message.deleted ? " is-deleted" : ""}${mine ? " mine" : ""}${forMe ? " mentions-me" : ""}${message.pinned && !message.deleted ? " is-pinned" : ""}`,
        dataset: { testid, pinned: message.pinned ? "true" : null, messageId: message.id, seq: String(message.seq), senderId: message.sender_id, deleted: String(Boolean(message.deleted)), mentionsMe: forMe ? "true" : null },
      };
  const gutter = compact
    ? h("span", { class: "gutter", "aria-hidden": "true", text: formatTime(message.created_at) })
    : avatar(message.sender_id, store.userName(message.sender_id), store.avatarUrl(message.sender_id), { profile: true });
  return h("li", attrs, gutter, h("div", { class: "message-main" }, message.pending ? null : pinnedMark(store, message), messageBody(store, message, compact, mine, { inThread })));
}

function daySeparator(label) {
  return h("li", { class: "day-divider", dataset: { testid: "day-separator" } }, h("span", { class: "day-label", text: label }));
}

function unreadLine() {
  return h("li", { class: "unread-line", dataset: { testid: "unread-line" } }, h("span", { class: "unread-line-label", text: "New messages" }));
}

// What the list shows, in order: a separator before each day's first message, the unread line
// above the first unread one; either starts a new group of messages.
function listItems(store, messages, lineSeq) {
  const items = [];
  let prev = null;
  let prevDay = null;
  const now = new Date();
  for (const message of messages) {
    let breaks = false;
    const day = dayKey(message.created_at);
    if (day && day !== prevDay) {
      const label = dayLabel(message.created_at, now);
      items.push({ key: `day:${day}`, version: label, build: () => daySeparator(label) });
      prevDay = day;
      breaks = true;
    }
    if (lineSeq !== null && !message.pending && message.seq === lineSeq) {
      items.push({ key: "unread-line", version: "", build: unreadLine });
      breaks = true;
    }
    const compact = !breaks && !message.pending && !message.deleted && continues(prev, message);
    const key = messageKey(message);
    items.push({
      key,
      version: messageVersion(store, message, compact),
      build: () => buildMessage(store, message, compact),
      // The message being edited in place keeps its editor, unless it was deleted meanwhile.
      keep: key === store.editingId && !message.deleted,
    });
    prev = message;
  }
  return items;
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

export class MessageList {
  constructor(store) {
    this.store = store;
    this.scroller = byTestId("message-scroller");
    this.list = byTestId("message-list");
    this.history = byTestId("history-status");
    this.jumpUnread = byTestId("jump-unread");
    this.newBelow = byTestId("new-below");
    this.unseenBelow = false; // messages came while the reader was scrolled up
    this.scroller.addEventListener("scroll", () => {
      if (this.nearBottom()) this.unseenBelow = false;
      this.renderPills();
    }, { passive: true });
  }

  nearBottom() {
    const { scroller } = this;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
  }

  // Follows new messages only when the reader was already at the bottom; a chat opened with
  // unread messages starts at its "New messages" line. arrived: someone else's message came.
  // Returns whether it scrolled to that line.
  render({ toBottom = false, arrived = false } = {}) {
    const { store, scroller } = this;
    const chatId = store.openChatId;
    if (!chatId) return;
    const nearBottom = this.nearBottom();
    const timeline = store.timelines.get(chatId);
    const messages = timeline ? timeline.sorted() : [];
    const lineSeq = store.unreadLineSeq(chatId);
    renderKeyed(this.list, listItems(store, [...messages, ...store.unsent(chatId)], lineSeq));
    this.renderHistoryStatus();
    const line = store.unreadLine;
    let moved = false;
    if (line && line.chatId === chatId && line.scroll && lineSeq !== null) {
      line.scroll = false;
      this.scrollToUnreadLine();
      moved = true;
    } else if (toBottom || nearBottom) {
      scroller.scrollTop = scroller.scrollHeight;
    } else if (arrived) {
      this.unseenBelow = true;
    }
    this.renderPills();
    return moved;
  }

  scrollToUnreadLine({ smooth = false } = {}) {
    const node = byTestId("unread-line", this.list);
    if (!node) return;
    const { scroller } = this;
    const context = Math.min(LINE_CONTEXT_MAX_PX, scroller.clientHeight * LINE_CONTEXT_SHARE);
    const top = node.getBoundingClientRect().top - scroller.getBoundingClientRect().top + scroller.scrollTop - context;
    scroller.scrollTo({ top: Math.max(0, top), behavior: smooth ? "smooth" : "instant" });
  }

  scrollToBottom({ smooth = false } = {}) {
    this.unseenBelow = false;
    this.scroller.scrollTo({ top: this.scroller.scrollHeight, behavior: smooth ? "smooth" : "instant" });
    this.renderPills();
  }

  // "Jump to first unread" while the line is above the screen; "New messages below" while
  // messages came in below it.
  renderPills() {
    const node = byTestId("unread-line", this.list);
    const box = this.scroller.getBoundingClientRect();
    this.jumpUnread.hidden = !node || node.getBoundingClientRect().bottom > box.top;
    if (this.unseenBelow && this.nearBottom()) this.unseenBelow = false;
    this.newBelow.hidden = !this.unseenBelow;
  }

  renderIfOpen(chatId, options) {
    if (chatId === this.store.openChatId) this.render(options);
  }

  // After older messages arrived above: the message under the reader's eye stays where it was.
  renderKeepingPosition() {
    const scroller = this.scroller;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    if (!this.render()) scroller.scrollTop = scroller.scrollHeight - fromBottom;
    this.renderPills();
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
    this.unseenBelow = false;
    this.renderPills();
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
    const own = target.closest(".message:not(.pending):not(.system-line)");
    for (const open of document.querySelectorAll(".message.actions-open")) if (open !== own) open.classList.remove("actions-open");
    if (own && !target.closest("a, form, .emoji-picker")) own.classList.toggle("actions-open");
  }
}
