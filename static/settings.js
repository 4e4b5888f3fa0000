// Per-chat notification settings (notify: all / mentions / none, muted): changed here with PATCH
// /api/chats/{id}/settings, followed from other tabs through chat.settings events.

import { toast } from "./ui.js";

export const LEVELS = Object.freeze(["all", "mentions", "none"]);

export class ChatSettings {
  constructor({ store, api, views }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.saving = new Map(); // chatId -> PATCHes in flight
  }

  // changes: {notify?, muted?}; shown at once, put back when the server refuses.
  async change(chatId, changes) {
    const chat = this.store.chats.get(chatId);
    if (!chat) return;
    const before = { notify: chat.notify, muted: chat.muted };
    Object.assign(chat, changes);
    this.render(chatId);
    this.saving.set(chatId, (this.saving.get(chatId) || 0) + 1);
    try {
      const answer = await this.api.chatSettings(chatId, changes);
      this.saving.set(chatId, this.saving.get(chatId) - 1);
      if (!this.saving.get(chatId)) this.apply({ ...(answer || {}), chat_id: chatId });
    } catch (error) {
      this.saving.set(chatId, this.saving.get(chatId) - 1);
      Object.assign(chat, before);
      this.render(chatId);
      toast(error.message, { error: true });
    }
  }

  // A chat.settings event ({chat_id, notify, muted}) or our PATCH's answer. While a change of
  // ours is on its way, its own answer has the last word.
  applyEvent(data) {
    if (!this.saving.get(data.chat_id)) this.apply(data);
  }

  apply(data) {
    const chat = data && this.store.chats.get(data.chat_id);
    if (!chat) return;
    if (LEVELS.includes(data.notify)) chat.notify = data.notify;
    if (typeof data.muted === "boolean") chat.muted = data.muted;
    this.render(chat.id);
  }

  render(chatId) {
    this.views.sidebar.render();
    if (chatId === this.store.openChatId) this.views.settingsMenu.render();
  }
}
