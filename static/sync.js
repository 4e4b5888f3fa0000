// Loading from the API into the Store: users, chats, presence, members, message pages and gaps, resync.

import { toast } from "./ui.js";
import { debounce } from "./util.js";

const PAGE_SIZE = 50;
const GAP_PAGE_SIZE = 200;
// How far back opening a chat loads to reach its first unread message.
const UNREAD_PAGES = 8;

export class Sync {
  // onChatGone(chatId): the open chat is no longer in our list (we left, were removed, it was deleted).
  constructor({ store, api, views, reads, notifyUrl, onChatGone }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.reads = reads;
    this.notifyUrl = notifyUrl;
    this.onChatGone = onChatGone;
    this.reloadChatsSoon = debounce(() => this.loadChats().catch(() => {}), 300);
    this.reloadUsersSoon = debounce(() => this.loadUsers().then(() => views.renderAll()).catch(() => {}), 300);
    this.loadPresenceSoon = debounce(() => this.loadPresence(), 200);
  }

  async loadUsers() {
    this.store.setUsers(await this.api.users());
  }

  async loadChats() {
    const { store, views } = this;
    store.setChats(await this.api.chats());
    const open = store.openChatId;
    if (open && !store.chats.has(open) && !store.isPreviewing(open)) this.onChatGone(open);
    views.sidebar.render();
    views.pane.renderHeader();
    // The server counts up to our last mark; the chat in front of the reader is read by now.
    const chat = open && store.chats.get(open);
    if (chat && chat.unread_count && this.reads.inView(open)) this.reads.soon();
  }

  async loadPresence() {
    try {
      const answer = await this.api.onlineUsers(this.notifyUrl);
      this.store.setOnline(answer.users || [], { replace: true });
      this.views.renderPresence();
    } catch {
      // The notify role may be down; presence events fill this in once it is back.
    }
  }

  // A chat's members, once: member events keep the list current (a resync or `force` loads it again).
  // Who of them is online, each time: notify answers that only for a chat we are in.
  async loadMembers(chatId, { force = false } = {}) {
    const { store } = this;
    const load = force || !store.members.has(chatId);
    try {
      const [list, online] = await Promise.all([
        load ? this.api.members(chatId) : null,
        store.isPreviewing(chatId) ? null : this.api.onlineUsers(this.notifyUrl, chatId).catch(() => null),
      ]);
      if (list) store.setMembers(chatId, list);
      if (online) store.setOnline(online.users || []);
      if (list && list.some((m) => !store.users.has(m.user_id))) this.reloadUsersSoon();
      if (chatId === store.openChatId) this.views.renderMembership();
    } catch {
      // The chat is gone or hidden from us: the panel keeps what it had.
    }
  }

  // The latest page of a chat; anything newer that arrived meanwhile is fetched after it.
  async loadLatest(chatId) {
    const known = (this.store.chats.get(chatId) || {}).maxSeq || 0;
    const answer = await this.api.messages(chatId, { limit: PAGE_SIZE, threads: "roots" });
    const timeline = this.store.replaceTimeline(chatId, answer.messages || [], Boolean(answer.has_more));
    // The latest roots cover every seq the chat had before we asked: what is not here is a reply.
    timeline.noteSeq(known);
    if (chatId !== this.store.openChatId) return;
    this.views.messages.render({ toBottom: true });
    const chat = this.store.chats.get(chatId);
    if (chat && chat.maxSeq > timeline.maxSeq) await this.fillGap(chatId);
    await this.reachUnreadLine(chatId);
    this.fillScreen();
    this.reads.soon();
  }

  // Older pages until the first unread message is loaded, so the "New messages" line can show.
  async reachUnreadLine(chatId) {
    const { store } = this;
    for (let page = 0; page < UNREAD_PAGES; page += 1) {
      if (chatId !== store.openChatId || store.unreadLineSeq(chatId) !== null) break;
      const line = store.unreadLine;
      const timeline = store.timelines.get(chatId);
      if (!line || !line.needsOlder || !timeline || !timeline.hasMore) break;
      const before = timeline.minSeq;
      await this.loadOlder();
      if (timeline.minSeq === before) break; // the page failed; the reader can still scroll up
    }
    if (chatId === store.openChatId) this.views.messages.render();
  }

  // Messages after the newest one we hold, for a chat we hold a timeline of.
  async fillGap(chatId) {
    const timeline = this.store.timelines.get(chatId);
    if (!timeline || !timeline.loaded || timeline.filling) return;
    timeline.filling = true;
    try {
      for (let more = true; more;) {
        const known = (this.store.chats.get(chatId) || {}).maxSeq || 0;
        const answer = await this.api.messages(chatId, { after: timeline.maxSeq, limit: GAP_PAGE_SIZE, threads: "roots" });
        for (const message of answer.messages || []) this.store.applyMessage(message);
        more = Boolean(answer.has_more) && (answer.messages || []).length > 0;
        if (!more) timeline.noteSeq(known);
      }
    } finally {
      timeline.filling = false;
    }
    if (chatId === this.store.openChatId) {
      this.views.messages.render();
      this.reads.soon();
    }
    this.views.sidebar.render();
  }

  // One older page of the open chat; a call while one is loading waits for that one.
  loadOlder() {
    const chatId = this.store.openChatId;
    const timeline = this.store.openTimeline();
    if (timeline && timeline.loadingOlder) return timeline.loadingOlder;
    if (!timeline || !timeline.loaded || !timeline.hasMore || timeline.minSeq === null) return Promise.resolve();
    timeline.loadingOlder = this.loadOlderPage(chatId, timeline).finally(() => {
      timeline.loadingOlder = false;
      if (chatId !== this.store.openChatId) return;
      this.views.messages.renderKeepingPosition();
      this.fillScreen();
    });
    this.views.messages.renderHistoryStatus();
    return timeline.loadingOlder;
  }

  async loadOlderPage(chatId, timeline) {
    try {
      const answer = await this.api.messages(chatId, { before: timeline.minSeq, limit: PAGE_SIZE, threads: "roots" });
      for (const message of answer.messages || []) timeline.upsert(message);
      timeline.hasMore = Boolean(answer.has_more) && (answer.messages || []).length > 0;
    } catch (error) {
      toast(error.message, { error: true });
    }
  }

  fillScreen() {
    if (this.views.messages.isShort()) this.loadOlder();
  }

  // The server could not replay what we missed: reload everything we show.
  async resync() {
    const { store } = this;
    try {
      await Promise.all([this.loadChats(), this.loadUsers()]);
      store.dropLoadedExceptOpen();
      const open = store.openChatId;
      if (open && store.chats.has(open)) {
        this.loadMembers(open, { force: true });
        await this.loadLatest(open);
      }
      this.loadPresence();
      this.views.renderAll();
    } catch (error) {
      toast(error.message, { error: true });
    }
  }

  // A new message, from the stream or the answer to our own POST. Returns whether it was new to us.
  messageArrived(message) {
    const { store, views } = this;
    const chat = store.chats.get(message.chat_id);
    if (!chat) {
      this.reloadChatsSoon();
      return false;
    }
    if (!store.users.has(message.sender_id)) this.reloadUsersSoon();
    store.stopTyping(message.chat_id, message.sender_id);
    if (store.isMine(message)) store.adoptPending(message);
    const { fresh, gap } = store.applyMessage(message);
    // System lines (joined, renamed…) are never unread, as the server counts them.
    if (fresh && !store.isMine(message) && message.kind !== "system" && !this.reads.inView(message.chat_id)) {
      chat.unread_count += 1;
      if (store.mentionsMe(message)) chat.mention_count += 1;
    }
    // Sending marks the chat read up to our message (the server does so too, with a read event).
    if (fresh && store.isMine(message)) store.readUpTo(chat, message.seq);
    if (message.thread_root_id) views.thread.renderIfOpen(message.thread_root_id, { arrived: fresh && !store.isMine(message) });
    if (message.chat_id === store.openChatId) {
      if (gap) this.fillGap(message.chat_id).catch(() => {});
      views.messages.render({ arrived: fresh && !store.isMine(message) });
      views.pane.renderTyping();
      this.reads.soon();
    }
    views.sidebar.render();
    return fresh;
  }
}
