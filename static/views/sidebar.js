// The sidebar: who we are, the connection badge, the notification prompt, and the chat list with its
// unread and mention badges (muted chats quiet).

import { byTestId, h, icon, presenceDot } from "../ui.js";

// What the badge says for each state the event stream reports.
const CONNECTION_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", offline: "offline" };
const TYPE_ICON = { public_channel: "hash", private_channel: "lock", group: "people" };

function chatPreview(store, chat) {
  const last = chat.last_message;
  if (!last) return chat.description || "";
  if (last.deleted) return "message deleted";
  const who = store.me && last.sender_id === store.me.id ? "You" : store.userName(last.sender_id).split(" ")[0];
  return `${who}: ${last.content}`;
}

function countText(n) {
  return n > 99 ? "99+" : String(n);
}

// A mention badge (red, "@") says someone asked for you; it stands in for the plain unread count,
// which a muted chat does not show.
function chatBadge(chat) {
  const mentions = chat.mention_count || 0;
  if (mentions > 0) {
    const label = `${mentions} mention${mentions === 1 ? "" : "s"}`;
    return h("span", { class: "badge mention-badge", dataset: { testid: "mention-badge" }, title: label, "aria-label": label, text: countText(mentions) });
  }
  if (chat.unread_count > 0 && !chat.muted) {
    return h("span", { class: "badge", dataset: { testid: "unread-badge" }, "aria-label": `${chat.unread_count} unread`, text: countText(chat.unread_count) });
  }
  return null;
}

function chatItem(store, chat) {
  const peer = store.directPeer(chat);
  const marker = chat.type === "direct"
    ? presenceDot(peer, store.status(peer))
    : h("span", { class: "chat-icon", title: chat.type.replace("_", " ") }, icon(TYPE_ICON[chat.type] || "hash"));
  const badge = chatBadge(chat);
  const unread = chat.unread_count > 0 && !chat.muted;
  const selected = chat.id === store.openChatId;
  return h(
    "li",
    {},
    h(
      "a",
      {
        href: `#/chat/${encodeURIComponent(chat.id)}`,
        class: `chat-item${unread || chat.mention_count ? " unread" : ""}${chat.muted ? " muted" : ""}${selected ? " selected" : ""}`,
        "aria-current": selected ? "page" : null,
        dataset: {
          testid: "chat-item", chatId: chat.id, chatType: chat.type, unread: String(chat.unread_count),
          mentions: String(chat.mention_count || 0), muted: String(Boolean(chat.muted)), notify: store.notifyLevel(chat),
        },
      },
      marker,
      h("span", { class: "chat-item-text" },
        h("span", { class: "chat-item-title", dataset: { testid: "chat-item-title" }, text: store.chatTitle(chat) }),
        h("span", { class: "chat-item-preview", text: chatPreview(store, chat) })),
      chat.muted ? h("span", { class: "muted-icon", dataset: { testid: "muted-icon" }, title: "Muted", "aria-label": "muted" }, icon("bell-off")) : null,
      badge,
    ),
  );
}

export class Sidebar {
  constructor(store) {
    this.store = store;
    this.list = byTestId("chat-list");
    this.empty = byTestId("chat-list-empty");
    this.connection = byTestId("connection-state");
    this.notifyPrompt = byTestId("notify-prompt");
    byTestId("enable-notifications").prepend(icon("bell"));
  }

  renderIdentity() {
    const { me, workspace } = this.store;
    byTestId("current-user").textContent = me ? me.fullname : "";
    byTestId("workspace-name").textContent = workspace ? workspace.name : "";
    const owner = Boolean(me && workspace && (workspace.owner_id === me.id || workspace.invite_code));
    byTestId("invite-people").hidden = !owner;
  }

  // Keeps keyboard focus on the chat it was on, since the list is rebuilt.
  render() {
    const { list, store } = this;
    const focusedId = document.activeElement && list.contains(document.activeElement) ? document.activeElement.dataset.chatId : null;
    const items = store.sortedChats().map((chat) => chatItem(store, chat));
    list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
    if (focusedId) {
      const again = list.querySelector(`[data-chat-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
    this.renderTitle();
  }

  // "(2) Fechatter" counts mentions; "* Fechatter" says there is something unread.
  renderTitle() {
    const mentions = this.store.mentionTotal();
    document.title = mentions ? `(${mentions}) Fechatter` : this.store.unreadTotal() ? "* Fechatter" : "Fechatter";
  }

  // permission: the Notification API's ("default" | "granted" | "denied"), or null without one.
  renderNotifyPrompt(permission, dismissed) {
    this.notifyPrompt.hidden = permission !== "default" || dismissed;
  }

  renderConnection() {
    const state = this.store.connection;
    this.connection.dataset.state = state;
    this.connection.textContent = CONNECTION_TEXT[state] || state;
  }

  clear() {
    this.list.replaceChildren();
  }
}
