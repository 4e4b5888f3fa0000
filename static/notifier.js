// Browser notifications (the Notification API): asked for from a click, shown for what a chat's level asks
// for (all / mentions / none, never when muted) while the tab is hidden or the chat is not open.

const PROMPT_DISMISSED_KEY = "fechatter.notify-prompt-dismissed";
const BODY_MAX = 160;

function supported() {
  return typeof window.Notification === "function";
}

export class Notifier {
  constructor({ store, views, reads, chats }) {
    this.store = store;
    this.views = views;
    this.reads = reads;
    this.chats = chats;
  }

  // "default" | "granted" | "denied", or null when the browser has no notifications.
  get permission() {
    return supported() ? window.Notification.permission : null;
  }

  wire() {
    this.render();
    // Permission changed in the browser's site settings.
    if (navigator.permissions && supported()) {
      navigator.permissions.query({ name: "notifications" }).then((status) => {
        status.addEventListener("change", () => this.render());
      }).catch(() => {});
    }
  }

  render() {
    this.views.sidebar.renderNotifyPrompt(this.permission, localStorage.getItem(PROMPT_DISMISSED_KEY) === "1");
    this.views.settingsMenu.renderPermission(this.permission);
  }

  // From a click: browsers ask only from a user gesture.
  async enable() {
    if (!supported()) return;
    try {
      await window.Notification.requestPermission();
    } catch {
      // Old callback-only implementations; the permission is read below either way.
    }
    this.render();
  }

  dismissPrompt() {
    localStorage.setItem(PROMPT_DISMISSED_KEY, "1");
    this.render();
  }

  // A new message from the stream.
  consider(message) {
    const { store } = this;
    const chat = store.chats.get(message.chat_id);
    if (this.permission !== "granted" || !store.wantsNotification(chat, message)) return;
    if (this.reads.inView(chat.id)) return;
    this.show(chat, message);
  }

  show(chat, message) {
    const { store } = this;
    const sender = store.userName(message.sender_id);
    const where = chat.type === "direct" ? "" : ` in ${chat.type === "public_channel" ? "#" : ""}${store.chatTitle(chat)}`;
    const text = String(message.content || "");
    const body = text.length > BODY_MAX ? `${text.slice(0, BODY_MAX - 1)}…` : text;
    let notification;
    try {
      // The tag is the message's: several tabs of ours show it once.
      notification = new window.Notification(`${sender}${where}`, { body, tag: `fechatter-${message.id}`, data: { chatId: chat.id } });
    } catch {
      return; // some browsers allow notifications only from a service worker
    }
    notification.addEventListener("click", () => {
      window.focus();
      this.chats.navigate(chat.id);
      notification.close();
    });
  }
}
