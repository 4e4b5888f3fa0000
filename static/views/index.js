// Every view of the signed-in page, rendered from the Store; no view fetches or changes state.

import { updatePresenceDots } from "../ui.js";
import { ChatPane } from "./chat-pane.js";
import { MembersPanel } from "./members.js";
import { MessageList } from "./messages.js";
import { Sidebar } from "./sidebar.js";
import { ThreadPanel } from "./thread-panel.js";

export class Views {
  constructor(store) {
    this.store = store;
    this.auth = document.getElementById("auth-view");
    this.app = document.getElementById("app-view");
    this.sidebar = new Sidebar(store);
    this.pane = new ChatPane(store);
    this.settingsMenu = this.pane.settings;
    this.messages = new MessageList(store);
    this.members = new MembersPanel(store);
    this.thread = new ThreadPanel(store);
  }

  get signedIn() {
    return !this.app.hidden;
  }

  showApp() {
    this.auth.hidden = true;
    this.app.hidden = false;
  }

  // Signed out: nothing of the last session stays on the page.
  showAuth() {
    this.messages.clear();
    this.sidebar.clear();
    this.pane.showList();
    this.app.hidden = true;
    this.auth.hidden = false;
  }

  renderAll() {
    this.sidebar.renderIdentity();
    this.sidebar.render();
    this.pane.renderHeader();
    this.messages.render();
    this.thread.render();
    this.members.render();
    this.pane.renderTyping();
  }

  // Header and members panel both count the open chat's members.
  renderMembership() {
    this.members.render();
    this.pane.renderHeader();
  }

  // Dots are updated in place wherever they are (sidebar, members, pickers).
  renderPresence(userIds = [...this.store.presence.keys()]) {
    for (const userId of userIds) updatePresenceDots(document, userId, this.store.presence.get(userId));
    if (this.store.openChatId) this.members.render();
  }
}
