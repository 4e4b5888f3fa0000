// The emoji picker: a small built-in set (no network), opened next to a button, picking calls back and closes.

import { h } from "./ui.js";

// [emoji, name] — the ones people react with most, in Slack's order of "frequently used" first.
export const EMOJI = [
  ["👍", "thumbs up"], ["❤️", "heart"], ["😂", "joy"], ["🎉", "tada"], ["👀", "eyes"], ["🙏", "pray"],
  ["✅", "white check mark"], ["🔥", "fire"], ["😄", "smile"], ["😊", "blush"], ["😉", "wink"], ["😍", "heart eyes"],
  ["🤔", "thinking"], ["😅", "sweat smile"], ["😢", "cry"], ["😮", "open mouth"], ["😎", "sunglasses"], ["🙌", "raised hands"],
  ["👏", "clap"], ["💯", "100"], ["👎", "thumbs down"], ["👋", "wave"], ["💪", "muscle"], ["🤝", "handshake"],
  ["🚀", "rocket"], ["⭐", "star"], ["✨", "sparkles"], ["💡", "bulb"], ["⚠️", "warning"], ["❌", "x"],
  ["➕", "plus"], ["👌", "ok hand"], ["🙂", "slight smile"], ["😬", "grimace"], ["🤯", "exploding head"], ["🥳", "partying"],
  ["☕", "coffee"], ["🍕", "pizza"], ["🐛", "bug"], ["📌", "pushpin"], ["📎", "paperclip"], ["🎯", "dart"],
];

const NAMES = new Map(EMOJI);

export function emojiName(emoji) {
  return NAMES.get(emoji) || emoji;
}

// One picker for the page; open(anchor, onPick) shows it by the anchor, Escape or a click elsewhere closes it.
export class EmojiPicker {
  constructor() {
    this.el = null;
    this.onPick = null;
    this.anchor = null;
    this.closeOnOutside = (event) => {
      if (this.el && !this.el.contains(event.target) && !(this.anchor && this.anchor.contains(event.target))) this.close();
    };
    this.closeOnKey = (event) => {
      if (event.key === "Escape" && this.shown) {
        event.stopPropagation();
        this.close({ focusAnchor: true });
      }
    };
  }

  get shown() {
    return Boolean(this.el && !this.el.hidden);
  }

  build() {
    const buttons = EMOJI.map(([emoji, name]) => h("button", {
      type: "button",
      class: "emoji-option",
      role: "gridcell",
      title: `:${name.replace(/ /g, "_")}:`,
      "aria-label": name,
      dataset: { testid: "emoji-option", emoji },
      text: emoji,
      onclick: () => this.pick(emoji),
    }));
    this.el = h("div", { class: "emoji-picker", role: "dialog", "aria-label": "Add a reaction", dataset: { testid: "emoji-picker" }, hidden: true },
      h("div", { class: "emoji-picker-title", text: "Add a reaction" }),
      h("div", { class: "emoji-grid", role: "grid" }, buttons));
    this.el.addEventListener("keydown", (event) => this.arrow(event));
    document.body.append(this.el);
  }

  // Arrow keys move between the emoji, 6 to a row.
  arrow(event) {
    const keys = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 6, ArrowUp: -6 };
    if (!(event.key in keys)) return;
    const options = [...this.el.querySelectorAll(".emoji-option")];
    const at = options.indexOf(document.activeElement);
    const next = options[Math.max(0, Math.min(options.length - 1, at + keys[event.key]))];
    if (next) {
      event.preventDefault();
      next.focus();
    }
  }

  open(anchor, onPick) {
    if (!this.el) this.build();
    if (this.shown && this.anchor === anchor) return this.close();
    this.anchor = anchor;
    this.onPick = onPick;
    this.el.hidden = false;
    const box = anchor.getBoundingClientRect();
    const { width, height } = this.el.getBoundingClientRect();
    // Below the button, or above it when there is no room; never off the screen.
    const top = box.bottom + 6 + height > innerHeight ? Math.max(8, box.top - height - 6) : box.bottom + 6;
    const left = Math.min(Math.max(8, box.right - width), innerWidth - width - 8);
    this.el.style.top = `${top}px`;
    this.el.style.left = `${left}px`;
    document.addEventListener("mousedown", this.closeOnOutside, true);
    document.addEventListener("keydown", this.closeOnKey, true);
    this.el.querySelector(".emoji-option").focus({ preventScroll: true });
  }

  pick(emoji) {
    const onPick = this.onPick;
    this.close({ focusAnchor: false });
    if (onPick) onPick(emoji);
  }

  close({ focusAnchor = false } = {}) {
    if (!this.el) return;
    this.el.hidden = true;
    document.removeEventListener("mousedown", this.closeOnOutside, true);
    document.removeEventListener("keydown", this.closeOnKey, true);
    if (focusAnchor && this.anchor && this.anchor.isConnected) this.anchor.focus();
    this.anchor = null;
    this.onPick = null;
  }
}
