// The sidebar: who we are, the connection badge, and the chat list with its unread badges.

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

function chatItem(store, chat) {
  const peer = store.directPeer(chat);
  const marker = chat.type === "direct"
    ? presenceDot(peer, store.status(peer))
    : h("span", { class: "chat-icon", title: chat.type.replace("_", " ") }, icon(TYPE_ICON[chat.type] || "hash"));
  const unread = chat.unread_count > 0
    ? h("span", { class: "badge", dataset: { testid: "unread-badge" }, "aria-label": `${chat.unread_count} unread`, text: chat.unread_count > 99 ? "99+" : String(chat.unread_count) })
    : null;
  const selected = chat.id === store.openChatId;
  return h(
    "li",
    {},
    h(
      "a",
      {
        href: `#/chat/${encodeURIComponent(chat.id)}`,
        class: `chat-item${unread ? " unread" : ""}${selected ? " selected" : ""}`,
        "aria-current": selected ? "page" : null,
        dataset: { testid: "chat-item", chatId: chat.id, chatType: chat.type, unread: String(chat.unread_count) },
      },
      marker,
      h("span", { class: "chat-item-text" },
        h("span", { class: "chat-item-title", dataset: { testid: "chat-item-title" }, text: store.chatTitle(chat) }),
        h("span", { class: "chat-item-preview", text: chatPreview(store, chat) })),
      unread,
    ),
  );
}

export class Sidebar {
  constructor(store) {
    this.store = store;
    this.list = byTestId("chat-list");
    this.empty = byTestId("chat-list-empty");
    this.connection = byTestId("connection-state");
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
    const unread = store.unreadTotal();
    document.title = unread ? `(${unread}) Fechatter` : "Fechatter";
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
