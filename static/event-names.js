// The notify role's event names (contract section 8), written here once; every other module imports them.

export const EVENTS = Object.freeze({
  MESSAGE_CREATED: "message.created",
  MESSAGE_UPDATED: "message.updated",
  MESSAGE_DELETED: "message.deleted",
  CHAT_CREATED: "chat.created",
  CHAT_UPDATED: "chat.updated",
  CHAT_DELETED: "chat.deleted",
  CHAT_SETTINGS: "chat.settings",
  MEMBER_JOINED: "member.joined",
  MEMBER_LEFT: "member.left",
  MEMBER_UPDATED: "member.updated",
  REACTION_ADDED: "reaction.added",
  REACTION_REMOVED: "reaction.removed",
  MESSAGE_PINNED: "message.pinned",
  MESSAGE_UNPINNED: "message.unpinned",
  THREAD_UPDATED: "thread.updated",
  TYPING: "typing",
  READ: "read",
  PRESENCE: "presence",
  USER_UPDATED: "user.updated",
  RESYNC: "resync",
});

// Every name the stream listens for.
export const EVENT_NAMES = Object.freeze(Object.values(EVENTS));

// An id-only frame is invisible to scripts; a server may name it this so we can still resume from its id.
export const CURSOR_FRAME = "cursor";
