// Reactions, pins, message links and edit history: the hover bar's actions, the pinned-messages view and the "(edited)" popover.

import { chatHash } from "./chats.js";
import { copyText } from "./dialogs.js";
import { EmojiPicker } from "./emoji.js";
import { richContent } from "./rich.js";
import { byTestId, formatFull, formatTime, h, icon, toast } from "./ui.js";

const MESSAGE_ROUTE = /^#\/chat\/([^/?#]+)\/message\/([^/?#]+)/;

// A floating box by an anchor, closed by Escape, a click elsewhere or close(); one at a time per kind.
class Popover {
  constructor(className, testid, label) {
    this.el = h("div", { class: `popover ${className}`, role: "dialog", "aria-label": label, dataset: { testid }, hidden: true });
    document.body.append(this.el);
    this.anchor = null;
    this.outside = (event) => {
      if (!this.el.contains(event.target) && !(this.anchor && this.anchor.contains(event.target))) this.close();
    };
    this.key = (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.close({ focus: true });
      }
    };
  }

  get shown() {
    return !this.el.hidden;
  }

  open(anchor, children, { align = "left" } = {}) {
    this.anchor = anchor;
    this.el.replaceChildren(...children);
    this.el.hidden = false;
    this.place({ align });
    document.addEventListener("mousedown", this.outside, true);
    document.addEventListener("keydown", this.key, true);
  }

  place({ align = "left" } = {}) {
    if (!this.anchor || !this.anchor.isConnected) return;
    const box = this.anchor.getBoundingClientRect();
    const { width, height } = this.el.getBoundingClientRect();
    const top = box.bottom + 6 + height > innerHeight ? Math.max(8, box.top - height - 6) : box.bottom + 6;
    const wanted = align === "right" ? box.right - width : box.left;
    this.el.style.top = `${top}px`;
    this.el.style.left = `${Math.min(Math.max(8, wanted), innerWidth - width - 8)}px`;
  }

  update(children) {
    if (this.shown) {
      this.el.replaceChildren(...children);
      this.place({ align: this.el.dataset.align });
    }
  }

  close({ focus = false } = {}) {
    this.el.hidden = true;
    document.removeEventListener("mousedown", this.outside, true);
    document.removeEventListener("keydown", this.key, true);
    if (focus && this.anchor && this.anchor.isConnected) this.anchor.focus();
    if (this.anchor) this.anchor.setAttribute("aria-expanded", "false");
    this.anchor = null;
  }
}

export class Marks {
  constructor({ store, api, views, threads }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.threads = threads;
    this.picker = new EmojiPicker();
    this.history = new Popover("history-popover", "history-popover", "Edit history");
    this.pinsView = new Popover("pins-popover", "pins-popover", "Pinned messages");
    this.pinsView.el.dataset.align = "right";
    this.pinsButton = byTestId("pins-button");
  }

  // Every view that may show a message changed outside its chat's list.
  renderChat(chatId) {
    this.views.messages.renderIfOpen(chatId);
    const thread = this.store.openThread();
    if (thread && thread.chatId === chatId) this.views.thread.render();
  }

  // --- reactions ---------------------------------------------------------------------

  pickFor(message, anchor) {
    this.picker.open(anchor, (emoji) => {
      const existing = (message.reactions || []).find((r) => r.emoji === emoji);
      const current = this.store.findMessage(message.chat_id, message.id) || message;
      const mine = (current.reactions || []).find((r) => r.emoji === emoji);
      this.toggle(current, emoji, !(mine ? mine.me : existing && existing.me));
    });
  }

  // Ours at once; the server's answer (or its error) settles it, and the event changes nothing more.
  async toggle(message, emoji, on) {
    const { store } = this;
    const event = { chat_id: message.chat_id, message_id: message.id, emoji, user_id: store.me.id };
    store.applyReaction(event, on);
    this.renderChat(message.chat_id);
    try {
      await this.api.react(message.chat_id, message.id, emoji, on);
    } catch (error) {
      store.applyReaction(event, !on);
      this.renderChat(message.chat_id);
      toast(error.message, { error: true });
    }
  }

  applyReaction(data, added) {
    if (this.store.applyReaction(data, added)) this.renderChat(data.chat_id);
  }

  // --- pins ----------------------------------------------------------------------------

  async pin(message, on) {
    const { store } = this;
    const event = { chat_id: message.chat_id, message_id: message.id, user_id: store.me.id };
    store.applyPinned(event, on);
    this.pinsChanged(message.chat_id);
    try {
      await this.api.pin(message.chat_id, message.id, on);
      toast(on ? "Pinned to this conversation" : "Unpinned");
    } catch (error) {
      store.applyPinned(event, !on);
      this.pinsChanged(message.chat_id);
      toast(error.message, { error: true });
    }
  }

  applyPinned(data, pinned) {
    this.store.applyPinned(data, pinned);
    this.pinsChanged(data.chat_id);
  }

  pinsChanged(chatId) {
    this.renderChat(chatId);
    if (chatId !== this.store.openChatId) return;
    this.renderPinsButton();
    if (this.pinsView.shown) {
      const pins = this.store.pins.get(chatId);
      if (pins && pins.list) this.pinsView.update(this.pinItems(chatId));
      else this.loadPins(chatId).then(() => this.pinsView.update(this.pinItems(chatId)));
    }
  }

  // Opening a chat: its pins, for the header's count.
  async loadPins(chatId) {
    try {
      const list = await this.api.pins(chatId);
      this.store.setPins(chatId, list);
      this.renderChat(chatId); // "Pinned by …" names who pinned each
    } catch {
      // A preview of a channel, or the chat went away: no count to show.
    }
    if (chatId === this.store.openChatId) this.renderPinsButton();
  }

  chatOpened(chatId) {
    this.pinsView.close();
    this.history.close();
    this.picker.close();
    this.renderPinsButton();
    if (this.store.chats.has(chatId)) this.loadPins(chatId);
  }

  renderPinsButton() {
    const chatId = this.store.openChatId;
    const count = chatId ? this.store.pinCount(chatId) : 0;
    const label = byTestId("pins-count", this.pinsButton);
    label.textContent = String(count);
    this.pinsButton.dataset.count = String(count);
    this.pinsButton.title = count ? `${count} pinned message${count === 1 ? "" : "s"}` : "No pinned messages";
    this.pinsButton.hidden = !chatId || !this.store.chats.has(chatId);
  }

  pinItems(chatId) {
    const { store } = this;
    const pins = store.pins.get(chatId);
    const list = (pins && pins.list) || [];
    const rows = list.map((pin) => {
      const message = store.findMessage(chatId, pin.message.id) || pin.message;
      return h("li", { class: "pin-item", dataset: { testid: "pin-item", messageId: message.id } },
        h("div", { class: "pin-meta" },
          h("strong", { text: store.userName(message.sender_id) }),
          h("time", { datetime: message.created_at, title: formatFull(message.created_at), text: `${new Date(message.created_at).toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${formatTime(message.created_at)}` })),
        h("div", { class: "message-content rich pin-content" }, richContent(message, { meId: store.me && store.me.id, mine: store.isMine(message) })),
        h("div", { class: "pin-by", text: `Pinned by ${store.isMine({ sender_id: pin.user_id }) ? "you" : store.userName(pin.user_id)}` }),
        h("button", { type: "button", class: "icon pin-remove", title: "Unpin", "aria-label": "Unpin", dataset: { testid: "pin-remove" },
          onclick: () => this.pin(message, false) }, icon("close")),
        h("button", { type: "button", class: "link pin-jump", dataset: { testid: "pin-jump" }, text: "View", onclick: () => this.jump(chatId, message) }));
    });
    return [
      h("header", { class: "popover-header" }, icon("pin"), h("strong", { text: `Pinned messages` }), h("span", { class: "popover-count", text: String(list.length) })),
      rows.length ? h("ul", { class: "pin-list" }, rows) : h("p", { class: "popover-empty", dataset: { testid: "pins-empty" }, text: "Nothing is pinned yet. Pin an important message from its menu, and it shows here for everyone." }),
    ];
  }

  async togglePins() {
    const chatId = this.store.openChatId;
    if (!chatId) return;
    if (this.pinsView.shown) return this.pinsView.close();
    this.pinsButton.setAttribute("aria-expanded", "true");
    this.pinsView.open(this.pinsButton, [h("p", { class: "popover-empty", text: "Loading…" })], { align: "right" });
    await this.loadPins(chatId);
    if (this.pinsView.shown && chatId === this.store.openChatId) this.pinsView.update(this.pinItems(chatId));
  }

  // A pinned (or linked) message: in its thread when it is a reply, else scrolled to in the timeline.
  jump(chatId, message) {
    this.pinsView.close();
    if (message.thread_root_id) return this.threads.open(message, { focusId: message.id });
    const node = this.views.messages.list.querySelector(`[data-message-id="${CSS.escape(message.id)}"]`);
    if (!node) return toast("That message is further back: scroll up to it.");
    node.scrollIntoView({ block: "center" });
    node.classList.remove("search-flash");
    void node.offsetWidth;
    node.classList.add("search-flash");
  }

  // --- links and history -------------------------------------------------------------------

  copyLink(message) {
    copyText(`${location.origin}${location.pathname}${chatHash(message.chat_id)}/message/${encodeURIComponent(message.id)}`);
  }

  // A link to a message (#/chat/<id>/message/<id>), once its chat is open.
  async followLink() {
    const match = location.hash.match(MESSAGE_ROUTE);
    if (!match) return;
    const chatId = decodeURIComponent(match[1]);
    const messageId = decodeURIComponent(match[2]);
    for (let i = 0; i < 40 && !(this.store.timelines.get(chatId) || {}).loaded; i += 1) await new Promise((r) => setTimeout(r, 100));
    const message = this.store.findMessage(chatId, messageId);
    if (message) this.jump(chatId, message);
  }

  async showHistory(message, anchor) {
    if (this.history.shown && this.history.anchor === anchor) return this.history.close();
    this.history.open(anchor, [h("p", { class: "popover-empty", text: "Loading…" })]);
    try {
      const versions = await this.api.history(message.chat_id, message.id);
      if (this.history.anchor !== anchor) return;
      const { store } = this;
      const rows = [...versions].reverse().map((version, i) => h("li", { class: "history-item", dataset: { testid: "history-version" } },
        h("div", { class: "history-meta" },
          h("span", { class: "history-label", text: i === 0 ? "Current" : i === versions.length - 1 ? "Original" : "Edited" }),
          h("time", { datetime: version.edited_at, title: formatFull(version.edited_at), text: formatFull(version.edited_at) })),
        h("div", { class: "message-content rich" }, richContent(version, { meId: store.me && store.me.id, mine: store.isMine(message) }))));
      this.history.update([
        h("header", { class: "popover-header" }, h("strong", { text: "Edit history" }), h("span", { class: "popover-count", text: `${versions.length} version${versions.length === 1 ? "" : "s"}` })),
        h("ol", { class: "history-list" }, rows),
      ]);
    } catch (error) {
      this.history.update([h("p", { class: "popover-empty", text: error.message })]);
    }
  }
}
