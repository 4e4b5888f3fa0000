// Client state, all of it: session identity, users, chats, timelines, unsent messages, read marks, mentions, presence, typing; no DOM here.

import { Timeline } from "./timeline.js";

const TYPING_SHOWN_MS = 5000;

// Chat members arrive as user ids or as {user_id, role} objects; we keep ids.
function memberIds(members) {
  if (!Array.isArray(members)) return [];
  return members.map((m) => (typeof m === "string" ? m : m.user_id || m.id)).filter(Boolean);
}

// @channel, @here and @everyone mention every member (contract section 11).
const MENTION_ALL = Object.freeze(["channel", "here", "everyone"]);
// A chat's notification level when the server does not say (its default).
const DEFAULT_LEVEL = "all";

// One emoji's reactions after a member added or took theirs away; as many times as it comes, the same result.
function toggled(reactions, emoji, userId, added, myId) {
  const list = reactions.map((r) => ({ ...r, user_ids: [...(r.user_ids || [])] }));
  const at = list.findIndex((r) => r.emoji === emoji);
  const item = at >= 0 ? list[at] : null;
  const isMe = Boolean(myId && userId === myId);
  const listed = Boolean(item && (item.user_ids.includes(userId) || (isMe && item.me)));
  if (added) {
    if (listed) return reactions;
    if (item) {
      item.count += 1;
      if (item.user_ids.length < 20) item.user_ids.push(userId);
      item.me = item.me || isMe;
    } else {
      list.push({ emoji, count: 1, me: isMe, user_ids: [userId] });
    }
    return list;
  }
  // A reactor past the first 20 shown is not listed, but counted.
  if (!item || (!listed && item.count <= item.user_ids.length)) return reactions;
  item.count -= 1;
  item.user_ids = item.user_ids.filter((id) => id !== userId);
  if (isMe) item.me = false;
  if (item.count <= 0) list.splice(at, 1);
  return list;
}

function activity(chat) {
  return (chat.last_message && chat.last_message.created_at) || chat.updated_at || chat.created_at || "";
}

export class Store {
  constructor() {
    this.reset();
  }

  reset() {
    this.me = null;
    this.workspace = null;
    this.users = new Map();
    this.chats = new Map();
    this.timelines = new Map();
    this.presence = new Map();
    this.typing = new Map();
    this.members = new Map(); // chatId -> every member [{user_id, role, joined_at}], once loaded
    this.openChatId = null;
    this.preview = null; // a public channel opened by link that we are not a member of
    this.editingId = null; // the message being edited in place
    this.threads = new Map(); // root message id -> {chatId, rootId, root, timeline, loaded, pending}
    this.openThreadId = null; // the root whose thread the side panel shows
    this.pins = new Map(); // chatId -> {ids: Set of pinned message ids, list: [{message, user_id, pinned_at}] | null}
    this.pending = new Map(); // chatId -> Map(key -> unsent message)
    this.readSent = new Map(); // chatId -> highest seq we told the server we read
    this.typingSentAt = new Map(); // chatId -> time of our last POST typing
    // The "New messages" line of the open chat: {chatId, afterSeq, count, seq, needsOlder, scroll}; seq
    // is the first unread message once found, and stays there until the chat is closed.
    this.unreadLine = null;
    this.connection = "offline";
  }

  setUsers(list) {
    for (const user of list) this.users.set(user.id, { ...this.users.get(user.id), ...user });
  }

  // A user.updated event (or our own PATCH): the user's public payload, ours too when it is us.
  applyUser(user) {
    if (!user || !user.id) return;
    this.users.set(user.id, { ...this.users.get(user.id), ...user });
    if (this.me && this.me.id === user.id) this.me = { ...this.me, ...user };
  }

  // The user's avatar_url ("" until they are loaded); ui.avatarSrc adds the size.
  avatarUrl(userId) {
    const user = this.user(userId);
    return (user && user.avatar_url) || "";
  }

  userName(userId) {
    if (this.me && userId === this.me.id) return this.me.fullname || "You";
    const user = this.users.get(userId);
    return user ? user.fullname || user.email : "Unknown user";
  }

  isMine(message) {
    return Boolean(this.me && message.sender_id === this.me.id);
  }

  // --- usernames and mentions ----------------------------------------------------

  user(userId) {
    if (this.me && userId === this.me.id) return { ...this.users.get(userId), ...this.me };
    return this.users.get(userId) || null;
  }

  // "" for a user the server's start-up migration has not given one yet: nobody can mention them.
  username(userId) {
    const user = this.user(userId);
    return (user && user.username) || "";
  }

  userByUsername(name) {
    const needle = String(name).toLowerCase();
    for (const id of [...this.users.keys(), ...(this.me ? [this.me.id] : [])]) {
      if (this.username(id).toLowerCase() === needle) return this.user(id);
    }
    return null;
  }

  // Does a message the server sent mention us (its `mentions` and `mentions_all`, which every message
  // payload carries)?
  mentionsMe(message) {
    if (!this.me || !message || message.deleted || this.isMine(message)) return false;
    return message.mentions_all === true || (message.mentions || []).includes(this.me.id);
  }

  // For the message text: which @names of a message are mentions (see ui.linkify). Our unsent
  // messages have no `mentions` yet: their @names of members stand in.
  mentionLookup(message) {
    const ids = Array.isArray(message.mentions) ? new Set(message.mentions) : null;
    const chat = this.chats.get(message.chat_id);
    const members = chat ? new Set(chat.memberIds) : new Set();
    return (name) => {
      if (MENTION_ALL.includes(name)) {
        const all = message.mentions_all === undefined ? chat && chat.type !== "direct" : message.mentions_all;
        return all ? { me: !this.isMine(message), label: "Everyone in this chat" } : null;
      }
      const user = this.userByUsername(name);
      if (!user) return null;
      const mentioned = ids ? ids.has(user.id) : members.has(user.id) || !members.size;
      if (!mentioned) return null;
      return { me: Boolean(this.me && user.id === this.me.id), userId: user.id, label: user.fullname || user.email || "" };
    };
  }

  // The people the composer offers after "@": the chat's members but us, then @channel/@here.
  mentionCandidates(chatId, query) {
    const chat = this.chats.get(chatId);
    if (!chat) return [];
    const needle = query.toLowerCase();
    const members = this.members.get(chatId);
    const ids = members ? members.map((m) => m.user_id) : chat.memberIds;
    const people = ids
      .filter((id) => !this.me || id !== this.me.id)
      .map((id) => ({ id, username: this.username(id), fullname: this.userName(id) }))
      .filter((p) => p.username)
      .map((p) => {
        const rank = p.username.startsWith(needle) ? 0 : p.fullname.toLowerCase().split(/\s+/).some((w) => w.startsWith(needle)) ? 1 : -1;
        return { ...p, rank };
      })
      .filter((p) => p.rank >= 0)
      .sort((a, b) => a.rank - b.rank || a.fullname.localeCompare(b.fullname));
    const everyone = chat.type === "direct" ? [] : [
      { id: null, username: "channel", fullname: "Notify everyone in this chat", special: true },
      { id: null, username: "here", fullname: "Notify everyone online", special: true },
    ].filter((p) => p.username.startsWith(needle));
    return [...people, ...everyone];
  }

  // --- notification settings ------------------------------------------------------

  notifyLevel(chat) {
    return chat.notify || DEFAULT_LEVEL;
  }

  // Should this message of another person ring (the chat's level, never when muted)?
  wantsNotification(chat, message) {
    if (!chat || chat.muted || this.isMine(message) || message.deleted || message.kind === "system") return false;
    const level = this.notifyLevel(chat);
    return level === "all" || (level === "mentions" && this.mentionsMe(message));
  }

  // --- chats ----------------------------------------------------------------

  setChats(list) {
    const seen = new Set();
    for (const raw of list) {
      this.upsertChat(raw);
      seen.add(raw.id);
    }
    for (const id of [...this.chats.keys()]) if (!seen.has(id)) this.removeChat(id);
  }

  upsertChat(raw) {
    const existing = this.chats.get(raw.id) || {};
    const chat = { ...existing, ...raw };
    // We are in every chat we hold, so an empty list names nobody: the chat list gives a channel's
    // members as [] (its member_count counts them), they come with the members pages.
    chat.memberIds = raw.members && raw.members.length ? memberIds(raw.members) : existing.memberIds || [];
    chat.member_count = Number(raw.member_count ?? existing.member_count ?? chat.memberIds.length);
    chat.unread_count = Number(raw.unread_count ?? existing.unread_count ?? 0);
    chat.mention_count = Number(raw.mention_count ?? existing.mention_count ?? 0);
    chat.muted = Boolean(raw.muted ?? existing.muted ?? false);
    const lastSeq = (chat.last_message && chat.last_message.seq) || 0;
    chat.maxSeq = Math.max(existing.maxSeq || 0, lastSeq);
    this.chats.set(chat.id, chat);
    return chat;
  }

  removeChat(chatId) {
    this.chats.delete(chatId);
    this.timelines.delete(chatId);
    this.typing.delete(chatId);
    this.members.delete(chatId);
    this.pins.delete(chatId);
    for (const [rootId, thread] of this.threads) if (thread.chatId === chatId) this.threads.delete(rootId);
    if (this.openThreadId && !this.threads.has(this.openThreadId)) this.openThreadId = null;
  }

  // A chat we can see but are not in, shown read-only until we join. Its member list is not kept
  // current by member events (they reach members only), so it goes with the preview.
  setPreview(chat) {
    if (this.preview) this.members.delete(this.preview.id);
    this.preview = chat ? { ...chat, memberIds: memberIds(chat.members || []), unread_count: 0 } : null;
  }

  isPreviewing(chatId) {
    return Boolean(this.preview && this.preview.id === chatId);
  }

  // The open chat: one we are in, or the previewed channel.
  currentChat() {
    const id = this.openChatId;
    return (id && this.chats.get(id)) || (this.isPreviewing(id) ? this.preview : null);
  }

  // Every member of a chat (all the pages), so also its count.
  setMembers(chatId, list) {
    this.members.set(chatId, list);
    const chat = this.chats.get(chatId) || (this.isPreviewing(chatId) ? this.preview : null);
    if (chat) {
      chat.memberIds = list.map((m) => m.user_id);
      chat.member_count = list.length;
    }
  }

  addMember(chatId, userId, role = "member") {
    const chat = this.chats.get(chatId);
    if (!chat || chat.memberIds.includes(userId)) return;
    chat.memberIds.push(userId);
    chat.member_count = (chat.member_count || 0) + 1;
    const members = this.members.get(chatId);
    if (members) members.push({ user_id: userId, role });
  }

  removeMember(chatId, userId) {
    const chat = this.chats.get(chatId);
    if (chat) {
      chat.memberIds = chat.memberIds.filter((id) => id !== userId);
      chat.member_count = Math.max(0, (chat.member_count || 1) - 1);
    }
    const members = this.members.get(chatId);
    if (members) this.members.set(chatId, members.filter((m) => m.user_id !== userId));
  }

  sortedChats() {
    return [...this.chats.values()].sort((a, b) => {
      const order = activity(b).localeCompare(activity(a));
      return order || this.chatTitle(a).localeCompare(this.chatTitle(b));
    });
  }

  unreadTotal() {
    return [...this.chats.values()].reduce((sum, chat) => sum + (chat.muted ? 0 : chat.unread_count || 0), 0);
  }

  // What the tab title counts: what asks for us, as in Slack: mentions (a muted chat's too: a mention
  // is for you) and the unread messages of direct chats, mentions or not.
  forMeTotal() {
    const forMe = (chat) => (chat.type === "direct" && !chat.muted ? chat.unread_count : chat.mention_count) || 0;
    return [...this.chats.values()].reduce((sum, chat) => sum + forMe(chat), 0);
  }

  // We read a chat up to seq (in this tab, in another, or by posting in it): what we told the
  // server and the chat's last_read_seq move forward. all: nothing after seq is unread either.
  readUpTo(chat, seq, { all = true } = {}) {
    this.readSent.set(chat.id, Math.max(seq, this.readSent.get(chat.id) || 0));
    chat.last_read_seq = Math.max(Number(chat.last_read_seq) || 0, seq);
    if (!all) return;
    chat.unread_count = 0;
    chat.mention_count = 0;
  }

  // How many people are in a chat (ours, a preview, a browsed channel): the server's count, kept
  // by member events; a channel's member ids are there only once its members are loaded.
  memberCount(chat) {
    return Number(chat.member_count ?? (chat.memberIds || chat.members || []).length);
  }

  // Our role in a chat: from its loaded members, else the owner_id the chat carries.
  myRole(chat) {
    if (!this.me || !chat) return null;
    const members = this.members.get(chat.id);
    const mine = members && members.find((m) => m.user_id === this.me.id);
    if (mine && mine.role) return mine.role;
    return chat.owner_id === this.me.id ? "owner" : "member";
  }

  managesChat(chat) {
    const role = this.myRole(chat);
    return role === "owner" || role === "admin";
  }

  // A member's role changed (member.updated); a transfer also names the new and the previous owner.
  applyRole({ chat_id: chatId, user_id: userId, role, owner_id: ownerId, previous_owner_id: previousId }) {
    const chat = this.chats.get(chatId);
    if (chat && ownerId) chat.owner_id = ownerId;
    const members = this.members.get(chatId);
    if (!members) return;
    for (const member of members) {
      if (member.user_id === userId) member.role = role;
      else if (previousId && member.user_id === previousId) member.role = "admin";
    }
  }

  otherMemberIds(chat) {
    return chat.memberIds.filter((id) => !this.me || id !== this.me.id);
  }

  // The user a direct chat is with.
  directPeer(chat) {
    if (chat.type !== "direct") return null;
    return this.otherMemberIds(chat)[0] || (this.me && this.me.id);
  }

  chatTitle(chat) {
    if (chat.type === "direct") return this.userName(this.directPeer(chat));
    if (chat.name) return chat.name;
    const names = this.otherMemberIds(chat).map((id) => this.userName(id).split(" ")[0]);
    return names.length ? names.join(", ") : "Group";
  }

  // --- messages ---------------------------------------------------------------

  openTimeline() {
    return this.openChatId ? this.timelines.get(this.openChatId) : undefined;
  }

  // The latest page replaces what we held; messages newer than the page that we already had stay.
  replaceTimeline(chatId, messages, hasMore) {
    const timeline = new Timeline();
    for (const message of messages) timeline.upsert(message);
    const old = this.timelines.get(chatId);
    if (old && old.loaded) for (const message of old.sorted()) if (message.seq > timeline.maxSeq) timeline.upsert(message);
    timeline.hasMore = hasMore;
    timeline.loaded = true;
    this.timelines.set(chatId, timeline);
    for (const message of timeline.sorted()) this.applyMessage(message);
    return timeline;
  }

  // After a resync only the open chat's timeline is worth keeping; the rest, and every member
  // list, load again when opened.
  dropLoadedExceptOpen() {
    for (const chatId of [...this.timelines.keys()]) if (chatId !== this.openChatId) this.timelines.delete(chatId);
    this.members.clear();
  }

  // A new or changed message from the API or the stream. Returns
  // {changed, fresh, gap}: fresh = newer than anything we knew of in this chat;
  // gap = it skipped seqs our loaded timeline does not have.
  applyMessage(message) {
    const chat = this.chats.get(message.chat_id);
    let fresh = false;
    if (chat) {
      fresh = message.seq > chat.maxSeq;
      if (fresh) {
        chat.maxSeq = message.seq;
        chat.last_message = message;
        if (message.created_at && message.created_at > (chat.updated_at || "")) chat.updated_at = message.created_at;
      } else if (chat.last_message && chat.last_message.id === message.id) {
        chat.last_message = { ...chat.last_message, ...message };
      }
    }
    const timeline = this.timelines.get(message.chat_id);
    // A reply lives in its thread's panel, not in the timeline of roots (contract section 12).
    if (message.thread_root_id) {
      if (timeline && timeline.loaded) timeline.noteSeq(message.seq);
      const thread = this.threads.get(message.thread_root_id);
      const changed = Boolean(thread && thread.loaded && thread.timeline.upsert(message));
      return { changed, fresh, gap: false, reply: true };
    }
    if (!timeline || !timeline.loaded) return { changed: false, fresh, gap: false };
    const maxBefore = timeline.maxSeq;
    const gap = maxBefore > 0 && message.seq > maxBefore + 1 && !timeline.bySeq.has(message.seq);
    const changed = timeline.upsert(message);
    return { changed, fresh, gap };
  }

  applyDeleted(data) {
    if (this.editingId === data.id) this.editingId = null;
    const chat = this.chats.get(data.chat_id);
    if (chat && chat.last_message && chat.last_message.id === data.id) {
      chat.last_message = { ...chat.last_message, deleted: true, content: "" };
    }
    let changed = false;
    for (const thread of this.threads.values()) {
      if (thread.chatId !== data.chat_id) continue;
      if (thread.timeline.byId.has(data.id)) changed = thread.timeline.markDeleted(data) || changed;
      if (thread.root && thread.root.id === data.id) thread.root = { ...thread.root, deleted: true, content: "", content_html: "" };
    }
    const timeline = this.timelines.get(data.chat_id);
    return (timeline ? timeline.markDeleted(data) : false) || changed;
  }

  // --- threads, reactions, pins (contract section 12) --------------------------------------

  openThread() {
    return this.openThreadId ? this.threads.get(this.openThreadId) || null : null;
  }

  // The thread of a root, made empty (not loaded) the first time it is asked for.
  ensureThread(chatId, rootId, root = null) {
    let thread = this.threads.get(rootId);
    if (!thread) {
      thread = { chatId, rootId, root, timeline: new Timeline(), loaded: false, pending: new Map() };
      thread.timeline.hasMore = false;
      this.threads.set(rootId, thread);
    }
    if (root) thread.root = root;
    return thread;
  }

  // The root as it is shown: the chat timeline's copy (kept current by events), else the thread's own.
  threadRoot(thread) {
    const timeline = this.timelines.get(thread.chatId);
    return (timeline && timeline.byId.get(thread.rootId)) || thread.root;
  }

  // A message of a chat wherever it is loaded: its timeline, a thread's replies, a thread's root.
  findMessage(chatId, messageId) {
    const timeline = this.timelines.get(chatId);
    if (timeline && timeline.byId.has(messageId)) return timeline.byId.get(messageId);
    for (const thread of this.threads.values()) {
      if (thread.chatId !== chatId) continue;
      if (thread.timeline.byId.has(messageId)) return thread.timeline.byId.get(messageId);
      if (thread.root && thread.root.id === messageId) return thread.root;
    }
    return null;
  }

  // Changes every loaded copy of a message: change(message) gives the new fields. Whether any changed.
  patchMessage(chatId, messageId, change) {
    let changed = false;
    const timeline = this.timelines.get(chatId);
    const copies = timeline && timeline.byId.has(messageId) ? [timeline] : [];
    for (const thread of this.threads.values()) {
      if (thread.chatId !== chatId) continue;
      if (thread.timeline.byId.has(messageId)) copies.push(thread.timeline);
      if (thread.root && thread.root.id === messageId) {
        thread.root = { ...thread.root, ...change(thread.root) };
        changed = true;
      }
    }
    for (const holder of copies) changed = holder.upsert({ ...holder.byId.get(messageId), ...change(holder.byId.get(messageId)) }) || changed;
    return changed;
  }

  // reaction.added / reaction.removed (or our own click, before the server's answer); idempotent.
  applyReaction({ chat_id: chatId, message_id: messageId, emoji, user_id: userId }, added) {
    const myId = this.me ? this.me.id : null;
    return this.patchMessage(chatId, messageId, (message) => ({ reactions: toggled(message.reactions || [], emoji, userId, added, myId) }));
  }

  // An updated message from an event: its `me` flags are the editor's, ours come from what we knew.
  withKnownReactions(message) {
    const known = this.findMessage(message.chat_id, message.id);
    if (!Array.isArray(message.reactions) || !this.me) return message;
    const mine = new Set(((known && known.reactions) || []).filter((r) => r.me).map((r) => r.emoji));
    const reactions = message.reactions.map((r) => ({ ...r, me: mine.has(r.emoji) || (r.user_ids || []).includes(this.me.id) }));
    return { ...message, reactions };
  }

  applyPinned({ chat_id: chatId, message_id: messageId, user_id: userId }, pinned) {
    const pins = this.pins.get(chatId);
    if (pins) {
      if (pinned) pins.ids.add(messageId);
      else pins.ids.delete(messageId);
      if (pins.list) {
        pins.list = pins.list.filter((p) => p.message.id !== messageId);
        const message = pinned && this.findMessage(chatId, messageId);
        if (message) pins.list.unshift({ message: { ...message, pinned: true }, user_id: userId, pinned_at: new Date().toISOString() });
        else if (pinned) pins.list = null; // not loaded here: the view loads the list again
      }
    }
    return this.patchMessage(chatId, messageId, () => ({ pinned }));
  }

  setPins(chatId, list) {
    this.pins.set(chatId, { ids: new Set(list.map((p) => p.message.id)), list });
  }

  pinCount(chatId) {
    const pins = this.pins.get(chatId);
    return pins ? pins.ids.size : 0;
  }

  // thread.updated: a root's reply count and last reply time.
  applyThread({ chat_id: chatId, message_id: rootId, reply_count: count, last_reply_at: last }) {
    return this.patchMessage(chatId, rootId, () => ({ reply_count: Number(count) || 0, last_reply_at: last || null }));
  }

  // --- the "New messages" line ------------------------------------------------------

  // Opening a chat with unread messages: the line goes above the first of them.
  startUnreadLine(chatId, { scroll = true } = {}) {
    const chat = this.chats.get(chatId);
    this.unreadLine = null;
    if (!chat || !chat.unread_count) return;
    const afterSeq = Number.isInteger(chat.last_read_seq) ? chat.last_read_seq : null;
    this.unreadLine = { chatId, afterSeq, count: chat.unread_count, seq: null, needsOlder: false, scroll };
  }

  // The seq the line sits above, once the loaded messages reach back to it; null while they do
  // not (more to load: `needsOlder`), or when there is no line.
  unreadLineSeq(chatId) {
    const line = this.unreadLine;
    if (!line || line.chatId !== chatId) return null;
    if (line.seq !== null) return line.seq;
    const timeline = this.timelines.get(chatId);
    if (!timeline || !timeline.loaded) return null;
    // System lines (joined, renamed…) are never unread.
    const theirs = timeline.sorted().filter((m) => !this.isMine(m) && !m.deleted && m.kind !== "system");
    let first;
    if (line.afterSeq !== null) {
      first = theirs.find((m) => m.seq > line.afterSeq);
      line.needsOlder = timeline.hasMore && (timeline.minSeq || 0) > line.afterSeq + 1;
    } else {
      first = theirs.length >= line.count ? theirs[theirs.length - line.count] : theirs[0];
      line.needsOlder = timeline.hasMore && theirs.length < line.count;
    }
    if (line.needsOlder) return null;
    if (!first) {
      this.unreadLine = null;
      return null;
    }
    line.seq = first.seq;
    return line.seq;
  }

  // --- unsent messages ------------------------------------------------------------

  pendingFor(chatId) {
    let map = this.pending.get(chatId);
    if (!map) {
      map = new Map();
      this.pending.set(chatId, map);
    }
    return map;
  }

  unsent(chatId) {
    return [...(this.pending.get(chatId) || new Map()).values()];
  }

  // Our own message came over the stream before the POST answered: drop its placeholder.
  adoptPending(message) {
    const map = message.thread_root_id ? this.threads.get(message.thread_root_id)?.pending : this.pending.get(message.chat_id);
    if (!map) return;
    for (const [key, item] of map) {
      if (item.content === message.content && item.pending === "sending") {
        map.delete(key);
        item.adoptedBy = message.id;
        return;
      }
    }
  }

  // --- presence and typing ------------------------------------------------------

  setOnline(users, { replace = false } = {}) {
    if (replace) {
      for (const [id, status] of this.presence) if (status === "online") this.presence.set(id, "offline");
    }
    for (const user of users) {
      this.presence.set(user.id, "online");
      if (user.fullname && !this.users.has(user.id)) this.users.set(user.id, { id: user.id, fullname: user.fullname });
    }
  }

  setPresence(userId, status) {
    this.presence.set(userId, status);
  }

  status(userId) {
    if (this.me && userId === this.me.id) return "online";
    return this.presence.get(userId) || "offline";
  }

  startTyping(chatId, userId) {
    let typers = this.typing.get(chatId);
    if (!typers) {
      typers = new Map();
      this.typing.set(chatId, typers);
    }
    typers.set(userId, Date.now() + TYPING_SHOWN_MS);
  }

  stopTyping(chatId, userId) {
    const typers = this.typing.get(chatId);
    if (typers) typers.delete(userId);
  }

  typers(chatId) {
    const typers = this.typing.get(chatId);
    if (!typers) return [];
    const now = Date.now();
    for (const [id, until] of typers) if (until <= now) typers.delete(id);
    return [...typers.keys()];
  }
}
