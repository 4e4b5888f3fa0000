// The Fechatter web client's shell: builds each module once, wires page-wide actions and starts the session.

import { Api } from "./api.js";
import { chatHash, Chats } from "./chats.js";
import { Composer } from "./composer.js";
import { copyText, openAddMembers, openBrowse, openInvite, openNewChat, wireDialogs } from "./dialogs.js";
import { Live } from "./live.js";
import { Notifier } from "./notifier.js";
import { ReadMarks } from "./reads.js";
import { Session } from "./session.js";
import { ChatSettings } from "./settings.js";
import { Store } from "./store.js";
import { Sync } from "./sync.js";
import { Views } from "./views/index.js";

const WIDE_SCREEN = "(min-width: 1100px)";

function notifyUrlFromPage() {
  const meta = document.querySelector('meta[name="fechatter-notify-url"]');
  const value = meta && meta.content && !meta.content.includes("{{") ? meta.content : "";
  return (value || `${location.protocol}//${location.hostname}:6687`).replace(/\/+$/, "");
}

// What each data-action button does; `chat` is the open chat (or preview), `target` the button.
function actions({ views, session, chats, composer, dialogs, notifier, settings }) {
  return {
    "new-direct": () => openNewChat(dialogs, "direct"),
    "new-channel": () => openNewChat(dialogs, "public_channel"),
    "browse-channels": () => openBrowse(dialogs),
    invite: () => openInvite(dialogs),
    signout: () => session.signOut(),
    back: () => { location.hash = ""; },
    "toggle-members": () => chats.toggleMembers(),
    "add-members": (chat) => chat && openAddMembers(dialogs, chat),
    "copy-channel-link": (chat) => chat && copyText(`${location.origin}/${chatHash(chat.id)}`),
    leave: (chat) => chat && chats.leaveChat(chat),
    "join-open": (chat) => chat && chats.joinPreview(chat),
    "chat-settings": () => views.settingsMenu.toggle(),
    "set-notify": (chat, target) => {
      views.settingsMenu.close({ focusButton: true });
      if (chat) settings.change(chat.id, { notify: target.dataset.level });
    },
    "toggle-mute": (chat) => {
      views.settingsMenu.close({ focusButton: true });
      if (chat) settings.change(chat.id, { muted: !chat.muted });
    },
    "enable-notifications": () => {
      views.settingsMenu.close({ focusButton: views.settingsMenu.shown });
      notifier.enable();
    },
    "dismiss-notify-prompt": () => notifier.dismissPrompt(),
    "jump-unread": () => views.messages.scrollToUnreadLine({ smooth: true }),
    "jump-bottom": () => views.messages.scrollToBottom({ smooth: true }),
    "edit-message": (chat, target) => {
      const message = views.messages.messageAt(target);
      if (message) composer.edit(message);
    },
    "delete-message": (chat, target) => {
      const message = views.messages.messageAt(target);
      if (message) composer.remove(message);
    },
    "retry-send": (chat, target) => {
      const key = views.messages.pendingKeyAt(target);
      if (key) composer.retry(key);
    },
    "discard-send": (chat, target) => {
      const key = views.messages.pendingKeyAt(target);
      if (key) composer.discard(key);
    },
  };
}

function main() {
  const notifyUrl = notifyUrlFromPage();
  const store = new Store();
  const views = new Views(store);
  // The api reports session changes before the modules that react to them exist; they are bound below.
  let live = null;
  let session = null;
  let chats = null;
  const api = new Api({
    onSession: (next) => live && live.tokenChanged(next),
    onSignedOut: (reason) => session && session.signedOut(reason),
  });
  const reads = new ReadMarks({ store, api, views });
  const sync = new Sync({ store, api, views, reads, notifyUrl, onChatGone: (chatId) => chats.leaveView(chatId) });
  const composer = new Composer({ store, api, views, sync });
  chats = new Chats({ store, api, views, sync, reads, composer });
  const notifier = new Notifier({ store, views, reads, chats });
  const settings = new ChatSettings({ store, api, views });
  live = new Live({ store, api, views, sync, reads, chats, notifier, settings, notifyUrl });
  session = new Session({ store, api, views, sync, live, chats });
  const dialogs = { store, api, sync, chats };

  const byAction = actions({ views, session, chats, composer, dialogs, notifier, settings });
  views.app.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action]");
    if (!target) return views.messages.toggleActions(event.target);
    const act = byAction[target.dataset.action];
    if (act) act(store.currentChat(), target);
  });
  window.addEventListener("hashchange", () => chats.route());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") reads.soon();
  });
  window.addEventListener("focus", () => reads.soon());
  window.addEventListener("online", () => live.kick());
  views.messages.onNearTop(() => sync.loadOlder());

  session.wire();
  composer.wire();
  notifier.wire();
  wireDialogs(dialogs);
  // Wide screens have room for the members list next to the messages.
  if (window.matchMedia(WIDE_SCREEN).matches) chats.toggleMembers();
  session.start();
}

main();
