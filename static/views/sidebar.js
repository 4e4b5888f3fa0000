// The sidebar: who we are, the connection badge, the notification prompt, and the chat list with its
// unread and mention badges (muted chats quiet).

import { isSystem, systemText } from "../system-lines.js";
import { avatar, byTestId, h, icon, presenceDot, renderKeyed } from "../ui.js";

// What the badge says for each state the event stream reports.
const CONNECTION_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", offline: "offline" };
const TYPE_ICON = { public_channel: "hash", private_channel: "lock", group: "people" };

function chatPreview(store, chat) {
  const last = chat.last_message;
  if (!last) return chat.description || "";
  if (last.deleted) return "message deleted";
  if (isSystem(last)) return systemText(store, last);
  const who = store.me && last.sender_id === store.me.id ? "You" : store.userName(last.sender_id).split(" ")[0];
  return `${who}: ${last.content}`;
}

function countText(n) {
  return n > 99 ? "99+" : String(n);
}

// What a chat's row shows, as plain values: its render version, and all chatItem draws from.
function chatRow(store, chat) {
  const peer = store.directPeer(chat);
  return {
    id: chat.id,
    type: chat.type,
    peer,
    status: chat.type === "direct" ? store.status(peer) : null,
    avatar: chat.type === "direct" ? store.avatarUrl(peer) : null,
    title: store.chatTitle(chat),
    preview: chatPreview(store, chat),
    unread: chat.unread_count,
    mentions: chat.mention_count || 0,
    muted: Boolean(chat.muted),
    archived: Boolean(chat.archived),
    notify: store.notifyLevel(chat),
    selected: chat.id === store.openChatId,
  };
}

// Red says someone asked for you: a mention badge ("@"), or, as in Slack, the count of a direct
// chat's unread messages. Other unread counts are quiet, and a muted chat shows mentions only.
function chatBadge(row) {
  const unread = row.unread > 0 && !row.muted;
  if (unread && row.type === "direct") {
    return h("span", { class: "badge direct-badge", dataset: { testid: "unread-badge" }, "aria-label": `${row.unread} unread`, text: countText(row.unread) });
  }
  if (row.mentions > 0) {
    const label = `${row.mentions} mention${row.mentions === 1 ? "" : "s"}`;
    return h("span", { class: "badge mention-badge", dataset: { testid: "mention-badge" }, title: label, "aria-label": label, text: countText(row.mentions) });
  }
  if (unread) {
    return h("span", { class: "badge", dataset: { testid: "unread-badge" }, "aria-label": `${row.unread} unread`, text: countText(row.unread) });
  }
  return null;
}

function chatItem(row) {
  // A direct chat shows the other person's picture with their presence on its corner, as in Slack.
  const marker = row.type === "direct"
    ? h("span", { class: "dm-marker" }, avatar(row.peer, row.title, row.avatar), presenceDot(row.peer, row.status))
    : h("span", { class: "chat-icon", title: row.type.replace("_", " ") }, icon(TYPE_ICON[row.type] || "hash"));
  const unread = (row.unread > 0 && !row.muted) || row.mentions > 0;
  return h(
    "li",
    {},
    h(
      "a",
      {
        href: `#/chat/${encodeURIComponent(row.id)}`,
        class: `chat-item${unread ? " unread" : ""}${row.muted ? " muted" : ""}${row.archived ? " archived" : ""}${row.selected ? " selected" : ""}`,
        "aria-current": row.selected ? "page" : null,
        dataset: {
          testid: "chat-item", chatId: row.id, chatType: row.type, unread: String(row.unread),
          mentions: String(row.mentions), muted: String(row.muted), notify: row.notify, archived: String(row.archived),
        },
      },
      marker,
      h("span", { class: "chat-item-text" },
        h("span", { class: "chat-item-title", dataset: { testid: "chat-item-title" }, text: row.title }),
        h("span", { class: "chat-item-preview", text: row.preview })),
      row.muted ? h("span", { class: "muted-icon", dataset: { testid: "muted-icon" }, title: "Muted", "aria-label": "muted" }, icon("bell-off")) : null,
      chatBadge(row),
    ),
  );
}

export class Sidebar {
  constructor(store) {
    this.store = store;
    this.list = byTestId("chat-list");
    // Two sections, as in Slack: channels, then direct messages and groups.
    this.channels = byTestId("channel-list");
    this.directs = byTestId("direct-list");
    this.empty = byTestId("chat-list-empty");
    this.connection = byTestId("connection-state");
    this.notifyPrompt = byTestId("notify-prompt");
    byTestId("enable-notifications").prepend(icon("bell"));
  }

  renderIdentity() {
    const { me, workspace } = this.store;
    byTestId("current-user").textContent = me ? me.fullname : "";
    byTestId("me-avatar").replaceChildren(...(me ? [avatar(me.id, me.fullname, me.avatar_url)] : []));
    byTestId("workspace-name").textContent = workspace ? workspace.name : "";
    const owner = Boolean(me && workspace && (workspace.owner_id === me.id || workspace.invite_code));
    byTestId("invite-people").hidden = !owner;
  }

  // Keyed: a row is rebuilt only when what it shows changed, so a click on a row survives the
  // re-renders every event brings. Keyboard focus stays on the chat it was on when its row is rebuilt.
  render() {
    const { list, store } = this;
    const focusedId = document.activeElement && list.contains(document.activeElement) ? document.activeElement.dataset.chatId : null;
    const rows = store.sortedChats().map((chat) => chatRow(store, chat));
    const keyed = (part) => part.map((row) => ({ key: row.id, version: JSON.stringify(row), build: () => chatItem(row) }));
    const channel = (row) => row.type === "public_channel" || row.type === "private_channel";
    // Archived channels go last, whatever their activity (read-only, kept for reference).
    const channels = rows.filter(channel);
    renderKeyed(this.channels, keyed([...channels.filter((row) => !row.archived), ...channels.filter((row) => row.archived)]));
    renderKeyed(this.directs, keyed(rows.filter((row) => !channel(row))));
    this.empty.hidden = rows.length > 0;
    if (focusedId && !list.contains(document.activeElement)) {
      const again = list.querySelector(`[data-chat-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
    this.renderTitle();
  }

  // "(2) Fechatter" counts what asks for us (mentions, direct messages); "* Fechatter" says there is
  // something unread.
  renderTitle() {
    const forMe = this.store.forMeTotal();
    document.title = forMe ? `(${forMe}) Fechatter` : this.store.unreadTotal() ? "* Fechatter" : "Fechatter";
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
    this.channels.replaceChildren();
    this.directs.replaceChildren();
  }
}
