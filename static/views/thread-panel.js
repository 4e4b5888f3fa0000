// The thread side panel: the root, "N replies", the replies (live), unsent replies and the panel's own composer.

import { byTestId, h, renderKeyed } from "../ui.js";
import { buildMessage, editInPlace, messageVersion } from "./messages.js";

const NEAR_BOTTOM_PX = 80;

function pendingItem(store, item) {
  const failed = item.pending === "failed";
  return h("li", { class: "message pending", dataset: { testid: "thread-pending", key: item.key } },
    h("span", { class: "gutter" }),
    h("div", { class: "message-main" },
      h("div", { class: "message-text" }, h("div", { class: "message-content", text: item.content })),
      h("div", { class: `pending-state${failed ? " failed" : ""}` }, failed ? "Not sent. " : "Sending…",
        failed ? h("button", { type: "button", class: "link", dataset: { action: "retry-reply", testid: "retry-reply", key: item.key }, text: "Retry" }) : null,
        failed ? h("button", { type: "button", class: "link", dataset: { action: "discard-reply", testid: "discard-reply", key: item.key }, text: "Discard" }) : null)));
}

export class ThreadPanel {
  constructor(store) {
    this.store = store;
    this.panel = byTestId("thread-panel");
    this.body = this.panel.closest(".chat-pane");
    this.where = byTestId("thread-where");
    this.scroller = byTestId("thread-scroller");
    this.rootList = byTestId("thread-root-list");
    this.divider = byTestId("thread-divider");
    this.list = byTestId("thread-list");
    this.status = byTestId("thread-status");
    this.input = byTestId("thread-input");
    this.composer = byTestId("thread-composer");
  }

  get shown() {
    return !this.panel.hidden;
  }

  nearBottom() {
    const { scroller } = this;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
  }

  renderIfOpen(rootId, options) {
    if (rootId && rootId === this.store.openThreadId) this.render(options);
  }

  // toBottom: after opening or our own reply; otherwise it follows new replies only from the bottom.
  render({ toBottom = false } = {}) {
    const { store } = this;
    const thread = store.openThread();
    const open = Boolean(thread && thread.chatId === store.openChatId);
    this.panel.hidden = !open;
    this.body.classList.toggle("thread-open", open);
    if (!open) {
      this.rootList.replaceChildren();
      this.list.replaceChildren();
      return;
    }
    const stick = toBottom || this.nearBottom();
    const chat = store.currentChat();
    this.where.textContent = chat ? `${chat.type === "public_channel" ? "# " : ""}${store.chatTitle(chat)}` : "";
    const root = store.threadRoot(thread);
    renderKeyed(this.rootList, root ? [{
      key: root.id,
      version: messageVersion(store, root, false),
      build: () => buildMessage(store, root, false, { inThread: true, testid: "thread-root" }),
      keep: root.id === store.editingId && !root.deleted,
    }] : []);
    const replies = thread.timeline.sorted();
    const count = Math.max(root ? root.reply_count || 0 : 0, replies.filter((m) => !m.deleted).length);
    this.divider.textContent = count ? `${count} ${count === 1 ? "reply" : "replies"}` : "";
    this.divider.hidden = !count;
    this.divider.dataset.count = String(count);
    let prev = null;
    const items = replies.map((message) => {
      const compact = Boolean(prev && prev.sender_id === message.sender_id && !prev.deleted && !message.deleted
        && Date.parse(message.created_at) - Date.parse(prev.created_at) < 5 * 60 * 1000);
      prev = message;
      return {
        key: message.id,
        version: messageVersion(store, message, compact),
        build: () => buildMessage(store, message, compact, { inThread: true, testid: "thread-message" }),
        keep: message.id === store.editingId && !message.deleted,
      };
    });
    for (const item of thread.pending.values()) {
      items.push({ key: `pending:${item.key}`, version: `${item.pending}`, build: () => pendingItem(store, item) });
    }
    renderKeyed(this.list, items);
    this.status.textContent = thread.loaded && !thread.loading ? "" : "Loading replies…";
    const archived = Boolean(chat && chat.archived);
    this.composer.hidden = archived || store.isPreviewing(thread.chatId);
    this.input.placeholder = "Reply…";
    if (stick) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  // The message a node of the panel shows.
  messageAt(node) {
    const item = node.closest("[data-testid=thread-message], [data-testid=thread-root]");
    if (!item || !this.panel.contains(item)) return null;
    const thread = this.store.openThread();
    if (!thread) return null;
    if (item.dataset.testid === "thread-root") return this.store.threadRoot(thread);
    return thread.timeline.byId.get(item.dataset.messageId) || null;
  }

  edit(message) {
    const node = this.panel.querySelector(`[data-message-id="${CSS.escape(message.id)}"]`);
    return node ? editInPlace(node, message.content) : undefined;
  }

  // Scrolls to a reply and flashes it (a search hit, a copied link).
  flash(messageId) {
    const node = this.panel.querySelector(`[data-message-id="${CSS.escape(messageId)}"]`);
    if (!node) return false;
    node.scrollIntoView({ block: "center" });
    node.classList.remove("search-flash");
    void node.offsetWidth;
    node.classList.add("search-flash");
    return true;
  }
}
