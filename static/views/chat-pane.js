// The open chat's frame: which pane shows (list or chat), its header with the notification menu, the join
// banner and the typing line.

import { byTestId, memberCountText } from "../ui.js";
import { SettingsMenu } from "./settings-menu.js";

const TYPING_REFRESH_MS = 1000;

// "Bob is typing…", "Bob and Carol are typing…", "Bob, Carol and Dan are typing…", then "Several people".
function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length <= 3) return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`;
  return "Several people are typing…";
}

export class ChatPane {
  constructor(store) {
    this.store = store;
    this.noChat = byTestId("no-chat");
    this.chat = byTestId("chat");
    this.title = byTestId("chat-title");
    this.description = byTestId("chat-description");
    this.composer = byTestId("composer");
    this.input = byTestId("message-input");
    this.typing = byTestId("typing-indicator");
    this.typingTimer = null;
    this.settings = new SettingsMenu(store);
  }

  // Narrow screens show one of the two; body[data-view] tells the stylesheet which.
  showChat() {
    document.body.dataset.view = "chat";
    this.noChat.hidden = true;
    this.chat.hidden = false;
  }

  showList() {
    document.body.dataset.view = "list";
    this.settings.close();
    this.chat.hidden = true;
    this.noChat.hidden = false;
    document.title = "Fechatter";
  }

  renderHeader() {
    const { store } = this;
    const chat = store.currentChat();
    if (!chat) return;
    const preview = Boolean(store.preview);
    const title = store.chatTitle(chat);
    this.title.textContent = (chat.type === "public_channel" ? "# " : "") + title;
    this.title.dataset.chatId = chat.id;
    // The topic first, as Slack's header shows it; then the description, then who is in it.
    this.description.textContent = chat.topic || chat.description || (chat.type === "direct" ? "Direct message" : memberCountText(store.memberCount(chat)));
    this.description.dataset.topic = chat.topic || "";
    byTestId("copy-channel-link").hidden = chat.type !== "public_channel";
    // The owner cannot leave (the server says so); they delete the chat instead.
    const owner = Boolean(store.me && chat.owner_id === store.me.id);
    byTestId("leave-chat").hidden = preview || owner || chat.type === "direct";
    byTestId("add-members").hidden = preview || chat.type === "direct";
    byTestId("join-banner").hidden = !preview;
    // Owners and admins manage a channel or group; a direct chat has nothing to manage.
    byTestId("channel-settings-button").hidden = preview || chat.type === "direct" || !store.managesChat(chat);
    // An archived chat is read-only: a notice where the composer was.
    const archived = Boolean(chat.archived);
    byTestId("archived-banner").hidden = !archived || preview;
    this.chat.dataset.archived = String(archived);
    this.composer.hidden = preview || archived;
    this.input.placeholder = `Message ${chat.type === "public_channel" ? "#" : ""}${title}`;
    this.settings.render();
  }

  // Typing notices expire on their own, so the line re-renders while anyone is shown.
  renderTyping() {
    const { store } = this;
    const chatId = store.openChatId;
    const typers = chatId ? store.typers(chatId) : [];
    this.typing.textContent = typingText(typers.map((id) => store.userName(id).split(" ")[0]));
    this.typing.dataset.users = typers.join(" ");
    clearTimeout(this.typingTimer);
    if (typers.length) this.typingTimer = setTimeout(() => this.renderTyping(), TYPING_REFRESH_MS);
  }
}
