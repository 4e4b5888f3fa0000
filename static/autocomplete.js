// The composer's "@" list: the open chat's members (and @channel/@here) matching what follows the "@",
// picked with arrows and Enter/Tab or the mouse, Escape to close; it inserts "@username ".

import { avatar, h, presenceDot } from "./ui.js";

const MAX_OPTIONS = 8;
// "@" at the start or after a space or bracket, then what is typed of the name, up to the caret.
const TOKEN = /(^|[\s([{])@([a-z0-9._-]{0,32})$/i;

export class MentionAutocomplete {
  constructor({ store, input, list, onPicked = () => {} }) {
    this.store = store;
    this.input = input;
    this.list = list;
    this.onPicked = onPicked;
    this.options = [];
    this.active = 0;
    this.token = null; // {start, query}: where the "@" is and what follows it
    this.dismissed = null; // the "@" position Escape closed the list for
  }

  wire() {
    this.input.addEventListener("input", () => this.update());
    this.input.addEventListener("click", () => this.update());
    this.input.addEventListener("blur", () => this.close());
    // A press on an option would take the focus from the box before the click picks it.
    this.list.addEventListener("mousedown", (event) => event.preventDefault());
    this.list.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this.pick(Number(option.dataset.index));
    });
  }

  get isOpen() {
    return !this.list.hidden;
  }

  // The composer's keydown asks first; true when the key was ours.
  handleKey(event) {
    if (event.key === "ArrowLeft" || event.key === "ArrowRight" || event.key === "Home" || event.key === "End") {
      setTimeout(() => this.update());
      return false;
    }
    if (!this.isOpen || event.isComposing) return false;
    const count = this.options.length;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      this.active = (this.active + (event.key === "ArrowDown" ? 1 : count - 1)) % count;
      this.renderActive();
    } else if ((event.key === "Enter" && !event.shiftKey) || event.key === "Tab") {
      this.pick(this.active);
    } else if (event.key === "Escape") {
      this.dismissed = this.token && this.token.start;
      this.close();
    } else {
      return false;
    }
    event.preventDefault();
    event.stopPropagation();
    return true;
  }

  // What is typed before the caret decides whether the list shows and what it offers.
  update() {
    const { input, store } = this;
    const chatId = store.openChatId;
    const caret = input.selectionStart;
    const match = chatId && !store.preview && caret === input.selectionEnd ? input.value.slice(0, caret).match(TOKEN) : null;
    if (!match) {
      this.dismissed = null;
      return this.close();
    }
    const start = caret - match[2].length - 1;
    if (this.dismissed === start) return this.close();
    this.dismissed = null;
    const query = match[2];
    const options = store.mentionCandidates(chatId, query).slice(0, MAX_OPTIONS);
    if (!options.length) return this.close();
    const same = this.isOpen && this.options.length === options.length && this.options.every((o, i) => o.username === options[i].username);
    this.token = { start, query };
    this.options = options;
    if (!same) this.active = 0;
    this.render();
  }

  render() {
    const { store } = this;
    // A person: avatar, name, presence, @handle; @channel/@here: "@", the handle, what it does.
    const parts = (option) => (option.special
      ? [h("span", { class: "mention-option-at", "aria-hidden": "true", text: "@" }),
        h("span", { class: "mention-option-name", text: `@${option.username}` }),
        h("span", { class: "mention-option-handle", text: option.fullname })]
      : [avatar(option.id, option.fullname, this.store.avatarUrl(option.id)),
        h("span", { class: "mention-option-name", text: option.fullname }),
        presenceDot(option.id, store.status(option.id)),
        h("span", { class: "mention-option-handle", text: `@${option.username}` })]);
    const rows = this.options.map((option, index) => h("li", {
      id: `mention-option-${index}`,
      role: "option",
      class: `mention-option${option.special ? " special" : ""}`,
      "aria-selected": "false",
      dataset: { testid: "mention-option", index: String(index), username: option.username, userId: option.id },
    }, parts(option)));
    this.list.replaceChildren(...rows);
    this.list.hidden = false;
    this.renderActive();
  }

  renderActive() {
    for (const row of this.list.children) {
      const on = Number(row.dataset.index) === this.active;
      row.setAttribute("aria-selected", String(on));
      row.classList.toggle("active", on);
      if (on) row.scrollIntoView({ block: "nearest" });
    }
    this.input.setAttribute("aria-activedescendant", `mention-option-${this.active}`);
  }

  // Replaces the "@" and what follows it with the chosen "@username ".
  pick(index) {
    const option = this.options[index];
    const token = this.token;
    if (!option || !token) return this.close();
    const { input } = this;
    const end = token.start + 1 + token.query.length;
    const after = input.value.slice(end);
    const text = `@${option.username}${after.startsWith(" ") ? "" : " "}`;
    input.setRangeText(text, token.start, end, "end");
    if (after.startsWith(" ")) input.setSelectionRange(input.selectionStart + 1, input.selectionStart + 1);
    this.close();
    input.focus();
    this.onPicked();
  }

  close() {
    if (this.list.hidden && !this.options.length) return;
    this.list.hidden = true;
    this.list.replaceChildren();
    this.options = [];
    this.token = null;
    this.input.removeAttribute("aria-activedescendant");
  }
}
