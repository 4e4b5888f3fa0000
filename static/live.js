// Live updates: keeps the notify stream open (reopened with a fresh token from the last event id) and applies each event.

import { EVENTS } from "./event-names.js";
import { EventStream } from "./stream.js";

export class Live {
  constructor({ store, api, views, sync, reads, chats, notifier, settings, notifyUrl }) {
    this.store = store;
    this.notifier = notifier;
    this.settings = settings;
    this.api = api;
    this.views = views;
    this.sync = sync;
    this.reads = reads;
    this.chats = chats;
    this.notifyUrl = notifyUrl;
    this.stream = null;
    this.handlers = {
      [EVENTS.MESSAGE_CREATED]: (data) => {
        if (sync.messageArrived(data)) notifier.consider(data);
      },
      [EVENTS.MESSAGE_UPDATED]: (data) => this.messageUpdated(data),
      [EVENTS.MESSAGE_DELETED]: (data) => this.messageDeleted(data),
      [EVENTS.CHAT_CREATED]: (data) => this.chatChanged(data, { created: true }),
      [EVENTS.CHAT_UPDATED]: (data) => this.chatChanged(data),
      [EVENTS.CHAT_DELETED]: (data) => this.chatDeleted(data),
      [EVENTS.CHAT_SETTINGS]: (data) => settings.applyEvent(data),
      [EVENTS.MEMBER_JOINED]: (data) => this.memberJoined(data),
      [EVENTS.MEMBER_LEFT]: (data) => this.memberLeft(data),
      [EVENTS.MEMBER_UPDATED]: (data) => this.memberUpdated(data),
      [EVENTS.REACTION_ADDED]: (data) => this.marks && this.marks.applyReaction(data, true),
      [EVENTS.REACTION_REMOVED]: (data) => this.marks && this.marks.applyReaction(data, false),
      [EVENTS.MESSAGE_PINNED]: (data) => this.marks && this.marks.applyPinned(data, true),
      [EVENTS.MESSAGE_UNPINNED]: (data) => this.marks && this.marks.applyPinned(data, false),
      [EVENTS.THREAD_UPDATED]: (data) => this.threadUpdated(data),
      [EVENTS.TYPING]: (data) => this.typing(data),
      [EVENTS.READ]: (data) => this.read(data),
      [EVENTS.PRESENCE]: (data) => this.presence(data),
      [EVENTS.USER_UPDATED]: (data) => this.userUpdated(data),
      [EVENTS.RESYNC]: () => sync.resync(),
    };
  }

  // --- the connection ---------------------------------------------------------------

  start() {
    this.stop();
    this.stream = new EventStream({
      notifyUrl: this.notifyUrl,
      getToken: (failures) => this.tokenFor(failures),
      onEvent: (name, data) => this.dispatch(name, data),
      onState: (state) => {
        this.store.connection = state;
        this.views.sidebar.renderConnection();
      },
      onOpen: (info) => this.opened(info),
    });
    this.stream.start();
  }

  stop() {
    if (this.stream) this.stream.stop();
    this.stream = null;
  }

  // The network came back: retry now rather than at the end of the backoff.
  kick() {
    if (this.stream) this.stream.kick();
  }

  // A new access token: reopen the stream with it, resuming from the last event id.
  tokenChanged(session) {
    if (this.stream && this.stream.token && session.access_token !== this.stream.token) this.stream.restart();
  }

  async tokenFor(failures) {
    // Repeated failures: ask the notify role over fetch, which tells a rejected token (and
    // refreshes it) from a notify role that is down.
    if (failures >= 2) await this.api.onlineUsers(this.notifyUrl).catch((error) => {
      if (error.status === 401) throw error;
    });
    return this.api.freshToken();
  }

  opened({ reconnect, resumed }) {
    // Back without a resume point: the server cannot replay what we missed, so reload it.
    if (reconnect && !resumed) this.sync.reloadChatsSoon();
    const open = this.store.openChatId;
    if (open && this.store.chats.has(open)) this.sync.fillGap(open).catch(() => {});
    this.sync.loadPresence();
  }

  dispatch(name, data) {
    const handler = this.handlers[name];
    if (handler && data && typeof data === "object") handler(data);
  }

  isMe(userId) {
    return Boolean(this.store.me && userId === this.store.me.id);
  }

  // --- what each event does ----------------------------------------------------------

  // Someone's name, username, status or picture changed (ours, from another tab): every view shows them anew.
  userUpdated(user) {
    this.store.applyUser(user);
    this.views.renderAll();
    if (this.people) this.people.userChanged(user.id);
  }

  // The loaded version of a message, if any.
  known(chatId, messageId) {
    const timeline = this.store.timelines.get(chatId);
    return timeline ? timeline.byId.get(messageId) : undefined;
  }

  // Someone else's message above our read mark was edited or deleted in a chat we hold: when that
  // changed what the server counts, it recounts and we reload the chat list.
  recount(chat, seq, changed) {
    if (!changed || this.reads.inView(chat.id)) return;
    if (seq <= Math.max(Number(chat.last_read_seq) || 0, this.store.readSent.get(chat.id) || 0)) return;
    this.sync.reloadChatsSoon();
  }

  // A root's reply count and last reply time: under the root in the list, and atop its open panel.
  threadUpdated(data) {
    if (!data.chat_id || !data.message_id) return;
    if (!this.store.applyThread(data)) return;
    this.views.messages.renderIfOpen(data.chat_id);
    this.views.thread.renderIfOpen(data.message_id);
  }

  messageUpdated(data) {
    const { store } = this;
    // Reactions, pins and reply counts change by their own events; `me` in this payload is the editor's.
    const message = store.withKnownReactions(data);
    const chat = store.chats.get(message.chat_id);
    const old = this.known(message.chat_id, message.id);
    const before = old && store.mentionsMe(old);
    store.applyMessage(message);
    if (chat && !store.isMine(message)) {
      // An edit adds or takes away a mention; one of a message we never saw, only from a count.
      const after = store.mentionsMe(message);
      this.recount(chat, message.seq, old ? before !== after : after || chat.mention_count > 0);
    }
    this.views.messages.renderIfOpen(message.chat_id);
    if (message.thread_root_id) this.views.thread.renderIfOpen(message.thread_root_id);
    else this.views.thread.renderIfOpen(message.id);
    this.views.sidebar.render();
  }

  messageDeleted(data) {
    const { store } = this;
    const chat = store.chats.get(data.chat_id);
    const old = this.known(data.chat_id, data.id);
    if (chat && !(old && store.isMine(old))) {
      // An unread message went away (one unread, maybe one mention, less), unless it was gone already.
      this.recount(chat, data.seq, old ? !old.deleted : chat.unread_count > 0 || chat.mention_count > 0);
    }
    store.applyDeleted(data);
    this.views.messages.renderIfOpen(data.chat_id);
    const thread = store.openThread();
    if (thread && thread.chatId === data.chat_id) this.views.thread.render();
    this.views.sidebar.render();
  }

  chatChanged(chat, { created = false } = {}) {
    const { store, sync, views } = this;
    if (!chat.id) return;
    // Presence events come only when someone's first stream opens or last one closes, so people
    // already online when they first share a chat with us are learnt from online-users. This
    // event arrives after notify counts the new members in, so the answer includes them; asking
    // earlier (the creator, right after the POST) may be answered before notify knows the chat.
    if (created || !store.chats.has(chat.id)) sync.loadPresenceSoon();
    store.upsertChat(chat);
    if (chat.members === undefined && !store.chats.get(chat.id).memberIds.length) sync.reloadChatsSoon();
    views.sidebar.render();
    if (chat.id === store.openChatId) views.pane.renderHeader();
  }

  chatDeleted({ id }) {
    if (!this.store.chats.has(id)) return;
    this.store.removeChat(id);
    this.chats.leaveView(id, "This chat was deleted.");
    this.views.sidebar.render();
  }

  memberJoined({ chat_id: chatId, user_id: userId, role }) {
    const { store, sync, views } = this;
    if (this.isMe(userId)) {
      this.api.chat(chatId).then((chat) => this.chats.addChat(chat)).catch(() => sync.reloadChatsSoon());
      sync.loadPresenceSoon();
      return;
    }
    if (!store.chats.has(chatId)) return;
    store.addMember(chatId, userId, role);
    if (!store.users.has(userId)) sync.reloadUsersSoon();
    // They may be online already: presence events come only when a first stream opens.
    sync.loadPresenceSoon();
    if (chatId === store.openChatId) views.renderMembership();
    views.sidebar.render();
  }

  memberLeft({ chat_id: chatId, user_id: userId }) {
    const { store, views } = this;
    if (this.isMe(userId)) {
      store.removeChat(chatId);
      this.chats.leaveView(chatId, "You are no longer a member of that chat.");
      views.sidebar.render();
      return;
    }
    if (!store.chats.has(chatId)) return;
    store.removeMember(chatId, userId);
    if (chatId === store.openChatId) views.renderMembership();
    views.sidebar.render();
  }

  // A role changed, or the ownership moved: the header (settings, leave) and members panel follow.
  memberUpdated(data) {
    const { store, views } = this;
    if (!store.chats.has(data.chat_id)) return;
    store.applyRole(data);
    if (data.chat_id === store.openChatId) views.renderMembership();
    views.sidebar.render();
  }

  typing({ chat_id: chatId, user_id: userId }) {
    if (!chatId || !userId || this.isMe(userId)) return;
    this.store.startTyping(chatId, userId);
    if (chatId === this.store.openChatId) this.views.pane.renderTyping();
  }

  // Only our own marks matter: another tab of ours read the chat.
  read(data) {
    if (this.isMe(data.user_id) && this.reads.readElsewhere(data)) this.sync.reloadChatsSoon();
  }

  // One change is {user_id, status}; the changes of one server tick come together as {users: [...]}.
  presence(data) {
    const changes = Array.isArray(data.users) ? data.users : [data];
    const changed = [];
    for (const { user_id: userId, status } of changes) {
      if (!userId || !status) continue;
      this.store.setPresence(userId, status);
      changed.push(userId);
    }
    if (changed.length) this.views.renderPresence(changed);
  }
}
