// The chat header's notification menu: the bell button and its menu (all / mentions / nothing, mute),
// with the keyboard of a menu (arrows, Home/End, Escape, Tab). The choices are data-action buttons app.js handles.

import { byTestId, h, icon } from "../ui.js";

const LEVEL_TEXT = { all: "All new messages", mentions: "Mentions only", none: "Nothing" };

export class SettingsMenu {
  constructor(store) {
    this.store = store;
    this.button = byTestId("chat-settings-button");
    this.menu = byTestId("chat-settings-menu");
    this.anchor = this.menu.parentElement;
    this.permission = null;
    this.menu.addEventListener("keydown", (event) => this.keydown(event));
    // A click anywhere else closes it.
    document.addEventListener("click", (event) => {
      if (this.shown && !this.anchor.contains(event.target)) this.close();
    }, true);
  }

  get shown() {
    return !this.menu.hidden;
  }

  renderPermission(permission) {
    this.permission = permission;
    if (this.shown) this.render();
  }

  // The button says how the open chat notifies; the menu (when open) shows the same.
  render() {
    const { store } = this;
    const chat = store.currentChat();
    const member = Boolean(chat && !store.preview && store.chats.has(chat.id));
    this.button.hidden = !member;
    if (!member) return this.close();
    const level = store.notifyLevel(chat);
    const quiet = chat.muted || level === "none";
    const summary = chat.muted ? "muted" : LEVEL_TEXT[level].toLowerCase();
    this.button.replaceChildren(icon(quiet ? "bell-off" : "bell"));
    this.button.setAttribute("aria-label", `Notification settings: ${summary}`);
    this.button.title = `Notifications: ${summary}`;
    this.button.dataset.notify = level;
    this.button.dataset.muted = String(Boolean(chat.muted));
    this.button.classList.toggle("quiet", quiet);
    if (this.shown) this.renderItems(chat, level);
  }

  renderItems(chat, level) {
    const focused = document.activeElement && this.menu.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
    const check = (on) => h("span", { class: "menu-check", "aria-hidden": "true" }, on ? icon("check") : null);
    const radio = (value) => h("button", {
      type: "button",
      role: "menuitemradio",
      class: "menu-item",
      "aria-checked": String(level === value),
      tabindex: "-1",
      dataset: { action: "set-notify", level: value, testid: `notify-${value}` },
    }, check(level === value), LEVEL_TEXT[value]);
    const items = [
      h("div", { class: "menu-heading", id: "settings-menu-heading", text: "Notify me about" }),
      h("div", { role: "group", "aria-labelledby": "settings-menu-heading" }, radio("all"), radio("mentions"), radio("none")),
      h("div", { role: "separator", class: "menu-separator" }),
      h("button", {
        type: "button",
        role: "menuitemcheckbox",
        class: "menu-item",
        "aria-checked": String(Boolean(chat.muted)),
        tabindex: "-1",
        dataset: { action: "toggle-mute", testid: "mute-toggle" },
      }, check(chat.muted), h("span", { class: "menu-item-text" }, "Mute chat", h("span", { class: "menu-item-hint", text: "Still counted, shown quietly, never notified" }))),
    ];
    if (this.permission === "default") {
      items.push(h("div", { role: "separator", class: "menu-separator" }),
        h("button", { type: "button", role: "menuitem", class: "menu-item", tabindex: "-1", dataset: { action: "enable-notifications", testid: "menu-enable-notifications" } },
          check(false), "Enable desktop notifications"));
    } else if (this.permission === "denied") {
      items.push(h("div", { role: "separator", class: "menu-separator" }),
        h("div", { role: "menuitem", class: "menu-item menu-note", "aria-disabled": "true", tabindex: "-1" },
          check(false), "Desktop notifications are blocked in this browser’s site settings."));
    }
    this.menu.replaceChildren(...items);
    if (focused) {
      const again = byTestId(focused, this.menu);
      if (again) again.focus();
    }
  }

  items() {
    return [...this.menu.querySelectorAll("[role^=menuitem]:not([aria-disabled=true])")];
  }

  toggle() {
    if (this.shown) this.close();
    else this.open();
  }

  open() {
    this.menu.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.render();
    const items = this.items();
    (items.find((item) => item.getAttribute("aria-checked") === "true") || items[0])?.focus();
  }

  close({ focusButton = false } = {}) {
    if (!this.shown) return;
    this.menu.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (focusButton) this.button.focus();
  }

  keydown(event) {
    const items = this.items();
    const index = items.indexOf(document.activeElement);
    let next = null;
    if (event.key === "ArrowDown") next = items[(index + 1) % items.length];
    else if (event.key === "ArrowUp") next = items[(index - 1 + items.length) % items.length];
    else if (event.key === "Home") next = items[0];
    else if (event.key === "End") next = items[items.length - 1];
    else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      return this.close({ focusButton: true });
    } else if (event.key === "Tab") {
      return this.close();
    }
    if (next) {
      event.preventDefault();
      next.focus();
    }
  }
}
