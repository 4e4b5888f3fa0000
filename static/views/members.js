// The members panel of the open chat: online and offline people with their presence dots.

import { avatar, byTestId, h, presenceDot } from "../ui.js";

function memberRow(store, userId, role) {
  const status = store.status(userId);
  const you = store.me && userId === store.me.id ? " (you)" : "";
  return h("li", { class: "member", dataset: { testid: "member", userId, status } },
    avatar(userId, store.userName(userId), store.avatarUrl(userId), { profile: true }),
    presenceDot(userId, status),
    h("button", { type: "button", class: "member-name link-like", dataset: { action: "profile", userId }, text: store.userName(userId) + you }),
    role && role !== "member" ? h("span", { class: "role", text: role }) : null);
}

export class MembersPanel {
  constructor(store) {
    this.store = store;
    this.panel = byTestId("members-panel");
    this.toggleButton = byTestId("members-toggle");
    this.online = byTestId("online-members");
    this.offline = byTestId("offline-members");
    this.count = byTestId("online-count");
  }

  get shown() {
    return !this.panel.hidden;
  }

  // Returns whether the panel is now shown.
  toggle() {
    this.panel.hidden = !this.panel.hidden;
    this.toggleButton.setAttribute("aria-expanded", String(this.shown));
    return this.shown;
  }

  // Until the member list is loaded, the chat's member ids stand in for it.
  render() {
    const { store } = this;
    const chat = store.currentChat();
    if (!chat) return;
    const members = store.members.get(store.openChatId) || chat.memberIds.map((id) => ({ user_id: id }));
    const online = [];
    const offline = [];
    const sorted = [...members].sort((a, b) => store.userName(a.user_id).localeCompare(store.userName(b.user_id)));
    for (const member of sorted) {
      // A direct chat has no roles to show.
      const role = chat.type === "direct" ? null : member.role;
      (store.status(member.user_id) === "online" ? online : offline).push(memberRow(store, member.user_id, role));
    }
    this.online.replaceChildren(...online);
    this.offline.replaceChildren(...offline);
    this.count.textContent = String(online.length);
    this.toggleButton.textContent = `Members ${store.memberCount(chat)}`;
  }
}
