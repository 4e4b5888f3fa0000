// Read marks: tells the server how far the reader has read the open chat, at most once per new seq.

import { debounce } from "./util.js";

const MARK_DELAY_MS = 250;

export class ReadMarks {
  constructor({ store, api, views }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.soon = debounce(() => this.mark(), MARK_DELAY_MS);
  }

  // A chat counts as read only while it is open in a visible tab.
  inView(chatId) {
    return chatId === this.store.openChatId && document.visibilityState === "visible";
  }

  // Leaving a chat: the read mark still waiting for its debounce goes now, while the chat is
  // still the open one; otherwise a quick reply-and-back leaves the chat unread.
  flush() {
    if (this.store.openChatId) this.mark();
  }

  async mark() {
    const { store } = this;
    const chatId = store.openChatId;
    const chat = chatId && store.chats.get(chatId);
    const timeline = chat && store.timelines.get(chatId);
    if (!timeline || !timeline.loaded || !this.inView(chatId)) return;
    const seq = timeline.maxSeq;
    const sent = store.readSent.get(chatId) || 0;
    if (!seq || (seq <= sent && !chat.unread_count && !chat.mention_count)) return;
    // Back in a tab that was hidden while messages came: the line goes above the first of them.
    const line = store.unreadLine;
    if (chat.unread_count && !(line && line.chatId === chatId)) {
      store.startUnreadLine(chatId, { scroll: false });
      this.views.messages.render();
    }
    store.readUpTo(chat, seq);
    this.views.sidebar.render();
    try {
      await this.api.markRead(chatId, seq);
    } catch {
      store.readSent.set(chatId, sent);
    }
  }

  // A read event about us. Returns true when our counts are stale and the chats need reloading.
  readElsewhere({ chat_id: chatId, seq }) {
    const chat = this.store.chats.get(chatId);
    if (!chat) return false;
    // Our own mark coming back (or an older one): nothing new. Reloading the chats here raced
    // the next mark and brought back a badge on the chat being read.
    if (seq <= (this.store.readSent.get(chatId) || 0)) return false;
    // We read it in another tab.
    const stale = seq < chat.maxSeq;
    this.store.readUpTo(chat, seq, { all: !stale });
    this.views.sidebar.render();
    return stale;
  }
}
