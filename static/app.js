// The Fechatter web client's shell: builds each module once, wires page-wide actions and starts the session.

import { Api } from "./api.js";
import { Bots } from "./bots.js";
import { OutgoingWebhooks } from "./webhooks.js";
import { ChannelAdmin } from "./channel-admin.js";
import { chatHash, Chats } from "./chats.js";
import { Composer } from "./composer.js";
import { copyText, openAddMembers, openBrowse, openInvite, openNewChat, wireDialogs } from "./dialogs.js";
import { Live } from "./live.js";
import { Marks } from "./marks.js";
import { Notifier } from "./notifier.js";
import { People } from "./people.js";
import { ReadMarks } from "./reads.js";
import { Search } from "./search.js";
import { Session } from "./session.js";
import { ChatSettings } from "./settings.js";
import { Store } from "./store.js";
import { Sync } from "./sync.js";
import { Threads } from "./threads.js";
import { Views } from "./views/index.js";
import { Viewer } from "./viewer.js";

const WIDE_SCREEN = "(min-width: 1100px)";

function notifyUrlFromPage() {
  const meta = document.querySelector('meta[name="fechatter-notify-url"]');
  const value = meta && meta.content && !meta.content.includes("{{") ? meta.content : "";
  return (value || `${location.protocol}//${location.hostname}:6687`).replace(/\/+$/, "");
}

// What each data-action button does; `chat` is the open chat (or preview), `target` the button.
function actions({ views, session, chats, composer, dialogs, notifier, settings, admin, people, threads, marks, bots }) {
  // The message a button belongs to: in the thread panel or in the chat's list.
  const messageAt = (target) => views.thread.messageAt(target) || views.messages.messageAt(target);
  const withMessage = (fn) => (chat, target) => {
    const message = messageAt(target);
    if (message) fn(message, target);
  };
  return {
    react: withMessage((message, target) => marks.pickFor(message, target)),
    "toggle-reaction": withMessage((message, target) => marks.toggle(message, target.dataset.emoji, target.dataset.me !== "true")),
    "reply-thread": withMessage((message) => threads.open(message)),
    "open-thread": withMessage((message) => threads.open(message)),
    "close-thread": () => threads.close(),
    "retry-reply": (chat, target) => threads.retry(target.dataset.key),
    "discard-reply": (chat, target) => threads.discard(target.dataset.key),
    "pin-message": withMessage((message) => marks.pin(message, true)),
    "unpin-message": withMessage((message) => marks.pin(message, false)),
    "copy-message-link": withMessage((message) => marks.copyLink(message)),
    "show-history": withMessage((message, target) => marks.showHistory(message, target)),
    "toggle-pins": () => marks.togglePins(),
    profile: (chat, target) => people.openCard(target.dataset.userId, target),
    "my-profile": () => people.openSettings(),
    "channel-settings": (chat) => chat && (bots.openHooks(chat), admin.open(chat)),
    bots: () => bots.openBots(),
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
    "edit-message": withMessage((message) => composer.edit(message)),
    "delete-message": withMessage((message) => composer.remove(message)),
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
  const admin = new ChannelAdmin({ store, api, views, sync, chats });
  const people = new People({ store, api, views, sync, chats });
  live.people = people;
  const search = new Search({ store, api, views, chats });
  const threads = new Threads({ store, api, views, sync });
  const marks = new Marks({ store, api, views, threads });
  live.threads = threads;
  live.marks = marks;
  chats.threads = threads;
  chats.marks = marks;
  search.openThread = (hit) => threads.open(hit, { focusId: hit.id });

  // A new webhook's bot joins the chat: the open channel settings list it.
  const bots = new Bots({ store, api, onMembersChanged: async (chatId) => {
    await Promise.all([sync.loadMembers(chatId, { force: true }), sync.loadUsers()]);
    views.renderAll();
    admin.render();
  } });
  bots.wire();
  new OutgoingWebhooks({ api }).wire();
  const byAction = actions({ views, session, chats, composer, dialogs, notifier, settings, admin, people, threads, marks, bots });
  const viewer = new Viewer({ store });
  byAction["open-image"] = (chat, target) => viewer.open(target.dataset.fileId, target.dataset.messageId);
  views.app.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action]");
    if (!target) return views.messages.toggleActions(event.target);
    const act = byAction[target.dataset.action];
    if (act) act(store.currentChat(), target);
  });
  window.addEventListener("hashchange", () => {
    chats.route();
    marks.followLink();
  });
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
  admin.wire();
  people.wire();
  search.wire();
  threads.wire();
  // Wide screens have room for the members list next to the messages.
  if (window.matchMedia(WIDE_SCREEN).matches) chats.toggleMembers();
  session.start();
  // Opened from a copied message link: the chat opens (routing), then the message is shown.
  marks.followLink();
}

main();
