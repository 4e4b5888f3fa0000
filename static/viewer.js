// The full-size image viewer: over the page, Esc closes, Left/Right move between the images of the open chat.

import { formatFull, h } from "./ui.js";
import { isImage } from "./files.js";

export class Viewer {
  constructor({ store }) {
    this.store = store;
    this.node = null;
    this.images = [];
    this.index = 0;
    this.onKey = (event) => this.key(event);
  }

  // Every image of the open chat's loaded messages, oldest first, with the message it came in.
  chatImages() {
    const timeline = this.store.openTimeline();
    if (!timeline) return [];
    const out = [];
    for (const message of timeline.sorted()) {
      if (message.deleted || !Array.isArray(message.files)) continue;
      for (const file of message.files) if (isImage(file)) out.push({ file, message });
    }
    return out;
  }

  open(fileId, messageId = null) {
    this.images = this.chatImages();
    let index = this.images.findIndex((i) => i.file.id === fileId && (!messageId || i.message.id === messageId));
    if (index < 0) index = this.images.findIndex((i) => i.file.id === fileId);
    if (index < 0) return;
    this.index = index;
    if (!this.node) this.build();
    this.show();
  }

  build() {
    this.img = h("img", { class: "viewer-image", alt: "", dataset: { testid: "viewer-image" } });
    this.caption = h("span", { class: "viewer-name", dataset: { testid: "viewer-name" } });
    this.meta = h("span", { class: "viewer-meta" });
    this.count = h("span", { class: "viewer-count", dataset: { testid: "viewer-count" } });
    this.download = h("a", { class: "viewer-download", dataset: { testid: "viewer-download" }, text: "Download" });
    this.prev = h("button", { type: "button", class: "viewer-nav viewer-prev", "aria-label": "Previous image", dataset: { testid: "viewer-prev" },
      onclick: () => this.move(-1), text: "‹" });
    this.next = h("button", { type: "button", class: "viewer-nav viewer-next", "aria-label": "Next image", dataset: { testid: "viewer-next" },
      onclick: () => this.move(1), text: "›" });
    this.node = h("div", { class: "viewer", role: "dialog", "aria-modal": "true", "aria-label": "Image", dataset: { testid: "image-viewer" }, hidden: true,
      onclick: (event) => {
        if (event.target === this.node || event.target.classList.contains("viewer-stage")) this.close();
      } },
    h("header", { class: "viewer-bar" },
      h("span", { class: "viewer-title" }, this.caption, this.meta),
      this.count, this.download,
      h("button", { type: "button", class: "viewer-close", "aria-label": "Close", title: "Close (Esc)", dataset: { testid: "viewer-close" },
        onclick: () => this.close(), text: "×" })),
    h("div", { class: "viewer-stage" }, this.prev, this.img, this.next));
    document.body.append(this.node);
  }

  show() {
    const { file, message } = this.images[this.index];
    this.img.src = file.url;
    this.img.alt = file.name;
    this.img.dataset.fileId = file.id;
    this.caption.textContent = file.name;
    this.meta.textContent = `${this.store.userName(message.sender_id)} · ${formatFull(message.created_at)}`;
    this.count.textContent = this.images.length > 1 ? `${this.index + 1} of ${this.images.length}` : "";
    this.download.href = file.url;
    this.download.setAttribute("download", file.name);
    this.prev.hidden = this.index === 0;
    this.next.hidden = this.index >= this.images.length - 1;
    if (this.node.hidden) {
      this.returnFocus = document.activeElement;
      this.node.hidden = false;
      document.addEventListener("keydown", this.onKey, true);
      this.node.querySelector(".viewer-close").focus();
    }
  }

  move(step) {
    const index = this.index + step;
    if (index < 0 || index >= this.images.length) return;
    this.index = index;
    this.show();
  }

  key(event) {
    if (event.key === "Escape") this.close();
    else if (event.key === "ArrowLeft") this.move(-1);
    else if (event.key === "ArrowRight") this.move(1);
    else return;
    event.preventDefault();
    event.stopPropagation();
  }

  get isOpen() {
    return Boolean(this.node && !this.node.hidden);
  }

  close() {
    if (!this.isOpen) return;
    this.node.hidden = true;
    this.img.removeAttribute("src");
    document.removeEventListener("keydown", this.onKey, true);
    if (this.returnFocus && this.returnFocus.focus) this.returnFocus.focus();
  }
}
