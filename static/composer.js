// The message box and our own messages: send with an idempotency key and retries, typing notices, @mentions, edit, delete.

import { MentionAutocomplete } from "./autocomplete.js";
import { Attachments, wireFileInputs } from "./files.js";
import { byTestId, confirmDialog, toast } from "./ui.js";
import { newKey, sleep } from "./util.js";

const TYPING_SEND_INTERVAL_MS = 3000;
const SEND_ATTEMPTS = 4;
const MAX_LENGTH = 4000;
const MAX_HEIGHT_PX = 200;
// Drafts are kept per user and chat across reloads, as Slack keeps them.
const DRAFT_PREFIX = "fechatter.draft.";

export class Composer {
  constructor({ store, api, views, sync }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.sync = sync;
    this.form = byTestId("composer");
    this.input = byTestId("message-input");
    this.mentions = new MentionAutocomplete({
      store,
      input: this.input,
      list: byTestId("mention-options"),
      onPicked: () => {
        this.autosize();
        this.sendTyping();
      },
    });
    this.attachments = new Attachments({ api, tray: byTestId("upload-tray", this.form) });
  }

  wire() {
    this.mentions.wire();
    const canAttach = () => Boolean(this.store.currentChat()) && !this.store.preview;
    wireFileInputs({ attachments: this.attachments, dropZone: byTestId("chat"), input: this.input,
      picker: byTestId("file-input", this.form), button: byTestId("attach-button", this.form), canAttach });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      if (this.mentions.handleKey(event)) return;
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      } else if (event.key === "ArrowUp" && !this.input.value) {
        // Like Slack: arrow up in an empty box edits your last message.
        const timeline = this.store.openTimeline();
        const last = timeline && timeline.sorted().reverse().find((m) => this.store.isMine(m) && !m.deleted);
        if (last) {
          event.preventDefault();
          this.edit(last);
        }
      }
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      this.sendTyping();
      this.saveDraft();
    });
  }

  clear() {
    this.input.value = "";
    this.mentions.close();
    this.autosize();
  }

  draftKey(chatId) {
    const me = this.store.me;
    return me && chatId ? `${DRAFT_PREFIX}${me.id}.${chatId}` : null;
  }

  saveDraft(chatId = this.store.openChatId) {
    const key = this.draftKey(chatId);
    if (!key) return;
    try {
      if (this.input.value.trim()) localStorage.setItem(key, this.input.value);
      else localStorage.removeItem(key);
    } catch {
      // Storage full or refused: the draft lives as long as the page.
    }
  }

  // Opening a chat: what we had typed in it before, in this tab or before a reload.
  restoreDraft(chatId) {
    this.attachments.clear();
    const key = this.draftKey(chatId);
    let text = "";
    try {
      text = (key && localStorage.getItem(key)) || "";
    } catch {
      text = "";
    }
    this.input.value = text;
    this.autosize();
  }

  focus() {
    this.input.focus();
  }

  autosize() {
    const input = this.input;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, MAX_HEIGHT_PX)}px`;
  }

  // --- sending ---------------------------------------------------------------------

  async send() {
    const { store } = this;
    const chat = store.currentChat();
    if (!chat || store.preview) return;
    let content = this.input.value.trim();
    if (this.attachments.busy) return toast("Wait for the uploads to finish, or remove them.", { error: true });
    const files = this.attachments.ready;
    // A message needs text: files sent alone are named in it, as Slack names them.
    if (!content && files.length) content = files.map((f) => f.name).join(", ");
    if (!content) return;
    if (content.length > MAX_LENGTH) return toast(`A message can be at most ${MAX_LENGTH} characters.`, { error: true });
    const item = {
      key: newKey(),
      chat_id: chat.id,
      sender_id: store.me.id,
      content,
      files,
      created_at: new Date().toISOString(),
      pending: "sending",
    };
    store.pendingFor(chat.id).set(item.key, item);
    this.clear();
    if (files.length) this.attachments.clear();
    this.saveDraft(chat.id);
    store.typingSentAt.delete(chat.id);
    this.views.messages.render({ toBottom: true });
    await this.deliver(item);
  }

  // Sends with the message's idempotency key, retrying transient failures with the same key,
  // so a retried send is stored once.
  async deliver(item) {
    const { store, views } = this;
    item.pending = "sending";
    views.messages.renderIfOpen(item.chat_id);
    for (let attempt = 1; ; attempt += 1) {
      try {
        const message = item.files && item.files.length
          ? await this.api.post(`/api/chats/${encodeURIComponent(item.chat_id)}/messages`,
            { content: item.content, idempotency_key: item.key, files: item.files.map((f) => f.id) })
          : await this.api.sendMessage(item.chat_id, item.content, item.key);
        store.pendingFor(item.chat_id).delete(item.key);
        this.sync.messageArrived(message);
        views.messages.renderIfOpen(item.chat_id, { toBottom: true });
        return;
      } catch (error) {
        if (!store.pendingFor(item.chat_id).has(item.key)) return; // adopted from the stream meanwhile
        if (error.transient && attempt < SEND_ATTEMPTS) {
          const wait = error.retryAfter ? Number(error.retryAfter) * 1000 : 1000 * 2 ** (attempt - 1);
          await sleep(Math.min(wait || 1000, 10_000));
          continue;
        }
        item.pending = "failed";
        views.messages.renderIfOpen(item.chat_id);
        toast(error.message, { error: true });
        return;
      }
    }
  }

  // The retry and discard buttons of a failed send in the open chat.
  retry(key) {
    const item = this.store.pendingFor(this.store.openChatId).get(key);
    if (item) this.deliver(item);
  }

  discard(key) {
    if (this.store.pendingFor(this.store.openChatId).delete(key)) this.views.messages.render();
  }

  sendTyping() {
    const { store } = this;
    const chatId = store.openChatId;
    if (!chatId || store.preview || !this.input.value.trim()) return;
    const now = Date.now();
    if (now - (store.typingSentAt.get(chatId) || 0) < TYPING_SEND_INTERVAL_MS) return;
    store.typingSentAt.set(chatId, now);
    this.api.typing(chatId).catch(() => {});
  }

  // --- editing and deleting ----------------------------------------------------------

  // Saving an empty text asks to delete the message instead.
  async edit(message) {
    const { store, views } = this;
    if (store.editingId) return;
    // A message in the thread panel is edited there.
    const editing = views.thread.edit(message) || views.messages.edit(message);
    if (!editing) return;
    store.editingId = message.id;
    const content = await editing;
    if (store.editingId !== message.id) return;
    store.editingId = null;
    const text = content === null ? null : content.trim();
    if (text && text !== message.content) {
      try {
        store.applyMessage(await this.api.editMessage(message.chat_id, message.id, text));
      } catch (error) {
        toast(error.message, { error: true });
      }
    } else if (content !== null && !text) {
      views.messages.render();
      views.thread.render();
      this.focus();
      return this.remove(message);
    }
    views.messages.render();
    views.thread.render();
    this.focus();
  }

  async remove(message) {
    const ok = await confirmDialog({ title: "Delete message?", text: "Everyone in this chat will see “message deleted” instead.", ok: "Delete" });
    if (!ok) return;
    try {
      await this.api.deleteMessage(message.chat_id, message.id);
      this.store.applyDeleted({ id: message.id, chat_id: message.chat_id, seq: message.seq });
      this.views.messages.render();
      this.views.thread.render();
      this.views.sidebar.render();
    } catch (error) {
      toast(error.message, { error: true });
    }
  }
}
