// Modal dialogs: new conversation, add people, join a channel, invite link.
// Each takes `app`: {store, api, sync, chats}, as app.js builds it.

import { byTestId, h, icon, memberCountText, renderUserPicker, showFormError, toast } from "./ui.js";

const CHANNEL_TYPES = new Set(["public_channel", "private_channel"]);

function dialog(id) {
  return document.getElementById(id);
}

function checkedIds(listEl) {
  return [...listEl.querySelectorAll("input[name=member]:checked")].map((input) => input.value);
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API needs a secure context; fall back to a hidden field.
    const field = h("textarea", { class: "visually-hidden" });
    field.value = text;
    document.body.append(field);
    field.select();
    document.execCommand("copy");
    field.remove();
  }
  toast("Copied to clipboard");
}

// Buttons marked data-action="close-dialog" close their dialog; forms are wired once.
export function wireDialogs(app) {
  for (const el of document.querySelectorAll("dialog")) {
    el.addEventListener("click", (event) => {
      if (event.target.closest("[data-action=close-dialog]")) el.close();
      // A click on the backdrop lands on the dialog element itself.
      if (event.target === el) el.close();
    });
  }
  wireNewChat(app);
  wireAddMembers(app);
  wireBrowse(app);
  byTestId("copy-invite").addEventListener("click", () => copyText(byTestId("invite-link").value));
}

// --- new conversation ---------------------------------------------------------------

function otherUsers(app) {
  return [...app.store.users.values()].filter((user) => user.id !== app.store.me.id);
}

function syncNewChatForm(app) {
  const root = dialog("new-chat-dialog");
  const form = root.querySelector("form");
  const type = form.elements.type.value;
  const channel = CHANNEL_TYPES.has(type);
  root.querySelector("[data-for=name]").hidden = type === "direct";
  root.querySelector("[data-for=description]").hidden = !channel;
  form.elements.name.placeholder = channel ? "e.g. general" : "Optional";
  byTestId("new-chat-members-label").textContent =
    type === "direct" ? "Who" : type === "group" ? "Members (at least two)" : "Members (optional)";
  const selection = root.selection;
  if (type === "direct" && selection.size > 1) selection.clear();
  renderUserPicker(byTestId("new-chat-members"), app.store, otherUsers(app), {
    multiple: type !== "direct",
    filter: form.elements.filter.value,
    selected: selection,
  });
}


function wireNewChat(app) {
  const root = dialog("new-chat-dialog");
  // Who is picked survives filtering the list, which re-renders it.
  root.selection = new Set();
  const form = root.querySelector("form");
  form.elements.type.addEventListener("change", () => syncNewChatForm(app));
  form.elements.filter.addEventListener("input", () => syncNewChatForm(app));
  byTestId("new-chat-members").addEventListener("change", (event) => {
    const input = event.target;
    if (input.name !== "member") return;
    if (input.type === "radio") root.selection.clear();
    if (input.checked) root.selection.add(input.value);
    else root.selection.delete(input.value);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = byTestId("new-chat-error");
    const type = form.elements.type.value;
    const members = [...root.selection];
    const name = form.elements.name.value.trim();
    const description = form.elements.description.value.trim();
    if (type === "direct" && members.length !== 1) return showFormError(error, { message: "Pick the person to message." });
    if (type === "group" && members.length < 2) return showFormError(error, { message: "A group needs at least two other people." });
    if (CHANNEL_TYPES.has(type) && !name) return showFormError(error, { message: "A channel needs a name." });
    const submit = byTestId("new-chat-submit");
    submit.disabled = true;
    try {
      const chat = await app.api.createChat({ type, name: type === "direct" ? "" : name, description: CHANNEL_TYPES.has(type) ? description : "", members });
      app.chats.addChat(chat);
      root.close();
      app.chats.navigate(chat.id);
    } catch (failure) {
      showFormError(error, failure);
    } finally {
      submit.disabled = false;
    }
  });
}

export function openNewChat(app, type) {
  const root = dialog("new-chat-dialog");
  const form = root.querySelector("form");
  form.reset();
  form.elements.type.value = type;
  root.selection.clear();
  showFormError(byTestId("new-chat-error"), null);
  syncNewChatForm(app);
  root.showModal();
  (type === "direct" ? form.elements.filter : form.elements.type).focus();
  app.sync.loadUsers().then(() => root.open && syncNewChatForm(app)).catch(() => {});
}

// --- add people to the open chat -------------------------------------------------------

function wireAddMembers(app) {
  const root = dialog("add-members-dialog");
  root.querySelector("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const ids = checkedIds(byTestId("add-members-list"));
    const error = byTestId("add-members-error");
    if (!ids.length) return showFormError(error, { message: "Pick at least one person." });
    try {
      await app.api.addMembers(app.store.openChatId, ids);
      root.close();
      app.sync.loadMembers(app.store.openChatId, { force: true });
    } catch (failure) {
      showFormError(error, failure);
    }
  });
}

export function openAddMembers(app, chat) {
  const root = dialog("add-members-dialog");
  const current = new Set(chat.memberIds);
  const candidates = otherUsers(app).filter((user) => !current.has(user.id));
  showFormError(byTestId("add-members-error"), null);
  renderUserPicker(byTestId("add-members-list"), app.store, candidates);
  root.showModal();
}

// --- browse and join public channels ----------------------------------------------------

// A channel id from a pasted link (…/#/chat/ID) or the bare id.
function channelIdFrom(text) {
  const value = text.trim();
  const match = value.match(/#\/chat\/([^/?#\s]+)/);
  return match ? decodeURIComponent(match[1]) : value;
}

async function joinAndOpen(app, chatId) {
  const chat = await app.api.joinChat(chatId);
  app.chats.addChat(chat);
  dialog("browse-dialog").close();
  app.chats.navigate(chat.id || chatId);
}

function channelRow(app, channel) {
  const joined = app.store.chats.has(channel.id) || channel.is_member === true;
  const button = joined
    ? h("button", { type: "button", dataset: { testid: "browse-open" }, onclick: () => { dialog("browse-dialog").close(); app.chats.navigate(channel.id); }, text: "Open" })
    : h("button", { type: "button", class: "primary", dataset: { testid: "browse-join-channel" }, onclick: (event) => {
        event.currentTarget.disabled = true;
        joinAndOpen(app, channel.id).catch((failure) => {
          showFormError(byTestId("browse-error"), failure);
          event.target.disabled = false;
        });
      }, text: "Join" });
  const about = [memberCountText(app.store.memberCount(channel)), channel.description].filter(Boolean).join(" · ");
  return h("li", { class: "channel-row", dataset: { testid: "browse-item", chatId: channel.id } },
    h("span", { class: "chat-icon" }, icon("hash")),
    h("span", { class: "channel-row-text" },
      h("strong", { text: channel.name || "channel" }),
      h("span", { class: "hint", dataset: { testid: "browse-item-about" }, text: about })),
    button);
}

function wireBrowse(app) {
  const root = dialog("browse-dialog");
  const form = root.querySelector("form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = channelIdFrom(form.elements.channel.value);
    const error = byTestId("browse-error");
    if (!id) return showFormError(error, { message: "Paste a channel link or id." });
    try {
      if (app.store.chats.has(id)) {
        root.close();
        return app.chats.navigate(id);
      }
      const chat = await app.api.chat(id);
      if (chat.type !== "public_channel") return showFormError(error, { message: "Only public channels can be joined without an invitation." });
      await joinAndOpen(app, id);
    } catch (failure) {
      showFormError(error, failure.status === 404 ? { message: "No channel with that link in this workspace." } : failure);
    }
  });
}

export async function openBrowse(app) {
  const root = dialog("browse-dialog");
  root.querySelector("form").reset();
  showFormError(byTestId("browse-error"), null);
  const list = byTestId("browse-list");
  const hint = byTestId("browse-hint");
  // Public channels we are in are always known; the rest need the browse endpoint.
  const known = [...app.store.chats.values()].filter((chat) => chat.type === "public_channel");
  list.replaceChildren(...known.map((chat) => channelRow(app, chat)));
  hint.textContent = "Loading channels…";
  root.showModal();
  try {
    const channels = (await app.api.publicChannels()).filter((chat) => !app.store.chats.has(chat.id));
    const rows = [...channels, ...known]
      .sort((a, b) => (a.name || "").localeCompare(b.name || ""))
      .map((chat) => channelRow(app, chat));
    list.replaceChildren(...rows);
    hint.textContent = rows.length ? "" : "There are no public channels yet. Create one with “New channel”.";
  } catch (failure) {
    hint.textContent = failure.status === 404
      ? "Paste a channel link someone shared with you (channel header → Copy link)."
      : failure.message;
  }
}

// --- invite link (workspace owner) --------------------------------------------------------

export function inviteLink(code) {
  return `${location.origin}/?invite=${encodeURIComponent(code)}`;
}

export async function openInvite(app) {
  const root = dialog("invite-dialog");
  try {
    const workspace = await app.api.workspace();
    app.store.workspace = workspace;
    if (!workspace.invite_code) return toast("Only the workspace owner can invite people.", { error: true });
    byTestId("invite-workspace").textContent = workspace.name;
    byTestId("invite-code").textContent = workspace.invite_code;
    const field = byTestId("invite-link");
    field.value = inviteLink(workspace.invite_code);
    root.showModal();
    field.select();
  } catch (failure) {
    toast(failure.message, { error: true });
  }
}
