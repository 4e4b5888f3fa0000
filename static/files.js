// Files in messages: the composer's uploads (button, drag-and-drop, paste) with progress and cancel, thumbnails and file cards.

import { h, toast } from "./ui.js";

// The server's limit per message (contract section 13).
const MAX_FILES = 10;
// The largest a thumbnail shows in the list (style.css .file-thumb img says the same).
const THUMB_MAX_W = 360;
const THUMB_MAX_H = 240;

export function humanSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function isImage(file) {
  return Boolean(file && file.thumbnail_url);
}

// A glyph per kind of file for its card.
function fileGlyph(file) {
  const type = (file.content_type || "").toLowerCase();
  const name = (file.name || "").toLowerCase();
  if (type === "application/pdf" || name.endsWith(".pdf")) return { label: "PDF", kind: "pdf" };
  if (type.startsWith("image/")) return { label: "IMG", kind: "image" };
  if (type.startsWith("text/") || /\.(txt|md|csv|log)$/.test(name)) return { label: "TXT", kind: "text" };
  if (/zip|tar|gzip|compress/.test(type) || /\.(zip|tar|gz|tgz|7z)$/.test(name)) return { label: "ZIP", kind: "archive" };
  if (type.startsWith("audio/")) return { label: "AUD", kind: "audio" };
  if (type.startsWith("video/")) return { label: "VID", kind: "video" };
  const ext = name.includes(".") ? name.split(".").pop().slice(0, 4).toUpperCase() : "";
  return { label: ext || "FILE", kind: "other" };
}

// The thumbnail holds its place while it loads (its size is reserved when the server says it), so the list
// does not jump under the reader when it arrives.
function thumbImage(file) {
  const w = Number(file.thumbnail_width) || 0;
  const hgt = Number(file.thumbnail_height) || 0;
  const img = h("img", { src: file.thumbnail_url, alt: file.name, decoding: "async", class: w && hgt ? "sized" : "loading",
    onload: () => img.classList.remove("loading") });
  if (w && hgt) {
    const scale = Math.min(1, THUMB_MAX_W / w, THUMB_MAX_H / hgt);
    img.style.width = `${Math.max(1, Math.round(w * scale))}px`;
    img.style.height = `${Math.max(1, Math.round(hgt * scale))}px`;
  }
  return img;
}

// A message's files: images as thumbnails (a click opens the viewer), the rest as cards with a download link.
export function fileParts(message) {
  const files = Array.isArray(message.files) ? message.files.filter((f) => f && typeof f === "object") : [];
  if (!files.length) return null;
  const images = files.filter(isImage);
  const others = files.filter((f) => !isImage(f));
  return h("div", { class: "message-files", dataset: { testid: "message-files" } },
    images.length ? h("div", { class: "file-thumbs" }, images.map((file) =>
      h("button", { type: "button", class: "file-thumb", title: file.name, "aria-label": `Open ${file.name}`,
        dataset: { action: "open-image", testid: "file-thumb", fileId: file.id, messageId: message.id } },
      thumbImage(file)))) : null,
    others.map((file) => {
      const glyph = fileGlyph(file);
      return h("div", { class: "file-card", dataset: { testid: "file-card", fileId: file.id } },
        h("span", { class: `file-icon file-icon-${glyph.kind}`, "aria-hidden": "true", text: glyph.label }),
        h("span", { class: "file-info" },
          h("a", { class: "file-name", href: file.url, download: file.name, title: file.name, dataset: { testid: "file-name" }, text: file.name }),
          h("span", { class: "file-size", dataset: { testid: "file-size" }, text: humanSize(file.size) })),
        h("a", { class: "file-download icon", href: file.url, download: file.name, title: `Download ${file.name}`,
          "aria-label": `Download ${file.name}`, dataset: { testid: "file-download" }, text: "⤓" }));
    }));
}

// What of a message's files shows, for the message list's version string.
export function filesVersion(message) {
  return (Array.isArray(message.files) ? message.files : []).map((f) => (f && f.id ? `${f.id}:${f.thumbnail_url ? 1 : 0}` : String(f))).join(",");
}

// The composer's uploads: each goes up at once (XMLHttpRequest, for its upload progress) into a tray above
// the box; the message is sent with the ids of the finished ones.
export class Attachments {
  constructor({ api, tray, onChange = () => {} }) {
    this.api = api;
    this.tray = tray;
    this.onChange = onChange;
    this.items = []; // {key, file, xhr, loaded, total, result, error, node}
    this.seq = 0;
  }

  get busy() {
    return this.items.some((item) => !item.result && !item.error);
  }

  get ready() {
    return this.items.filter((item) => item.result).map((item) => item.result);
  }

  add(fileList) {
    for (const file of fileList) {
      if (this.items.length >= MAX_FILES) {
        toast(`A message can carry at most ${MAX_FILES} files.`, { error: true });
        break;
      }
      this.start(file);
    }
  }

  async start(file) {
    const item = { key: `f${(this.seq += 1)}`, file, xhr: null, loaded: 0, total: file.size, result: null, error: null, node: null };
    this.items.push(item);
    this.render();
    let token;
    try {
      token = await this.api.freshToken();
    } catch (error) {
      return this.failed(item, error.message || "Not signed in");
    }
    if (!this.items.includes(item)) return; // cancelled meanwhile
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", "/api/files");
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      item.loaded = event.loaded;
      if (event.lengthComputable) item.total = event.total;
      this.renderItem(item);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300 && xhr.response && xhr.response.id) {
        item.result = xhr.response;
        item.loaded = item.total;
        this.renderItem(item);
        this.onChange();
      } else {
        const body = xhr.response;
        this.failed(item, (body && body.error && body.error.message) || `Upload failed (${xhr.status})`);
      }
    });
    xhr.addEventListener("error", () => this.failed(item, "Upload failed: cannot reach the server"));
    const form = new FormData();
    form.append("file", file, file.name || "file");
    xhr.send(form);
  }

  failed(item, message) {
    if (!this.items.includes(item)) return;
    item.error = message;
    this.renderItem(item);
    this.onChange();
  }

  cancel(key) {
    const item = this.items.find((i) => i.key === key);
    if (!item) return;
    if (item.xhr && !item.result) item.xhr.abort();
    this.items = this.items.filter((i) => i !== item);
    this.render();
    this.onChange();
  }

  clear() {
    for (const item of this.items) if (item.xhr && !item.result && !item.error) item.xhr.abort();
    this.items = [];
    this.render();
    this.onChange();
  }

  render() {
    this.tray.hidden = this.items.length === 0;
    this.tray.replaceChildren(...this.items.map((item) => {
      item.node = this.buildItem(item);
      return item.node;
    }));
  }

  buildItem(item) {
    const node = h("li", { class: "upload", dataset: { testid: "upload", key: item.key } },
      h("span", { class: "upload-name", title: item.file.name, text: item.file.name || "pasted image" }),
      h("span", { class: "upload-size", text: humanSize(item.file.size) }),
      h("button", { type: "button", class: "icon upload-cancel", title: "Remove", "aria-label": `Remove ${item.file.name}`,
        dataset: { testid: "upload-cancel" }, onclick: () => this.cancel(item.key), text: "×" }),
      h("span", { class: "upload-bar" }, h("span", { class: "upload-fill" })),
      h("span", { class: "upload-error", role: "alert", dataset: { testid: "upload-error" } }));
    this.fill(node, item);
    return node;
  }

  renderItem(item) {
    if (item.node) this.fill(item.node, item);
  }

  fill(node, item) {
    const share = item.total ? Math.min(1, item.loaded / item.total) : 0;
    const state = item.error ? "failed" : item.result ? "done" : "uploading";
    node.dataset.state = state;
    const bar = node.querySelector(".upload-bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(Math.round(share * 100)));
    bar.dataset.testid = "upload-progress";
    node.querySelector(".upload-fill").style.width = `${Math.round(share * 100)}%`;
    node.querySelector(".upload-error").textContent = item.error || "";
  }
}

// Drag-and-drop onto the chat and paste into the box, feeding the composer's attachments.
export function wireFileInputs({ attachments, dropZone, input, picker, button, canAttach }) {
  button.addEventListener("click", () => {
    if (canAttach()) picker.click();
  });
  picker.addEventListener("change", () => {
    if (picker.files && picker.files.length) attachments.add([...picker.files]);
    picker.value = "";
  });
  let depth = 0;
  const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  dropZone.addEventListener("dragenter", (event) => {
    if (!hasFiles(event) || !canAttach()) return;
    event.preventDefault();
    depth += 1;
    dropZone.classList.add("drop-target");
  });
  dropZone.addEventListener("dragover", (event) => {
    if (!hasFiles(event) || !canAttach()) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  dropZone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dropZone.classList.remove("drop-target");
  });
  dropZone.addEventListener("drop", (event) => {
    depth = 0;
    dropZone.classList.remove("drop-target");
    if (!hasFiles(event) || !canAttach()) return;
    event.preventDefault();
    attachments.add([...event.dataTransfer.files]);
    input.focus();
  });
  input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData ? event.clipboardData.files : [])];
    if (!files.length || !canAttach()) return;
    event.preventDefault();
    const stamp = new Date().toISOString().slice(0, 19).replace(/[T:]/g, "-");
    // A pasted screenshot is called image.png by every browser: give it a name worth keeping.
    attachments.add(files.map((file, i) => (file.name && file.name !== "image.png") ? file
      : new File([file], `Pasted image ${stamp}${files.length > 1 ? `-${i + 1}` : ""}.${(file.type.split("/")[1] || "png")}`, { type: file.type })));
  });
}
