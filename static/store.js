// Client state: users, chats, per-chat message timelines, presence and typing; no DOM here.

const TYPING_SHOWN_MS = 5000;

// Chat members arrive as user ids or as {user_id, role} objects; we keep ids.
function memberIds(members) {
  if (!Array.isArray(members)) return [];
  return members.map((m) => (typeof m === "string" ? m : m.user_id || m.id)).filter(Boolean);
}

function activity(chat) {
  return (chat.last_message && chat.last_message.created_at) || chat.updated_at || chat.created_at || "";
}

// The messages of one chat we have loaded: a contiguous seq range, deduplicated by id and by seq.
export class Timeline {
  constructor() {
    this.byId = new Map();
    this.bySeq = new Map();
    this.hasMore = true;
    this.loaded = false;
    this.loadingOlder = false;
  }

  get minSeq() {
    let min = Infinity;
    for (const seq of this.bySeq.keys()) min = Math.min(min, seq);
    return min === Infinity ? null : min;
  }

  get maxSeq() {
    let max = 0;
    for (const seq of this.bySeq.keys()) max = Math.max(max, seq);
    return max;
  }

  // Adds or updates one message; returns true when something visible changed.
  upsert(message) {
    const existing = this.byId.get(message.id) || this.bySeq.get(message.seq);
    if (existing) {
      if (existing.id !== message.id) return false; // a seq is never reused; ignore the impostor
      if (existing.deleted && !message.deleted) return false; // deletion is final
      if (!message.deleted && existing.edited_at && (!message.edited_at || message.edited_at < existing.edited_at)) {
        return false; // an older version arriving late
      }
      if (existing.content === message.content && existing.deleted === message.deleted && existing.edited_at === message.edited_at) {
        return false;
      }
    }
    const merged = { ...existing, ...message };
    this.byId.set(merged.id, merged);
    this.bySeq.set(merged.seq, merged);
    return true;
  }

  markDeleted({ id, seq }) {
    const existing = this.byId.get(id) || this.bySeq.get(seq);
    if (!existing || existing.deleted) return false;
    return this.upsert({ ...existing, deleted: true, content: "" });
  }

  sorted() {
    return [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
  }
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
    this.members = new Map(); // chatId -> [{user_id, role, joined_at}]
    this.openChatId = null;
  }

  setUsers(list) {
    for (const user of list) this.users.set(user.id, { ...this.users.get(user.id), ...user });
  }

  userName(userId) {
    if (this.me && userId === this.me.id) return this.me.fullname || "You";
    const user = this.users.get(userId);
    return user ? user.fullname || user.email : "Unknown user";
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
    if (raw.members !== undefined) chat.memberIds = memberIds(raw.members);
    else chat.memberIds = existing.memberIds || [];
    chat.unread_count = Number(raw.unread_count ?? existing.unread_count ?? 0);
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
  }

  sortedChats() {
    return [...this.chats.values()].sort((a, b) => {
      const order = activity(b).localeCompare(activity(a));
      return order || this.chatTitle(a).localeCompare(this.chatTitle(b));
    });
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

  timeline(chatId) {
    let timeline = this.timelines.get(chatId);
    if (!timeline) {
      timeline = new Timeline();
      this.timelines.set(chatId, timeline);
    }
    return timeline;
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
    if (!timeline || !timeline.loaded) return { changed: false, fresh, gap: false };
    const maxBefore = timeline.maxSeq;
    const gap = maxBefore > 0 && message.seq > maxBefore + 1 && !timeline.bySeq.has(message.seq);
    const changed = timeline.upsert(message);
    return { changed, fresh, gap };
  }

  applyDeleted(data) {
    const chat = this.chats.get(data.chat_id);
    if (chat && chat.last_message && chat.last_message.id === data.id) {
      chat.last_message = { ...chat.last_message, deleted: true, content: "" };
    }
    const timeline = this.timelines.get(data.chat_id);
    return timeline ? timeline.markDeleted(data) : false;
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
