// A message's content_html (sanitized by the server) as DOM nodes, through an allow-list again: parsed in an inert document, rebuilt tag by tag.

import { h, linkify } from "./ui.js";

// The tags and attributes app/richtext.py may emit (its ALLOWED); anything else is dropped, its text kept.
const TAGS = new Set(["p", "br", "hr", "strong", "em", "s", "pre", "blockquote", "ul", "ol", "li", "code", "a", "span",
  "table", "thead", "tbody", "tr", "th", "td"]);
const SAFE_URL = /^(https?:|mailto:)/i;
const GROUPS = new Set(["channel", "here", "everyone"]);
const parser = typeof DOMParser !== "undefined" ? new DOMParser() : null;

// ctx: {meId, mine, lookup?}. A mention span of us (or of everyone, in someone else's message) is marked.
function rebuild(node, ctx) {
  if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.data);
  if (node.nodeType !== Node.ELEMENT_NODE) return null;
  const tag = node.localName;
  const children = () => [...node.childNodes].map((child) => rebuild(child, ctx)).filter(Boolean);
  if (!TAGS.has(tag)) return h("span", {}, children());
  if (tag === "a") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_URL.test(href)) return h("span", {}, children());
    return h("a", { href, target: "_blank", rel: "noopener nofollow noreferrer", title: node.getAttribute("title") || href }, children());
  }
  if (tag === "span") {
    if (!node.classList.contains("mention")) return h("span", {}, children());
    const userId = node.getAttribute("data-user-id") || null;
    const group = node.getAttribute("data-mention") || null;
    const me = Boolean(!ctx.mine && ((userId && userId === ctx.meId) || (group && GROUPS.has(group))));
    const name = (node.textContent || "").replace(/^@/, "").toLowerCase();
    const label = ctx.label ? ctx.label(userId, group) : "";
    return h("span", {
      class: `mention${me ? " mention-me" : ""}`,
      dataset: { testid: "mention", mention: group || name, userId, me: me ? "true" : null, action: userId ? "profile" : null },
      title: label || null,
    }, children());
  }
  if (tag === "code") {
    const lang = (node.getAttribute("class") || "").match(/^language-([A-Za-z0-9_+#.-]{1,32})$/);
    return h("code", { dataset: { lang: lang ? lang[1] : null } }, children());
  }
  if (tag === "ol") {
    const start = Number(node.getAttribute("start"));
    return h("ol", { start: Number.isInteger(start) && start > 1 ? String(start) : null }, children());
  }
  return h(tag, {}, children());
}

// The body of a message: its rendered HTML when the server gave one, else its text (links and mentions marked).
export function richContent(message, { meId = null, mine = false, label = null, mentionLookup = null } = {}) {
  const html = message.content_html;
  if (!html || !parser) return linkify(message.content || "", mentionLookup);
  const doc = parser.parseFromString(`<body>${html}</body>`, "text/html");
  const fragment = document.createDocumentFragment();
  const ctx = { meId, mine, label };
  for (const child of doc.body.childNodes) {
    // The renderer's newlines between blocks are not text: they would show as blank lines (innerText, copying).
    if (child.nodeType === Node.TEXT_NODE && !child.data.trim()) continue;
    const built = rebuild(child, ctx);
    if (built) fragment.append(built);
  }
  return fragment;
}

// A short one-line text of a message for previews and tooltips (the thread panel's header, pins).
export function plainPreview(message, max = 140) {
  const text = (message.content || "").replace(/\s+/g, " ").trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
