// Channel settings for its owner and admins: rename, topic, description, default channel, members with their
// roles (remove, make admin, transfer ownership), archive and delete.

import { avatar, byTestId, confirmDialog, h, showFormError, toast } from "./ui.js";

const ROLE_LABEL = { owner: "Owner", admin: "Admin", member: "Member" };

export class ChannelAdmin {
  constructor({ store, api, views, sync, chats }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.sync = sync;
    this.chats = chats;
    this.root = document.getElementById("channel-dialog");
    this.form = this.root.querySelector("form");
    this.chatId = null;
  }

  wire() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    byTestId("channel-archive", this.root).addEventListener("click", () => this.toggleArchive());
    byTestId("channel-delete", this.root).addEventListener("click", () => this.remove());
    byTestId("channel-members", this.root).addEventListener("click", (event) => {
      const button = event.target.closest("button[data-member-action]");
      if (button) this.memberAction(button.dataset.memberAction, button.dataset.userId);
    });
  }

  chat() {
    return this.chatId ? this.store.chats.get(this.chatId) : null;
  }

  async open(chat) {
    if (!chat) return;
    this.chatId = chat.id;
    const { form } = this;
    form.reset();
    showFormError(byTestId("channel-error", this.root), null);
    const channel = chat.type === "public_channel" || chat.type === "private_channel";
    byTestId("channel-dialog-title", this.root).textContent = `${channel ? "Channel" : "Group"} settings`;
    form.elements.name.value = chat.name || "";
    form.elements.topic.value = chat.topic || "";
    form.elements.description.value = chat.description || "";
    const workspaceOwner = Boolean(this.store.workspace && this.store.me && this.store.workspace.owner_id === this.store.me.id);
    this.root.querySelector("[data-for=default]").hidden = !(workspaceOwner && chat.type === "public_channel");
    form.elements.default.checked = Boolean(chat.default);
    this.render();
    this.root.showModal();
    form.elements.name.focus();
    await this.sync.loadMembers(chat.id, { force: true }).catch(() => {});
    if (this.root.open) this.render();
  }

  // Called when the chat or its members change while the dialog is open.
  render() {
    const chat = this.chat();
    if (!chat || !this.root.open && !this.chatId) return;
    const { store } = this;
    const owner = store.myRole(chat) === "owner";
    const archive = byTestId("channel-archive", this.root);
    archive.textContent = chat.archived ? "Unarchive channel" : "Archive channel";
    const remove = byTestId("channel-delete", this.root);
    remove.hidden = !owner;
    for (const name of ["name", "topic", "description"]) this.form.elements[name].disabled = Boolean(chat.archived);
    byTestId("channel-save", this.root).disabled = Boolean(chat.archived);
    const members = [...(store.members.get(chat.id) || chat.memberIds.map((id) => ({ user_id: id, role: id === chat.owner_id ? "owner" : "member" })))]
      .sort((a, b) => (a.role === "owner" ? -1 : b.role === "owner" ? 1 : store.userName(a.user_id).localeCompare(store.userName(b.user_id))));
    byTestId("channel-members", this.root).replaceChildren(...members.map((member) => this.memberRow(chat, member, owner)));
  }

  memberRow(chat, member, owner) {
    const { store } = this;
    const me = store.me && member.user_id === store.me.id;
    const button = (action, text, cls = "") => h("button", { type: "button", class: `small ${cls}`, dataset: { memberAction: action, userId: member.user_id, testid: `member-${action}` }, text });
    const actions = [];
    if (owner && !me) {
      actions.push(member.role === "admin" ? button("demote", "Remove admin") : button("promote", "Make admin"));
      actions.push(button("transfer", "Make owner"));
    }
    if (!me && member.role !== "owner" && !chat.archived) actions.push(button("remove", "Remove", "danger-text"));
    const url = typeof store.avatarUrl === "function" ? store.avatarUrl(member.user_id) : "";
    return h("li", { class: "admin-member", dataset: { testid: "channel-member", userId: member.user_id, role: member.role } },
      avatar(member.user_id, store.userName(member.user_id), url),
      h("span", { class: "member-name", text: store.userName(member.user_id) + (me ? " (you)" : "") }),
      h("span", { class: `role role-${member.role}`, dataset: { testid: "channel-member-role" }, text: ROLE_LABEL[member.role] || member.role }),
      h("span", { class: "admin-member-actions" }, ...actions));
  }

  async save() {
    const chat = this.chat();
    if (!chat) return;
    const { form } = this;
    const error = byTestId("channel-error", this.root);
    const changes = {};
    const name = form.elements.name.value.trim();
    if (!name && chat.type !== "group") return showFormError(error, { message: "A channel needs a name." });
    if (name && name !== (chat.name || "")) changes.name = name;
    const topic = form.elements.topic.value.trim();
    if (topic !== (chat.topic || "")) changes.topic = topic;
    const description = form.elements.description.value.trim();
    if (description !== (chat.description || "")) changes.description = description;
    const defaultBox = form.elements.default;
    const defaultShown = !this.root.querySelector("[data-for=default]").hidden;
    try {
      if (Object.keys(changes).length) this.applied(await this.api.updateChat(chat.id, changes));
      if (defaultShown && defaultBox.checked !== Boolean(chat.default)) this.applied(await this.api.updateChat(chat.id, { default: defaultBox.checked }));
      showFormError(error, null);
      this.root.close();
      toast("Channel settings saved");
    } catch (failure) {
      showFormError(error, failure);
    }
  }

  applied(chat) {
    this.store.upsertChat(chat);
    this.views.sidebar.render();
    if (chat.id === this.store.openChatId) this.views.pane.renderHeader();
  }

  async memberAction(action, userId) {
    const chat = this.chat();
    if (!chat) return;
    const { api, store } = this;
    const name = store.userName(userId);
    try {
      if (action === "promote") await api.setRole(chat.id, userId, "admin");
      else if (action === "demote") await api.setRole(chat.id, userId, "member");
      else if (action === "transfer") {
        const ok = await confirmDialog({ title: `Make ${name} the owner?`, text: "You will become an admin. Only the owner can change roles or delete the channel.", ok: "Transfer ownership" });
        if (!ok) return;
        await api.setRole(chat.id, userId, "owner");
        // The member.updated event says so too; until it comes, this tab already knows.
        store.applyRole({ chat_id: chat.id, user_id: userId, role: "owner", owner_id: userId, previous_owner_id: store.me.id });
      } else if (action === "remove") {
        const ok = await confirmDialog({ title: `Remove ${name}?`, text: `${name} will stop receiving this channel's messages.`, ok: "Remove" });
        if (!ok) return;
        await api.leaveChat(chat.id, userId);
      }
      await this.sync.loadMembers(chat.id, { force: true });
      this.views.renderMembership();
      this.render();
    } catch (failure) {
      showFormError(byTestId("channel-error", this.root), failure);
    }
  }

  async toggleArchive() {
    const chat = this.chat();
    if (!chat) return;
    const archiving = !chat.archived;
    if (archiving) {
      const ok = await confirmDialog({ title: `Archive ${this.store.chatTitle(chat)}?`, text: "Nobody can post in it any more; everyone can still read it. You can unarchive it later.", ok: "Archive" });
      if (!ok) return;
    }
    try {
      this.applied(await this.api.archiveChat(chat.id, archiving));
      this.root.close();
    } catch (failure) {
      showFormError(byTestId("channel-error", this.root), failure);
    }
  }

  async remove() {
    const chat = this.chat();
    if (!chat) return;
    const ok = await confirmDialog({ title: `Delete ${this.store.chatTitle(chat)}?`, text: "Its messages are deleted for everyone. This cannot be undone.", ok: "Delete channel" });
    if (!ok) return;
    try {
      await this.api.deleteChat(chat.id);
      this.root.close();
      this.store.removeChat(chat.id);
      this.chats.leaveView(chat.id);
      this.views.sidebar.render();
    } catch (failure) {
      showFormError(byTestId("channel-error", this.root), failure);
    }
  }
}
