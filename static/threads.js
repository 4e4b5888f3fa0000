// Threads: opening a root's side panel, loading its replies, and sending replies from the panel's composer.

import { MentionAutocomplete } from "./autocomplete.js";
import { byTestId, toast } from "./ui.js";
import { newKey, sleep } from "./util.js";

const SEND_ATTEMPTS = 4;
const MAX_LENGTH = 4000;
const REPLY_PAGE = 200;
const MAX_HEIGHT_PX = 160;

export class Threads {
  constructor({ store, api, views, sync }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.sync = sync;
    this.form = byTestId("thread-composer");
    this.input = byTestId("thread-input");
    this.mentions = new MentionAutocomplete({ store, input: this.input, list: byTestId("thread-mention-options"), onPicked: () => this.autosize() });
  }

  wire() {
    this.mentions.wire();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      if (this.mentions.handleKey(event)) return;
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      } else if (event.key === "Escape" && !this.input.value) {
        event.preventDefault();
        this.close();
      }
    });
    this.input.addEventListener("input", () => this.autosize());
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight + 2, MAX_HEIGHT_PX)}px`;
  }

  // Opens the thread of a message (a reply opens its root's); focusId: a reply to scroll to.
  async open(message, { focusId = null, focus = true } = {}) {
    const { store, views } = this;
    const rootId = message.thread_root_id || message.id;
    const root = message.thread_root_id ? store.findMessage(message.chat_id, rootId) : message;
    const thread = store.ensureThread(message.chat_id, rootId, root);
    const switching = store.openThreadId !== rootId;
    store.openThreadId = rootId;
    if (switching) {
      this.input.value = "";
      this.autosize();
    }
    views.thread.render({ toBottom: true });
    if (focus && window.matchMedia("(min-width: 721px)").matches) this.input.focus();
    await this.load(thread);
    if (store.openThreadId !== rootId) return;
    views.thread.render({ toBottom: !focusId });
    if (focusId) views.thread.flash(focusId);
  }

  // The root (when we only know its id) and every reply; live replies land meanwhile (loaded is set first).
  async load(thread) {
    if (thread.loading) return thread.loading;
    const first = !thread.loaded;
    thread.loaded = true;
    thread.loading = (async () => {
      try {
        if (!this.store.threadRoot(thread)) {
          const page = await this.api.replies(thread.chatId, thread.rootId, { after: 0, limit: 1 });
          // The replies route names the thread, not the root: find the root in the chat's roots around it.
          const seq = page.messages && page.messages[0] ? page.messages[0].seq : null;
          if (seq) {
            const roots = await this.api.messages(thread.chatId, { before: seq, limit: 50, threads: "roots" });
            const found = (roots.messages || []).find((m) => m.id === thread.rootId);
            if (found) thread.root = found;
          }
        }
        let after = first ? 0 : thread.timeline.maxSeq;
        for (let more = true; more;) {
          const page = await this.api.replies(thread.chatId, thread.rootId, { after, limit: REPLY_PAGE });
          const messages = page.messages || [];
          for (const message of messages) thread.timeline.upsert(message);
          more = Boolean(page.has_more) && messages.length > 0;
          if (messages.length) after = messages[messages.length - 1].seq;
        }
      } catch (error) {
        if (first) thread.loaded = false;
        toast(error.message, { error: true });
      } finally {
        thread.loading = null;
      }
    })();
    return thread.loading;
  }

  close() {
    this.store.openThreadId = null;
    this.mentions.close();
    this.views.thread.render();
  }

  // The panel shows only the open chat's thread: another chat closes it.
  chatChanged(chatId) {
    const thread = this.store.openThread();
    if (thread && thread.chatId !== chatId) this.close();
  }

  async send() {
    const { store } = this;
    const thread = store.openThread();
    const content = this.input.value.trim();
    if (!thread || !content) return;
    if (content.length > MAX_LENGTH) return toast(`A message can be at most ${MAX_LENGTH} characters.`, { error: true });
    const item = { key: newKey(), chat_id: thread.chatId, sender_id: store.me.id, content, created_at: new Date().toISOString(), pending: "sending" };
    thread.pending.set(item.key, item);
    this.input.value = "";
    this.mentions.close();
    this.autosize();
    await this.deliver(thread, item);
  }

  // A failed reply of the open thread: sent again with its key (stored once), or dropped.
  retry(key) {
    const thread = this.store.openThread();
    const item = thread && thread.pending.get(key);
    if (item) this.deliver(thread, item);
  }

  discard(key) {
    const thread = this.store.openThread();
    if (thread && thread.pending.delete(key)) this.views.thread.render();
  }

  async deliver(thread, item) {
    const { content } = item;
    item.pending = "sending";
    this.views.thread.render({ toBottom: true });
    for (let attempt = 1; ; attempt += 1) {
      try {
        const message = await this.api.sendMessage(thread.chatId, content, item.key, thread.rootId);
        thread.pending.delete(item.key);
        this.sync.messageArrived(message);
        this.views.thread.renderIfOpen(thread.rootId, { toBottom: true });
        return;
      } catch (error) {
        if (!thread.pending.has(item.key)) return; // adopted from the stream meanwhile
        if (error.transient && attempt < SEND_ATTEMPTS) {
          await sleep(Math.min(error.retryAfter ? Number(error.retryAfter) * 1000 : 1000 * 2 ** (attempt - 1), 10_000));
          continue;
        }
        item.pending = "failed";
        this.views.thread.renderIfOpen(thread.rootId);
        toast(error.message, { error: true });
        return;
      }
    }
  }
}
