// The Fechatter demo client: wires the API, the event stream, the store and the views together.

import { Api, loadSession } from "./api.js";
import { openAddMembers, openBrowse, openInvite, openNewChat, copyText, wireDialogs } from "./dialogs.js";
import { EventStream } from "./events.js";
import { Store, Timeline } from "./store.js";
import {
  byTestId, confirmDialog, editInPlace, renderChatList, renderMembers, renderMessages, showFormError,
  toast, typingText, updatePresenceDots,
} from "./ui.js";

const TYPING_SEND_INTERVAL_MS = 3000;
const PAGE_SIZE = 50;
const SEND_ATTEMPTS = 4;
const CONNECTION_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", offline: "offline" };

function notifyUrlFromPage() {
  const meta = document.querySelector('meta[name="fechatter-notify-url"]');
  const value = meta && meta.content && !meta.content.includes("{{") ? meta.content : "";
  return (value || `${location.protocol}//${location.hostname}:6687`).replace(/\/+$/, "");
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Runs fn at most once per `ms`, trailing call included.
function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

class App {
  constructor() {
    this.notifyUrl = notifyUrlFromPage();
    this.store = new Store();
    this.api = new Api({
      onSession: (session) => this.sessionChanged(session),
      onSignedOut: (reason) => this.signedOut(reason),
    });
    this.stream = null;
    this.streamToken = null;
    this.pending = new Map(); // chatId -> Map(key -> unsent message)
    this.readSent = new Map(); // chatId -> highest seq we told the server we read
    this.typingSentAt = new Map(); // chatId -> time of our last POST typing
    this.typingTimer = null;
    this.editingId = null;
    this.preview = null; // a public channel opened by link that we are not a member of
    this.reloadChatsSoon = debounce(() => this.loadChats().catch(() => {}), 300);
    this.reloadUsersSoon = debounce(() => this.loadUsers().then(() => this.renderAll()).catch(() => {}), 300);
    this.markReadSoon = debounce(() => this.markRead(), 250);
    this.loadPresenceSoon = debounce(() => this.loadPresence(), 200);
    this.el = {
      auth: document.getElementById("auth-view"),
      app: document.getElementById("app-view"),
      chatList: byTestId("chat-list"),
      chatListEmpty: byTestId("chat-list-empty"),
      noChat: byTestId("no-chat"),
      chat: byTestId("chat"),
      title: byTestId("chat-title"),
      description: byTestId("chat-description"),
      scroller: byTestId("message-scroller"),
      messages: byTestId("message-list"),
      history: byTestId("history-status"),
      typing: byTestId("typing-indicator"),
      composer: byTestId("composer"),
      input: byTestId("message-input"),
      members: byTestId("members-panel"),
      connection: byTestId("connection-state"),
    };
  }

  // --- start, sign in, sign out -------------------------------------------------------

  start() {
    this.wireAuth();
    this.wireApp();
    wireDialogs(this);
    // Wide screens have room for the members list next to the messages.
    if (window.matchMedia("(min-width: 1100px)").matches) this.toggleMembers();
    window.addEventListener("online", () => this.stream && this.stream.kick());
    if (loadSession()) this.enter().catch((error) => this.bootFailed(error));
    else this.showAuth();
  }

  showAuth(message = "") {
    this.stopStream();
    this.store.reset();
    this.pending.clear();
    this.readSent.clear();
    this.preview = null;
    this.editingId = null;
    this.el.messages.replaceChildren();
    this.el.chatList.replaceChildren();
    this.el.chat.hidden = true;
    this.el.noChat.hidden = false;
    document.body.dataset.view = "list";
    this.el.app.hidden = true;
    this.el.auth.hidden = false;
    document.title = "Fechatter";
    const invite = new URLSearchParams(location.search).get("invite");
    if (invite) {
      const form = byTestId("signup-form");
      form.elements.invite_code.value = invite;
      form.elements.mode.value = "join";
      this.syncSignupMode();
      this.showAuthTab("signup");
    } else {
      this.showAuthTab("signin");
    }
    byTestId("signin-error").textContent = message;
    const first = this.el.auth.querySelector("form:not([hidden]) input:not([type=radio])");
    if (first) first.focus();
  }

  showAuthTab(name) {
    for (const tab of ["signin", "signup"]) {
      const active = tab === name;
      byTestId(`tab-${tab}`).setAttribute("aria-selected", String(active));
      byTestId(`${tab}-form`).hidden = !active;
    }
  }

  syncSignupMode() {
    const form = byTestId("signup-form");
    const mode = form.elements.mode.value;
    for (const label of form.querySelectorAll("[data-mode]")) label.hidden = label.dataset.mode !== mode;
  }

  wireAuth() {
    byTestId("tab-signin").addEventListener("click", () => this.showAuthTab("signin"));
    byTestId("tab-signup").addEventListener("click", () => this.showAuthTab("signup"));
    const signup = byTestId("signup-form");
    for (const radio of signup.elements.mode) radio.addEventListener("change", () => this.syncSignupMode());

    byTestId("signin-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.currentTarget;
      const error = byTestId("signin-error");
      const email = form.elements.email.value.trim();
      const password = form.elements.password.value;
      if (!email || !password) return showFormError(error, { message: "Enter your e-mail and password." });
      await this.submitAuth(form, error, () => this.api.signin(email, password));
    });

    signup.addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.currentTarget;
      const error = byTestId("signup-error");
      const body = {
        fullname: form.elements.fullname.value.trim(),
        email: form.elements.email.value.trim(),
        password: form.elements.password.value,
      };
      const joining = form.elements.mode.value === "join";
      const extra = joining ? form.elements.invite_code.value.trim() : form.elements.workspace.value.trim();
      if (!body.fullname || !body.email || !body.password || !extra) {
        return showFormError(error, { message: joining ? "Fill in every field, including the invite code." : "Fill in every field, including the workspace name." });
      }
      body[joining ? "invite_code" : "workspace"] = extra;
      await this.submitAuth(form, error, () => this.api.signup(body));
    });
  }

  async submitAuth(form, errorEl, call) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    showFormError(errorEl, null);
    try {
      await call();
      form.reset();
      this.syncSignupMode();
      if (new URLSearchParams(location.search).has("invite")) history.replaceState(null, "", `/${location.hash}`);
      await this.enter();
    } catch (error) {
      showFormError(errorEl, error);
    } finally {
      button.disabled = false;
    }
  }

  async enter() {
    const session = loadSession();
    this.api.scheduleRefresh();
    this.store.me = session.user;
    this.store.workspace = session.workspace;
    this.el.auth.hidden = true;
    this.el.app.hidden = false;
    const [me] = await Promise.all([this.api.me(), this.loadUsers(), this.loadChats()]);
    this.store.me = me;
    this.renderIdentity();
    this.startStream();
    this.loadPresence();
    this.api.workspace().then((workspace) => {
      this.store.workspace = workspace;
      this.renderIdentity();
    }).catch(() => {});
    this.route();
  }

  bootFailed(error) {
    if (error && error.status === 401) return; // signedOut already showed the sign-in form
    toast(`${error.message} Retrying…`, { error: true });
    setTimeout(() => this.enter().catch((again) => this.bootFailed(again)), 3000);
  }

  signedOut(reason) {
    const message = {
      expired: "Your session has ended. Please sign in again.",
      signed_out_elsewhere: "You signed out in another tab.",
    }[reason] || "";
    history.replaceState(null, "", location.pathname + location.search);
    this.showAuth(message);
  }

  sessionChanged(session) {
    // A new access token: reopen the stream with it, resuming from the last event id.
    if (this.stream && this.streamToken && session.access_token !== this.streamToken) this.stream.restart();
  }

  renderIdentity() {
    const { me, workspace } = this.store;
    byTestId("current-user").textContent = me ? me.fullname : "";
    byTestId("workspace-name").textContent = workspace ? workspace.name : "";
    const owner = Boolean(me && workspace && (workspace.owner_id === me.id || workspace.invite_code));
    byTestId("invite-people").hidden = !owner;
  }

  // --- data loading --------------------------------------------------------------

  async loadUsers() {
    const users = await this.api.users();
    this.store.setUsers(Array.isArray(users) ? users : users.users || []);
  }

  async loadChats() {
    const chats = await this.api.chats();
    this.store.setChats(Array.isArray(chats) ? chats : chats.chats || []);
    const open = this.store.openChatId;
    if (open && !this.store.chats.has(open) && !(this.preview && this.preview.id === open)) this.leaveView(open);
    this.renderChatList();
    this.renderHeader();
    // The server counts up to our last mark; the chat in front of the reader is read by now.
    const chat = open && this.store.chats.get(open);
    if (chat && chat.unread_count && this.chatInView(open)) this.markReadSoon();
  }

  async loadPresence() {
    try {
      const answer = await this.api.onlineUsers(this.notifyUrl);
      this.store.setOnline(answer.users || [], { replace: true });
      this.renderPresence();
    } catch {
      // The notify role may be down; presence events fill this in once it is back.
    }
  }

  async loadMembers(chatId) {
    try {
      const [members, online] = await Promise.all([
        this.api.members(chatId),
        this.api.onlineUsers(this.notifyUrl, chatId).catch(() => null),
      ]);
      const list = Array.isArray(members) ? members : members.members || [];
      this.store.members.set(chatId, list);
      const chat = this.store.chats.get(chatId);
      if (chat) chat.memberIds = list.map((m) => m.user_id);
      if (online) this.store.setOnline(online.users || []);
      if (list.some((m) => !this.store.users.has(m.user_id))) this.reloadUsersSoon();
      // The header counts the members too, and a join or leave changes the count.
      if (chatId === this.store.openChatId) {
        this.renderMembers();
        this.renderHeader();
      }
    } catch {
      // Not a member (a previewed channel): the panel stays empty.
    }
  }

  // The latest page of a chat; anything newer that arrived meanwhile is fetched after it.
  async loadLatest(chatId) {
    const answer = await this.api.messages(chatId, { limit: PAGE_SIZE });
    const timeline = new Timeline();
    for (const message of answer.messages || []) timeline.upsert(message);
    const old = this.store.timelines.get(chatId);
    if (old && old.loaded) for (const message of old.sorted()) if (message.seq > timeline.maxSeq) timeline.upsert(message);
    timeline.hasMore = Boolean(answer.has_more);
    timeline.loaded = true;
    this.store.timelines.set(chatId, timeline);
    const chat = this.store.chats.get(chatId);
    for (const message of timeline.sorted()) this.store.applyMessage(message);
    if (chatId !== this.store.openChatId) return;
    this.renderMessages({ toBottom: true });
    if (chat && chat.maxSeq > timeline.maxSeq) await this.fillGap(chatId);
    this.fillScreen();
    this.markReadSoon();
  }

  // Messages after the newest one we hold, for a chat we hold a timeline of.
  async fillGap(chatId) {
    const timeline = this.store.timelines.get(chatId);
    if (!timeline || !timeline.loaded || timeline.filling) return;
    timeline.filling = true;
    try {
      for (let more = true; more;) {
        const answer = await this.api.messages(chatId, { after: timeline.maxSeq, limit: 200 });
        for (const message of answer.messages || []) this.store.applyMessage(message);
        more = Boolean(answer.has_more) && (answer.messages || []).length > 0;
      }
    } finally {
      timeline.filling = false;
    }
    if (chatId === this.store.openChatId) {
      this.renderMessages();
      this.markReadSoon();
    }
    this.renderChatList();
  }

  async loadOlder() {
    const chatId = this.store.openChatId;
    const timeline = chatId && this.store.timelines.get(chatId);
    if (!timeline || !timeline.loaded || !timeline.hasMore || timeline.loadingOlder || timeline.minSeq === null) return;
    timeline.loadingOlder = true;
    this.renderHistoryStatus();
    try {
      const answer = await this.api.messages(chatId, { before: timeline.minSeq, limit: PAGE_SIZE });
      for (const message of answer.messages || []) timeline.upsert(message);
      timeline.hasMore = Boolean(answer.has_more) && (answer.messages || []).length > 0;
    } catch (error) {
      toast(error.message, { error: true });
    } finally {
      timeline.loadingOlder = false;
    }
    if (chatId !== this.store.openChatId) return;
    // Keep the message under the reader's eye where it was.
    const scroller = this.el.scroller;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    this.renderMessages();
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
    this.fillScreen();
  }

  // Scroll events never come while the page is shorter than the pane.
  fillScreen() {
    const scroller = this.el.scroller;
    if (scroller.scrollHeight <= scroller.clientHeight + 4) this.loadOlder();
  }

  async resync() {
    try {
      await Promise.all([this.loadChats(), this.loadUsers()]);
      for (const chatId of [...this.store.timelines.keys()]) if (chatId !== this.store.openChatId) this.store.timelines.delete(chatId);
      if (this.store.openChatId && this.store.chats.has(this.store.openChatId)) await this.loadLatest(this.store.openChatId);
      this.loadPresence();
      this.renderAll();
    } catch (error) {
      toast(error.message, { error: true });
    }
  }

  // --- event stream ---------------------------------------------------------------

  startStream() {
    this.stopStream();
    this.stream = new EventStream({
      notifyUrl: this.notifyUrl,
      getToken: (failures) => this.streamTokenFor(failures),
      onEvent: (name, data) => this.onEvent(name, data),
      onState: (state) => this.renderConnection(state),
      onOpen: (info) => this.streamOpened(info),
    });
    this.stream.start();
  }

  stopStream() {
    if (this.stream) this.stream.stop();
    this.stream = null;
    this.streamToken = null;
  }

  async streamTokenFor(failures) {
    // Repeated failures: ask the notify role over fetch, which tells a rejected token (and
    // refreshes it) from a notify role that is down.
    if (failures >= 2) await this.api.onlineUsers(this.notifyUrl).catch((error) => {
      if (error.status === 401) throw error;
    });
    this.streamToken = await this.api.freshToken();
    return this.streamToken;
  }

  streamOpened({ reconnect, resumed }) {
    // Back without a resume point: the server cannot replay what we missed, so reload it.
    if (reconnect && !resumed) this.reloadChatsSoon();
    const open = this.store.openChatId;
    if (open && this.store.chats.has(open)) this.fillGap(open).catch(() => {});
    this.loadPresence();
  }

  onEvent(name, data) {
    if (!data || typeof data !== "object") return;
    switch (name) {
      case "message.created": return this.messageCreated(data);
      case "message.updated": return this.messageUpdated(data);
      case "message.deleted": return this.messageDeleted(data);
      case "chat.created": return this.chatChanged(data, { created: true });
      case "chat.updated": return this.chatChanged(data);
      case "chat.deleted": return this.chatDeleted(data);
      case "member.joined": return this.memberJoined(data);
      case "member.left": return this.memberLeft(data);
      case "typing": return this.typingEvent(data);
      case "read": return this.readEvent(data);
      case "presence": return this.presenceEvent(data);
      case "resync": return this.resync();
      default: return undefined;
    }
  }

  isMine(message) {
    return Boolean(this.store.me && message.sender_id === this.store.me.id);
  }

  chatInView(chatId) {
    return chatId === this.store.openChatId && document.visibilityState === "visible";
  }

  messageCreated(message) {
    const chat = this.store.chats.get(message.chat_id);
    if (!chat) {
      this.reloadChatsSoon();
      return;
    }
    if (!this.store.users.has(message.sender_id)) this.reloadUsersSoon();
    this.store.stopTyping(message.chat_id, message.sender_id);
    if (this.isMine(message)) this.adoptPending(message);
    const { fresh, gap } = this.store.applyMessage(message);
    if (fresh && !this.isMine(message) && !this.chatInView(message.chat_id)) chat.unread_count += 1;
    if (message.chat_id === this.store.openChatId) {
      if (gap) this.fillGap(message.chat_id).catch(() => {});
      this.renderMessages();
      this.renderTyping();
      this.markReadSoon();
    }
    this.renderChatList();
  }

  messageUpdated(message) {
    this.store.applyMessage(message);
    if (message.chat_id === this.store.openChatId) this.renderMessages();
    this.renderChatList();
  }

  messageDeleted(data) {
    if (this.editingId === data.id) this.editingId = null;
    this.store.applyDeleted(data);
    if (data.chat_id === this.store.openChatId) this.renderMessages();
    this.renderChatList();
  }

  chatChanged(chat, { created = false } = {}) {
    if (!chat.id) return;
    // Presence events come only when someone's first stream opens or last one closes, so people
    // already online when they first share a chat with us are learnt from online-users. This
    // event arrives after notify counts the new members in, so the answer includes them; asking
    // earlier (the creator, right after the POST) may be answered before notify knows the chat.
    if (created || !this.store.chats.has(chat.id)) this.loadPresenceSoon();
    this.store.upsertChat(chat);
    if (chat.members === undefined && !this.store.chats.get(chat.id).memberIds.length) this.reloadChatsSoon();
    this.renderChatList();
    if (chat.id === this.store.openChatId) this.renderHeader();
  }

  chatDeleted({ id }) {
    if (!this.store.chats.has(id)) return;
    this.store.removeChat(id);
    this.leaveView(id, "This chat was deleted.");
    this.renderChatList();
  }

  memberJoined({ chat_id: chatId, user_id: userId }) {
    if (this.store.me && userId === this.store.me.id) {
      this.api.chat(chatId).then((chat) => this.addChat(chat)).catch(() => this.reloadChatsSoon());
      this.loadPresenceSoon();
      return;
    }
    const chat = this.store.chats.get(chatId);
    if (!chat) return;
    if (!chat.memberIds.includes(userId)) chat.memberIds.push(userId);
    if (!this.store.users.has(userId)) this.reloadUsersSoon();
    this.loadPresenceSoon();
    if (chatId === this.store.openChatId) this.loadMembers(chatId);
    this.renderChatList();
  }

  memberLeft({ chat_id: chatId, user_id: userId }) {
    if (this.store.me && userId === this.store.me.id) {
      this.store.removeChat(chatId);
      this.leaveView(chatId, "You are no longer a member of that chat.");
      this.renderChatList();
      return;
    }
    const chat = this.store.chats.get(chatId);
    if (!chat) return;
    chat.memberIds = chat.memberIds.filter((id) => id !== userId);
    const members = this.store.members.get(chatId);
    if (members) this.store.members.set(chatId, members.filter((m) => m.user_id !== userId));
    if (chatId === this.store.openChatId) {
      this.renderMembers();
      this.renderHeader();
    }
    this.renderChatList();
  }

  typingEvent({ chat_id: chatId, user_id: userId }) {
    if (!chatId || !userId || (this.store.me && userId === this.store.me.id)) return;
    this.store.startTyping(chatId, userId);
    if (chatId === this.store.openChatId) this.renderTyping();
  }

  readEvent({ chat_id: chatId, user_id: userId, seq }) {
    if (!this.store.me || userId !== this.store.me.id) return;
    const chat = this.store.chats.get(chatId);
    if (!chat) return;
    // Our own mark coming back (or an older one): nothing new. Reloading the chats here raced
    // the next mark and brought back a badge on the chat being read.
    if (seq <= (this.readSent.get(chatId) || 0)) return;
    // We read it in another tab.
    this.readSent.set(chatId, seq);
    if (seq >= chat.maxSeq) chat.unread_count = 0;
    else this.reloadChatsSoon();
    this.renderChatList();
  }

  presenceEvent({ user_id: userId, status }) {
    if (!userId || !status) return;
    this.store.presence.set(userId, status);
    updatePresenceDots(document, userId, status);
    if (this.store.openChatId) this.renderMembers();
  }

  // --- chats and navigation --------------------------------------------------------------

  addChat(chat) {
    if (this.preview && this.preview.id === chat.id) this.preview = null;
    this.store.upsertChat(chat);
    this.renderChatList();
    if (chat.id === this.store.openChatId) this.openChat(chat.id);
  }

  navigate(chatId) {
    const hash = `#/chat/${encodeURIComponent(chatId)}`;
    if (location.hash === hash) this.route();
    else location.hash = hash;
  }

  route() {
    if (this.el.app.hidden) return;
    const match = location.hash.match(/^#\/chat\/([^/?#]+)/);
    if (match) this.openChat(decodeURIComponent(match[1]));
    else this.closeChat();
  }

  // Called when the open chat disappeared (deleted, we left, we were removed).
  leaveView(chatId, message = "") {
    if (chatId !== this.store.openChatId) return;
    if (message) toast(message);
    history.replaceState(null, "", location.pathname + location.search);
    this.closeChat();
  }

  closeChat() {
    this.flushRead();
    this.store.openChatId = null;
    this.preview = null;
    this.editingId = null;
    document.body.dataset.view = "list";
    this.el.chat.hidden = true;
    this.el.noChat.hidden = false;
    document.title = "Fechatter";
    this.renderChatList();
  }

  async openChat(chatId) {
    const switching = chatId !== this.store.openChatId;
    if (switching) this.flushRead();
    this.store.openChatId = chatId;
    this.editingId = null;
    document.body.dataset.view = "chat";
    this.el.noChat.hidden = true;
    this.el.chat.hidden = false;
    this.preview = null;
    if (switching) {
      this.el.messages.replaceChildren();
      this.el.input.value = "";
      this.autosize();
    }
    if (!this.store.chats.has(chatId)) {
      try {
        const chat = await this.api.chat(chatId);
        if (chatId !== this.store.openChatId) return;
        if (this.store.chats.has(chatId)) return this.openChat(chatId);
        this.preview = { ...chat, memberIds: (chat.members || []).map((m) => (typeof m === "string" ? m : m.user_id)), unread_count: 0 };
      } catch (error) {
        if (chatId !== this.store.openChatId) return;
        toast(error.status === 404 ? "That chat does not exist or you cannot see it." : error.message, { error: true });
        history.replaceState(null, "", location.pathname + location.search);
        this.closeChat();
        return;
      }
    }
    this.renderChatList();
    this.renderHeader();
    this.renderTyping();
    this.renderMessages({ toBottom: true });
    if (switching && window.matchMedia("(min-width: 721px)").matches && !this.preview) this.el.input.focus();
    this.loadMembers(chatId);
    const timeline = this.store.timelines.get(chatId);
    try {
      if (!timeline || !timeline.loaded) await this.loadLatest(chatId);
      else {
        await this.fillGap(chatId);
        this.markReadSoon();
      }
    } catch (error) {
      if (this.preview) this.el.history.textContent = "Join the channel to read and send messages.";
      else toast(error.message, { error: true });
    }
  }

  currentChat() {
    const id = this.store.openChatId;
    return (id && this.store.chats.get(id)) || (this.preview && this.preview.id === id ? this.preview : null);
  }

  // --- read marks ----------------------------------------------------------------------

  // Leaving a chat: the read mark still waiting for its debounce goes now, while the chat is
  // still the open one; otherwise a quick reply-and-back leaves the chat unread.
  flushRead() {
    if (this.store.openChatId) this.markRead();
  }

  async markRead() {
    const chatId = this.store.openChatId;
    const chat = chatId && this.store.chats.get(chatId);
    const timeline = chat && this.store.timelines.get(chatId);
    if (!timeline || !timeline.loaded || !this.chatInView(chatId)) return;
    const seq = timeline.maxSeq;
    const sent = this.readSent.get(chatId) || 0;
    if (!seq || (seq <= sent && !chat.unread_count)) return;
    this.readSent.set(chatId, Math.max(seq, sent));
    chat.unread_count = 0;
    this.renderChatList();
    try {
      await this.api.markRead(chatId, seq);
    } catch {
      this.readSent.set(chatId, sent);
    }
  }

  // --- sending, editing, deleting ------------------------------------------------------------

  pendingFor(chatId) {
    let map = this.pending.get(chatId);
    if (!map) {
      map = new Map();
      this.pending.set(chatId, map);
    }
    return map;
  }

  // Our own message came over the stream before the POST answered: drop its placeholder.
  adoptPending(message) {
    const map = this.pending.get(message.chat_id);
    if (!map) return;
    for (const [key, item] of map) {
      if (item.content === message.content && item.pending === "sending") {
        map.delete(key);
        item.adoptedBy = message.id;
        return;
      }
    }
  }

  async sendMessage() {
    const chat = this.currentChat();
    if (!chat || this.preview) return;
    const content = this.el.input.value.trim();
    if (!content) return;
    if (content.length > 4000) return toast("A message can be at most 4000 characters.", { error: true });
    const item = {
      key: newKey(),
      chat_id: chat.id,
      sender_id: this.store.me.id,
      content,
      created_at: new Date().toISOString(),
      pending: "sending",
    };
    this.pendingFor(chat.id).set(item.key, item);
    this.el.input.value = "";
    this.autosize();
    this.typingSentAt.delete(chat.id);
    this.renderMessages({ toBottom: true });
    await this.deliver(item);
  }

  // Sends with the message's idempotency key, retrying transient failures with the same key,
  // so a retried send is stored once.
  async deliver(item) {
    item.pending = "sending";
    this.renderMessagesOf(item.chat_id);
    for (let attempt = 1; ; attempt += 1) {
      try {
        const message = await this.api.sendMessage(item.chat_id, item.content, item.key);
        this.pendingFor(item.chat_id).delete(item.key);
        this.messageCreated(message);
        this.renderMessagesOf(item.chat_id, { toBottom: true });
        return;
      } catch (error) {
        if (!this.pendingFor(item.chat_id).has(item.key)) return; // adopted from the stream meanwhile
        if (error.transient && attempt < SEND_ATTEMPTS) {
          const wait = error.retryAfter ? Number(error.retryAfter) * 1000 : 1000 * 2 ** (attempt - 1);
          await sleep(Math.min(wait || 1000, 10_000));
          continue;
        }
        item.pending = "failed";
        this.renderMessagesOf(item.chat_id);
        toast(error.message, { error: true });
        return;
      }
    }
  }

  renderMessagesOf(chatId, options) {
    if (chatId === this.store.openChatId) this.renderMessages(options);
  }

  messageFromNode(node) {
    const timeline = this.store.timelines.get(this.store.openChatId);
    return timeline ? timeline.byId.get(node.dataset.messageId) : null;
  }

  async editMessage(message) {
    const node = this.el.messages.querySelector(`[data-message-id="${CSS.escape(message.id)}"]`);
    if (!node || this.editingId) return;
    this.editingId = message.id;
    const content = await editInPlace(node, message.content);
    if (this.editingId !== message.id) return;
    this.editingId = null;
    const text = content === null ? null : content.trim();
    if (text && text !== message.content) {
      try {
        const updated = await this.api.editMessage(message.chat_id, message.id, text);
        this.store.applyMessage(updated);
      } catch (error) {
        toast(error.message, { error: true });
      }
    } else if (content !== null && !text) {
      this.renderMessages();
      this.el.input.focus();
      return this.deleteMessage(message);
    }
    this.renderMessages();
    this.el.input.focus();
  }

  async deleteMessage(message) {
    const ok = await confirmDialog({ title: "Delete message?", text: "Everyone in this chat will see “message deleted” instead.", ok: "Delete" });
    if (!ok) return;
    try {
      await this.api.deleteMessage(message.chat_id, message.id);
      this.store.applyDeleted({ id: message.id, chat_id: message.chat_id, seq: message.seq });
      this.renderMessages();
      this.renderChatList();
    } catch (error) {
      toast(error.message, { error: true });
    }
  }

  sendTyping() {
    const chatId = this.store.openChatId;
    if (!chatId || this.preview || !this.el.input.value.trim()) return;
    const now = Date.now();
    if (now - (this.typingSentAt.get(chatId) || 0) < TYPING_SEND_INTERVAL_MS) return;
    this.typingSentAt.set(chatId, now);
    this.api.typing(chatId).catch(() => {});
  }

  autosize() {
    const input = this.el.input;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  }

  // --- wiring --------------------------------------------------------------------------

  wireApp() {
    window.addEventListener("hashchange", () => this.route());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.markReadSoon();
    });
    window.addEventListener("focus", () => this.markReadSoon());

    this.el.app.addEventListener("click", (event) => {
      const target = event.target.closest("[data-action]");
      if (!target) {
        // Touch screens have no hover: a tap on your message shows its actions.
        const own = event.target.closest(".message.mine");
        for (const open of this.el.messages.querySelectorAll(".actions-open")) if (open !== own) open.classList.remove("actions-open");
        if (own && !event.target.closest("a, form")) own.classList.toggle("actions-open");
        return;
      }
      const action = target.dataset.action;
      const chat = this.currentChat();
      const node = target.closest("[data-testid=message]");
      const pendingNode = target.closest("[data-testid=message-pending]");
      if (action === "new-direct") openNewChat(this, "direct");
      else if (action === "new-channel") openNewChat(this, "public_channel");
      else if (action === "browse-channels") openBrowse(this);
      else if (action === "invite") openInvite(this);
      else if (action === "signout") this.api.logout();
      else if (action === "back") location.hash = "";
      else if (action === "toggle-members") this.toggleMembers();
      else if (action === "add-members" && chat) openAddMembers(this, chat);
      else if (action === "copy-channel-link" && chat) copyText(`${location.origin}/#/chat/${encodeURIComponent(chat.id)}`);
      else if (action === "leave" && chat) this.leaveChat(chat);
      else if (action === "join-open" && chat) this.joinPreview(chat);
      else if (action === "edit-message" && node) {
        const message = this.messageFromNode(node);
        if (message) this.editMessage(message);
      } else if (action === "delete-message" && node) {
        const message = this.messageFromNode(node);
        if (message) this.deleteMessage(message);
      } else if ((action === "retry-send" || action === "discard-send") && pendingNode) {
        const map = this.pendingFor(this.store.openChatId);
        const item = map.get(pendingNode.dataset.key);
        if (!item) return;
        if (action === "retry-send") this.deliver(item);
        else {
          map.delete(item.key);
          this.renderMessages();
        }
      }
    });

    this.el.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendMessage();
    });
    this.el.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendMessage();
      } else if (event.key === "ArrowUp" && !this.el.input.value) {
        // Like Slack: arrow up in an empty box edits your last message.
        const timeline = this.store.timelines.get(this.store.openChatId);
        const last = timeline && timeline.sorted().reverse().find((m) => this.isMine(m) && !m.deleted);
        if (last) {
          event.preventDefault();
          this.editMessage(last);
        }
      }
    });
    this.el.input.addEventListener("input", () => {
      this.autosize();
      this.sendTyping();
    });
    this.el.scroller.addEventListener("scroll", () => {
      if (this.el.scroller.scrollTop < 120) this.loadOlder();
    }, { passive: true });
  }

  toggleMembers() {
    const panel = this.el.members;
    panel.hidden = !panel.hidden;
    byTestId("members-toggle").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden && this.store.openChatId) this.loadMembers(this.store.openChatId);
  }

  async leaveChat(chat) {
    const ok = await confirmDialog({ title: `Leave ${this.store.chatTitle(chat)}?`, text: "You will stop receiving its messages.", ok: "Leave" });
    if (!ok) return;
    try {
      await this.api.leaveChat(chat.id, this.store.me.id);
      this.store.removeChat(chat.id);
      this.leaveView(chat.id);
      this.renderChatList();
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

  // --- rendering ---------------------------------------------------------------------

  renderAll() {
    this.renderIdentity();
    this.renderChatList();
    this.renderHeader();
    this.renderMessages();
    this.renderMembers();
    this.renderTyping();
  }

  renderChatList() {
    renderChatList(this.el.chatList, this.el.chatListEmpty, this.store);
    const unread = [...this.store.chats.values()].reduce((sum, chat) => sum + (chat.unread_count || 0), 0);
    document.title = unread ? `(${unread}) Fechatter` : "Fechatter";
  }

  renderHeader() {
    const chat = this.currentChat();
    if (!chat) return;
    const preview = Boolean(this.preview);
    this.el.title.textContent = (chat.type === "public_channel" ? "# " : "") + this.store.chatTitle(chat);
    this.el.title.dataset.chatId = chat.id;
    this.el.description.textContent = chat.description || (chat.type === "direct" ? "Direct message" : `${chat.memberIds.length} member${chat.memberIds.length === 1 ? "" : "s"}`);
    byTestId("copy-channel-link").hidden = chat.type !== "public_channel";
    byTestId("leave-chat").hidden = preview || chat.type === "direct";
    byTestId("add-members").hidden = preview || chat.type === "direct";
    byTestId("join-banner").hidden = !preview;
    this.el.composer.hidden = preview;
    this.el.input.placeholder = `Message ${chat.type === "public_channel" ? "#" : ""}${this.store.chatTitle(chat)}`;
  }

  renderMessages({ toBottom = false } = {}) {
    const chatId = this.store.openChatId;
    if (!chatId) return;
    const scroller = this.el.scroller;
    const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    const timeline = this.store.timelines.get(chatId);
    const messages = timeline ? timeline.sorted() : [];
    const unsent = [...(this.pending.get(chatId) || new Map()).values()];
    renderMessages(this.el.messages, this.store, [...messages, ...unsent], { editingId: this.editingId });
    this.renderHistoryStatus();
    if (toBottom || nearBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  renderHistoryStatus() {
    const timeline = this.store.timelines.get(this.store.openChatId);
    let text = "";
    if (!timeline || !timeline.loaded) text = "Loading messages…";
    else if (timeline.loadingOlder) text = "Loading older messages…";
    else if (!timeline.hasMore) text = timeline.bySeq.size ? "This is the very beginning of the chat." : "No messages yet. Say hello!";
    this.el.history.textContent = text;
  }

  renderMembers() {
    const chatId = this.store.openChatId;
    const chat = this.currentChat();
    if (!chat) return;
    const members = this.store.members.get(chatId) || chat.memberIds.map((id) => ({ user_id: id }));
    renderMembers(byTestId("online-members"), byTestId("offline-members"), byTestId("online-count"), this.store, members);
    byTestId("members-toggle").textContent = `Members ${members.length}`;
  }

  renderPresence() {
    for (const [userId, status] of this.store.presence) updatePresenceDots(document, userId, status);
    if (this.store.openChatId) this.renderMembers();
  }

  renderTyping() {
    const chatId = this.store.openChatId;
    const names = chatId ? this.store.typers(chatId).map((id) => this.store.userName(id).split(" ")[0]) : [];
    this.el.typing.textContent = typingText(names);
    this.el.typing.dataset.users = chatId ? this.store.typers(chatId).join(" ") : "";
    clearTimeout(this.typingTimer);
    if (names.length) this.typingTimer = setTimeout(() => this.renderTyping(), 1000);
  }

  renderConnection(state) {
    const badge = this.el.connection;
    badge.dataset.state = state;
    badge.textContent = CONNECTION_TEXT[state] || state;
  }
}

new App().start();
