// Which chat is open: routing by the location hash, opening and closing, previews of public channels, join and leave.

import { confirmDialog, toast } from "./ui.js";

const CHAT_ROUTE = /^#\/chat\/([^/?#]+)/;

export function chatHash(chatId) {
  return `#/chat/${encodeURIComponent(chatId)}`;
}

// The address without the chat part, so a reload does not reopen a chat we lost.
function forgetRoute() {
  history.replaceState(null, "", location.pathname + location.search);
}

export class Chats {
  constructor({ store, api, views, sync, reads, composer }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.sync = sync;
    this.reads = reads;
    this.composer = composer;
  }

  // A chat we were just given (created, joined, added to).
  addChat(chat) {
    const { store } = this;
    if (store.isPreviewing(chat.id)) store.setPreview(null);
    store.upsertChat(chat);
    this.views.sidebar.render();
    if (chat.id === store.openChatId) this.openChat(chat.id);
  }

  navigate(chatId) {
    const hash = chatHash(chatId);
    if (location.hash === hash) this.route();
    else location.hash = hash;
  }

  route() {
    if (!this.views.signedIn) return;
    const match = location.hash.match(CHAT_ROUTE);
    if (match) this.openChat(decodeURIComponent(match[1]));
    else this.closeChat();
  }

  // Called when the open chat disappeared (deleted, we left, we were removed).
  leaveView(chatId, message = "") {
    if (chatId !== this.store.openChatId) return;
    if (message) toast(message);
    forgetRoute();
    this.closeChat();
  }

  closeChat() {
    const { store } = this;
    this.reads.flush();
    store.openChatId = null;
    store.setPreview(null);
    store.editingId = null;
    store.unreadLine = null;
    if (this.threads) this.threads.chatChanged(null);
    this.views.pane.showList();
    this.views.sidebar.render();
  }

  async openChat(chatId) {
    const { store, views } = this;
    const switching = chatId !== store.openChatId;
    if (switching) this.reads.flush();
    store.openChatId = chatId;
    store.editingId = null;
    views.pane.showChat();
    store.setPreview(null);
    if (switching) {
      views.messages.clear();
      this.composer.clear();
      this.composer.restoreDraft(chatId);
      // Before anything marks it read: where the first unread message is.
      store.startUnreadLine(chatId);
      if (this.threads) this.threads.chatChanged(chatId);
    }
    if (!store.chats.has(chatId)) {
      try {
        const chat = await this.api.chat(chatId);
        if (chatId !== store.openChatId) return;
        if (store.chats.has(chatId)) return this.openChat(chatId);
        store.setPreview(chat);
      } catch (error) {
        if (chatId !== store.openChatId) return;
        toast(error.status === 404 ? "That chat does not exist or you cannot see it." : error.message, { error: true });
        forgetRoute();
        this.closeChat();
        return;
      }
    }
    views.sidebar.render();
    views.pane.renderHeader();
    views.pane.renderTyping();
    views.messages.render({ toBottom: true });
    // Phones would pop up the keyboard over the chat just opened.
    if (switching && window.matchMedia("(min-width: 721px)").matches && !store.preview) this.composer.focus();
    this.sync.loadMembers(chatId);
    if (switching && this.marks) this.marks.chatOpened(chatId);
    const timeline = store.timelines.get(chatId);
    try {
      if (!timeline || !timeline.loaded) await this.sync.loadLatest(chatId);
      else {
        await this.sync.fillGap(chatId);
        this.reads.soon();
      }
    } catch (error) {
      if (store.preview) views.messages.showHistoryText("Join the channel to read and send messages.");
      else toast(error.message, { error: true });
    }
  }

  toggleMembers() {
    if (this.views.members.toggle() && this.store.openChatId) this.sync.loadMembers(this.store.openChatId);
  }

  async leaveChat(chat) {
    const { store } = this;
    const ok = await confirmDialog({ title: `Leave ${store.chatTitle(chat)}?`, text: "You will stop receiving its messages.", ok: "Leave" });
    if (!ok) return;
    try {
      await this.api.leaveChat(chat.id, store.me.id);
      store.removeChat(chat.id);
      this.leaveView(chat.id);
      this.views.sidebar.render();
    } catch (error) {
      toast(error.message, { error: true });
    }
  }

  async joinPreview(chat) {
    try {
      const joined = await this.api.joinChat(chat.id);
      this.addChat(joined && joined.id ? joined : chat);
    } catch (error) {
      toast(error.message, { error: true });
    }
  }
}
