// Message search: the top bar's box (Ctrl/Cmd+K or /) with filter chips, results grouped by chat, and the jump.

import { chatHash } from "./chats.js";
import { byTestId, dayLabel, formatFull, formatTime, h, toast } from "./ui.js";

const FILTER = /^(from|has|in|after|before):(\S+)$/i;
const HAS = ["file", "link", "mention"];
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const PAGE_SIZE = 20;
// A page the server's scan budget cut may be empty with a cursor: ask again a few times before "Load more".
const EMPTY_PAGES_MAX = 4;
// Jumping to an old message loads the history down to it, this many messages a request.
const JUMP_PAGE_SIZE = 200;
const JUMP_PAGES_MAX = 50;
const FLASH_MS = 2600;

// Local midnight of a YYYY-MM-DD (the reader's day, not UTC's), or null for an impossible date.
function localDay(text) {
  const match = DATE.exec(text);
  if (!match) return null;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(year, month - 1, day);
  return date.getFullYear() === year && date.getMonth() === month - 1 && date.getDate() === day ? date : null;
}

function dayText(date) {
  return date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

// One `key:value` token as a chip {key, value, label, param}, or {error} when it names nothing we know.
export function parseFilter(key, value, store) {
  key = key.toLowerCase();
  if (key === "from") {
    const name = value.replace(/^@/, "");
    const user = name.toLowerCase() === "me" ? store.me : store.userByUsername(name);
    if (!user) return { error: `No one is called @${name}.` };
    return { key, value: user.id, label: `From: ${store.userName(user.id)}`, param: user.id };
  }
  if (key === "has") {
    const what = value.toLowerCase();
    if (!HAS.includes(what)) return { error: `has: takes ${HAS.join(", ")}.` };
    return { key, value: what, label: `Has: ${what}`, param: what };
  }
  if (key === "in") {
    const name = value.replace(/^[#@]/, "").toLowerCase();
    const chat = [...store.chats.values()].find((c) => (value.startsWith("@") ? c.type === "direct" && store.username(store.directPeer(c)).toLowerCase() === name
      : c.type !== "direct" && store.chatTitle(c).toLowerCase() === name));
    if (!chat) return { error: `You are in no chat called ${value}.` };
    const title = chat.type === "direct" ? store.chatTitle(chat) : `#${store.chatTitle(chat)}`;
    return { key, value: chat.id, label: `In: ${title}`, param: chat.id };
  }
  const date = localDay(value);
  if (!date) return { error: `${key}: takes a date like 2026-12-01.` };
  // The server's `after` counts from that instant on, `before` up to it: the reader's days, sent as instants.
  if (key === "before") return { key, value, label: `Before: ${dayText(date)}`, param: date.toISOString() };
  return { key, value, label: `On or after: ${dayText(date)}`, param: date.toISOString() };
}

// Content with the server's highlights (code-point offsets) as <mark>; every part is a text node.
export function highlighted(content, spans) {
  const chars = Array.from(content);
  const parts = [];
  let at = 0;
  for (const [start, end] of spans || []) {
    if (start < at || end <= start) continue;
    if (start > at) parts.push(chars.slice(at, start).join(""));
    parts.push(h("mark", { text: chars.slice(start, end).join("") }));
    at = end;
  }
  if (at < chars.length) parts.push(chars.slice(at).join(""));
  return parts;
}

function typingInField(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

export class Search {
  constructor({ store, api, views, chats }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.chats = chats;
    this.form = byTestId("search-form");
    this.input = byTestId("search-input");
    this.chipList = byTestId("search-chips");
    this.panel = byTestId("search-panel");
    this.summary = byTestId("search-summary");
    this.hint = byTestId("search-hint");
    this.results = byTestId("search-results");
    this.more = byTestId("search-more");
    this.filters = []; // chips, at most one per key (the server takes one of each)
    this.hits = [];
    this.cursor = null;
    this.generation = 0;
    this.active = -1;
    this.loading = false;
  }

  wire() {
    if (/Mac|iPhone|iPad/.test(navigator.platform || "")) this.form.querySelector(".search-kbd").textContent = "⌘K";
    document.addEventListener("keydown", (event) => {
      if (!this.views.signedIn) return;
      const k = (event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "k";
      if (k || (event.key === "/" && !event.ctrlKey && !event.metaKey && !typingInField(event.target))) {
        event.preventDefault();
        this.focus();
      }
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.active >= 0 && this.hits[this.active]) this.jump(this.hits[this.active]);
      else this.run();
    });
    this.input.addEventListener("input", () => {
      this.active = -1;
      // A finished `key:value ` token becomes a chip as soon as the space is typed.
      if (/\s$/.test(this.input.value)) this.takeChips({ all: false });
    });
    this.input.addEventListener("keydown", (event) => this.onKey(event));
    this.form.addEventListener("click", (event) => {
      const remove = event.target.closest("[data-chip]");
      if (remove) {
        this.filters = this.filters.filter((f) => f.key !== remove.dataset.chip);
        this.renderChips();
        this.input.focus();
        if (!this.panel.hidden) this.run();
      } else if (event.target === this.form) this.input.focus();
    });
    byTestId("search-close").addEventListener("click", () => this.close({ refocus: true }));
    this.more.addEventListener("click", () => this.loadMore());
    this.results.addEventListener("click", (event) => {
      const item = event.target.closest("[data-testid=search-hit]");
      if (item) this.jump(this.hits[Number(item.dataset.index)]);
    });
    this.results.addEventListener("keydown", (event) => {
      const item = event.target.closest("[data-testid=search-hit]");
      if (item && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.jump(this.hits[Number(item.dataset.index)]);
      } else if (event.key === "Escape") this.close({ refocus: true });
    });
  }

  focus() {
    this.input.focus();
    this.input.select();
  }

  onKey(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      if (!this.panel.hidden) this.close();
      else this.input.blur();
    } else if (event.key === "Backspace" && this.input.selectionStart === 0 && this.input.selectionEnd === 0 && this.filters.length) {
      this.filters.pop();
      this.renderChips();
    } else if ((event.key === "ArrowDown" || event.key === "ArrowUp") && this.hits.length && !this.panel.hidden) {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = Math.max(-1, Math.min(this.hits.length - 1, this.active + step));
      this.renderActive();
    }
  }

  // Filter tokens in the box become chips; `all: false` leaves the word being typed (the last) alone.
  takeChips({ all }) {
    const tokens = this.input.value.split(/\s+/);
    const kept = [];
    let problem = "";
    tokens.forEach((token, i) => {
      const match = FILTER.exec(token);
      if (!match || (!all && i === tokens.length - 1)) return token && kept.push(token);
      const chip = parseFilter(match[1], match[2], this.store);
      if (chip.error) {
        problem = chip.error;
        kept.push(token);
        return;
      }
      this.filters = [...this.filters.filter((f) => f.key !== chip.key), chip];
    });
    const trailing = !all && /\s$/.test(this.input.value) ? " " : "";
    this.input.value = kept.join(" ") + (kept.length ? trailing : "");
    this.renderChips();
    this.showHint(problem, { error: Boolean(problem) });
    return !problem;
  }

  renderChips() {
    this.chipList.replaceChildren(...this.filters.map((f) => h("li", { class: "search-chip", dataset: { testid: "search-chip", key: f.key } },
      h("span", { text: f.label }),
      h("button", { type: "button", class: "search-chip-remove", dataset: { chip: f.key, testid: "search-chip-remove" }, "aria-label": `Remove ${f.label}`, title: "Remove", text: "×" }))));
    this.input.placeholder = this.filters.length ? "Add words or filters" : "Search messages  (from:@name  has:link  in:#channel  after:2026-12-01)";
  }

  showHint(text, { error = false } = {}) {
    this.hint.textContent = text;
    this.hint.hidden = !text;
    this.hint.classList.toggle("error", error);
  }

  params() {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const q = this.input.value.trim();
    if (q) params.set("q", q);
    const names = { in: "chat_id" };
    for (const f of this.filters) params.set(names[f.key] || f.key, f.param);
    return params;
  }

  // Below the top bar, whose height grows with the chips.
  open() {
    this.panel.style.top = `${Math.round(this.form.closest(".topbar").getBoundingClientRect().bottom)}px`;
    this.panel.hidden = false;
  }

  async run() {
    if (!this.takeChips({ all: true })) {
      this.open();
      return;
    }
    const params = this.params();
    if (!params.has("q") && !this.filters.length) {
      this.showHint("Type words to find, or a filter such as from:@name or has:link.");
      return;
    }
    this.generation += 1;
    this.query = params;
    this.hits = [];
    this.cursor = null;
    this.active = -1;
    this.open();
    this.summary.textContent = "Searching…";
    this.results.replaceChildren();
    await this.fetchPages(this.generation);
  }

  async loadMore() {
    if (this.cursor && !this.loading) await this.fetchPages(this.generation);
  }

  async fetchPages(generation) {
    this.loading = true;
    this.more.disabled = true;
    try {
      for (let empty = 0; ;) {
        const params = new URLSearchParams(this.query);
        if (this.cursor) params.set("cursor", this.cursor);
        const page = await this.api.get(`/api/search/messages?${params}`);
        if (generation !== this.generation) return;
        this.hits.push(...(page.messages || []));
        this.cursor = page.next_cursor || null;
        if ((page.messages || []).length || !this.cursor || ++empty >= EMPTY_PAGES_MAX) break;
      }
      this.showHint("");
    } catch (error) {
      if (generation !== this.generation) return;
      this.showHint(error.message, { error: true });
    } finally {
      if (generation === this.generation) {
        this.loading = false;
        this.render();
      }
    }
  }

  render() {
    const { store } = this;
    const count = this.hits.length;
    const q = this.query.get("q");
    const what = count ? `${count}${this.cursor ? "+" : ""} result${count === 1 && !this.cursor ? "" : "s"}` : this.cursor ? "Nothing yet" : "No results";
    this.summary.textContent = q ? `${what} for “${q}”` : what;
    const groups = new Map();
    this.hits.forEach((hit, index) => {
      if (!groups.has(hit.chat_id)) groups.set(hit.chat_id, []);
      groups.get(hit.chat_id).push({ hit, index });
    });
    this.results.replaceChildren(...[...groups].map(([chatId, items]) => {
      const chat = store.chats.get(chatId);
      const title = chat ? (chat.type === "direct" ? store.chatTitle(chat) : `#${store.chatTitle(chat)}`) : "A chat";
      return h("section", { class: "search-group", dataset: { testid: "search-group", chatId } },
        h("h3", { class: "search-group-title", text: title }),
        h("ul", { class: "search-hits" }, items.map(({ hit, index }) => h("li", {
          class: "search-hit", tabindex: "0", role: "button", dataset: { testid: "search-hit", index: String(index), messageId: hit.id },
          "aria-label": `${store.userName(hit.sender_id)}, ${formatFull(hit.created_at)}: ${hit.content}`,
        },
        h("div", { class: "search-hit-meta" },
          h("strong", { class: "search-hit-author", text: store.userName(hit.sender_id) }),
          h("time", { datetime: hit.created_at, title: formatFull(hit.created_at), text: `${dayLabel(hit.created_at)} ${formatTime(hit.created_at)}` })),
        h("div", { class: "search-hit-content", dataset: { testid: "search-hit-content" } }, highlighted(hit.content || "", hit.highlights))))));
    }));
    if (!count) {
      this.results.append(h("p", { class: "search-empty", text: this.cursor ? "Nothing found in the newest messages yet." : "No messages match. Try fewer words or filters." }));
    }
    this.more.hidden = !this.cursor;
    this.more.disabled = false;
    this.more.textContent = count ? "Load more" : "Search further back";
    this.renderActive();
  }

  renderActive() {
    for (const item of this.results.querySelectorAll("[data-testid=search-hit]")) {
      const on = Number(item.dataset.index) === this.active;
      item.classList.toggle("active", on);
      if (on) item.scrollIntoView({ block: "nearest" });
    }
  }

  close({ refocus = false } = {}) {
    this.generation += 1;
    this.panel.hidden = true;
    this.active = -1;
    this.showHint("");
    if (refocus) this.input.focus();
  }

  // The hit's chat opens with its history loaded down to the message, which is scrolled to and flashed.
  async jump(hit) {
    if (!hit) return;
    const { store, api, views } = this;
    this.close();
    this.input.blur();
    if (location.hash !== chatHash(hit.chat_id)) history.pushState(null, "", chatHash(hit.chat_id));
    try {
      await this.chats.openChat(hit.chat_id);
      const timeline = store.timelines.get(hit.chat_id);
      if (store.openChatId !== hit.chat_id || !timeline) return;
      // A reply is in its thread, not in the timeline of roots: the thread panel opens at it.
      if (hit.thread_root_id && this.openThread) return this.openThread(hit);
      for (let page = 0; page < JUMP_PAGES_MAX && timeline.hasMore && timeline.minSeq !== null && timeline.minSeq > hit.seq; page += 1) {
        if (timeline.loadingOlder) {
          await timeline.loadingOlder;
          continue;
        }
        const answer = await api.messages(hit.chat_id, { before: timeline.minSeq, limit: JUMP_PAGE_SIZE, threads: "roots" });
        for (const message of answer.messages || []) timeline.upsert(message);
        timeline.hasMore = Boolean(answer.has_more) && (answer.messages || []).length > 0;
      }
      if (store.openChatId !== hit.chat_id) return;
      views.messages.render();
      const node = views.messages.list.querySelector(`[data-message-id="${CSS.escape(hit.id)}"]`);
      if (!node) {
        toast("That message is no longer in the chat.");
        return;
      }
      node.scrollIntoView({ block: "center" });
      node.classList.remove("search-flash");
      void node.offsetWidth; // restart the animation when the same message is jumped to twice
      node.classList.add("search-flash");
      setTimeout(() => node.classList.remove("search-flash"), FLASH_MS);
    } catch (error) {
      toast(error.message, { error: true });
    }
  }
}
