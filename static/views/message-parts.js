// The parts of a message every list shares (the timeline, the thread panel, pins): rich body, hover actions,
// reaction chips, the thread summary and the pinned mark.

import { emojiName } from "../emoji.js";
import { richContent } from "../rich.js";
import { formatFull, formatTime, h, icon } from "../ui.js";

// "Alice", "Alice and Bob", "Alice, Bob and 3 others"; ourselves as "You".
function reactorNames(store, reaction) {
  const ids = reaction.user_ids || [];
  const names = ids.map((id) => (store.me && id === store.me.id ? "You" : store.userName(id)));
  if (reaction.me && !names.includes("You")) names.unshift("You");
  const others = Math.max(0, reaction.count - names.length);
  if (others) names.push(`${others} other${others === 1 ? "" : "s"}`);
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

export function reactionTitle(store, reaction) {
  return `${reactorNames(store, reaction)} reacted with :${emojiName(reaction.emoji).replace(/ /g, "_")}:`;
}

// The message body: the server's content_html (rebuilt through an allow-list), else the plain text.
export function messageContent(store, message) {
  const mine = store.isMine(message);
  const label = (userId, group) => (group ? "Everyone in this chat" : userId ? store.userName(userId) : "");
  const rich = Boolean(message.content_html);
  return h("div", { class: `message-content${rich ? " rich" : ""}`, dataset: { testid: "message-content" } },
    richContent(message, { meId: store.me ? store.me.id : null, mine, label, mentionLookup: store.mentionLookup(message) }));
}

// "(edited)": a button that shows the message's earlier versions.
export function editedMark(message) {
  if (!message.edited_at) return null;
  return h("button", {
    type: "button",
    class: "edited",
    dataset: { testid: "message-edited", action: "show-history" },
    title: `Edited ${formatFull(message.edited_at)}. Show the earlier versions`,
    "aria-haspopup": "dialog",
    text: "(edited)",
  });
}

function actionButton(action, label, iconName, testid = action) {
  return h("button", { type: "button", class: "icon", dataset: { action, testid }, "aria-label": label, title: label }, icon(iconName));
}

// The hover bar: react, reply in thread (not inside a thread), pin, copy link, and edit/delete where allowed.
export function actionBar(store, message, { inThread = false } = {}) {
  const chat = store.chats.get(message.chat_id);
  const mine = store.isMine(message);
  const archived = Boolean(chat && chat.archived);
  const canDelete = !archived && (mine || (chat && store.managesChat(chat)));
  const buttons = [];
  if (!archived) buttons.push(actionButton("react", "Add reaction", "smile", "react-button"));
  if (!inThread && !archived) buttons.push(actionButton("reply-thread", "Reply in thread", "thread", "reply-thread"));
  if (!archived) {
    buttons.push(message.pinned
      ? actionButton("unpin-message", "Unpin from channel", "pin", "unpin-message")
      : actionButton("pin-message", "Pin to channel", "pin", "pin-message"));
  }
  buttons.push(actionButton("copy-message-link", "Copy link", "link", "copy-message-link"));
  if (mine && !archived) buttons.push(actionButton("edit-message", "Edit message", "pencil", "edit-message"));
  if (canDelete) buttons.push(actionButton("delete-message", "Delete message", "trash", "delete-message"));
  return h("div", { class: "message-actions", role: "toolbar", "aria-label": "Message actions", dataset: { testid: "message-actions" } }, buttons);
}

// The chips under a message: emoji and count, ours highlighted; a click toggles ours. Then "add reaction".
export function reactionRow(store, message) {
  const reactions = (message.reactions || []).filter((r) => r.count > 0);
  if (!reactions.length) return null;
  const chat = store.chats.get(message.chat_id);
  const readOnly = Boolean(chat && chat.archived) || store.isPreviewing(message.chat_id);
  const chips = reactions.map((r) => h("button", {
    type: "button",
    class: `reaction${r.me ? " me" : ""}`,
    "aria-pressed": r.me ? "true" : "false",
    disabled: readOnly,
    title: reactionTitle(store, r),
    "aria-label": `${reactionTitle(store, r)}. ${r.me ? "Remove yours" : "Add yours"}`,
    dataset: { testid: "reaction", action: "toggle-reaction", emoji: r.emoji, count: String(r.count), me: r.me ? "true" : "false" },
  }, h("span", { class: "reaction-emoji", text: r.emoji }), h("span", { class: "reaction-count", dataset: { testid: "reaction-count" }, text: String(r.count) })));
  if (!readOnly) {
    chips.push(h("button", { type: "button", class: "reaction add-reaction", title: "Add reaction", "aria-label": "Add reaction", dataset: { action: "react", testid: "add-reaction" } }, icon("smile")));
  }
  return h("div", { class: "reactions", dataset: { testid: "reactions" } }, chips);
}

// "3 replies · last reply 3:04 PM" under a root; opens its thread.
export function threadSummary(store, message) {
  const count = message.reply_count || 0;
  if (!count || message.deleted) return null;
  const when = message.last_reply_at ? `last reply ${relativeTime(message.last_reply_at)}` : "";
  return h("button", {
    type: "button",
    class: "thread-summary",
    dataset: { testid: "thread-summary", action: "open-thread", count: String(count) },
    title: message.last_reply_at ? `Last reply ${formatFull(message.last_reply_at)}` : null,
  },
  h("span", { class: "thread-count", dataset: { testid: "reply-count" }, text: `${count} ${count === 1 ? "reply" : "replies"}` }),
  when ? h("span", { class: "thread-last", text: when }) : null,
  h("span", { class: "thread-view", "aria-hidden": "true", text: "View thread ›" }));
}

// "3:04 PM" today, "yesterday", or the date: short, as under a Slack root.
function relativeTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  if (sameDay) return `today at ${formatTime(iso)}`;
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (date.toDateString() === yesterday.toDateString()) return `yesterday at ${formatTime(iso)}`;
  return date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

// "Pinned by Bob" when the chat's pins are loaded, else "Pinned".
export function pinnedMark(store, message) {
  if (!message.pinned || message.deleted) return null;
  const pins = store.pins.get(message.chat_id);
  const pin = pins && pins.list && pins.list.find((p) => p.message.id === message.id);
  const by = pin ? ` by ${store.me && pin.user_id === store.me.id ? "you" : store.userName(pin.user_id)}` : "";
  return h("div", { class: "pinned-mark", dataset: { testid: "pinned-mark" } }, icon("pin"), h("span", { text: `Pinned${by}` }));
}

// What of these parts a node shows, for renderKeyed's version string.
export function partsVersion(store, message) {
  const reactions = (message.reactions || []).map((r) => `${r.emoji}${r.count}${r.me ? "m" : ""}${(r.user_ids || []).join(",")}`).join(";");
  const chat = store.chats.get(message.chat_id);
  const pins = store.pins.get(message.chat_id);
  const pin = message.pinned && pins && pins.list ? pins.list.find((p) => p.message.id === message.id) : null;
  return [message.content_html || "", reactions, Boolean(message.pinned), pin ? pin.user_id : "", message.reply_count || 0, message.last_reply_at || "",
    Boolean(chat && chat.archived), Boolean(chat && store.managesChat(chat)), store.me ? store.me.id : "", new Date().toDateString()].join("\u0001");
}
