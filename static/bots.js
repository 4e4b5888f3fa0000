// Bots (the workspace owner's settings: create, copy the token once, revoke) and a chat's incoming webhooks
// (its owner and admins, in the channel settings: create, copy the URL once, delete).

import { copyText } from "./dialogs.js";
import { byTestId, confirmDialog, h, showFormError, toast } from "./ui.js";

const MANAGERS = new Set(["owner", "admin"]);

export class Bots {
  constructor({ store, api, onMembersChanged = () => {} }) {
    this.store = store;
    this.api = api;
    this.onMembersChanged = onMembersChanged;
    this.root = document.getElementById("bots-dialog");
    this.form = this.root.querySelector("form.bot-create");
    this.hooks = byTestId("channel-webhooks-section");
    this.chatId = null;
  }

  wire() {
    // The entry shows where the workspace owner's "Invite people" does (the sidebar decides who that is).
    const invite = byTestId("invite-people");
    const button = byTestId("manage-bots");
    const mirror = () => { button.hidden = invite.hidden; };
    new MutationObserver(mirror).observe(invite, { attributes: true, attributeFilter: ["hidden"] });
    mirror();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.createBot();
    });
    byTestId("bots-list", this.root).addEventListener("click", (event) => {
      const revoke = event.target.closest("button[data-bot-id]");
      if (revoke) this.revokeBot(revoke.dataset.botId, revoke.dataset.name);
    });
    byTestId("bot-token-copy", this.root).addEventListener("click", () => {
      copyText(byTestId("bot-token", this.root).value);
      toast("Token copied");
    });
    // Not a form of its own: the section sits inside the channel settings' form.
    byTestId("webhook-create", this.hooks).addEventListener("click", () => this.createHook());
    byTestId("webhook-name", this.hooks).addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      this.createHook();
    });
    byTestId("webhooks-list", this.hooks).addEventListener("click", (event) => {
      const remove = event.target.closest("button[data-hook-id]");
      if (remove) this.deleteHook(remove.dataset.hookId, remove.dataset.name);
    });
    byTestId("webhook-url-copy", this.hooks).addEventListener("click", () => {
      copyText(byTestId("webhook-url", this.hooks).value);
      toast("Webhook URL copied");
    });
  }

  // --- bots -----------------------------------------------------------------------------------

  async openBots() {
    this.form.reset();
    byTestId("bot-token-reveal", this.root).hidden = true;
    byTestId("bot-token", this.root).value = "";
    showFormError(byTestId("bots-error", this.root), null);
    this.root.showModal();
    this.form.elements.name.focus();
    await this.renderBots();
  }

  async renderBots() {
    const list = byTestId("bots-list", this.root);
    try {
      const bots = await this.api.get("/api/bots");
      list.replaceChildren(...(bots.length ? bots.map((bot) => h("li", { class: "admin-member", dataset: { testid: "bot-row", botId: bot.id } },
        h("span", { class: "member-name", text: `${bot.fullname} (@${bot.username})` }),
        h("span", { class: "role", text: "Bot" }),
        h("span", { class: "admin-member-actions" },
          h("button", { type: "button", class: "small danger-text", dataset: { botId: bot.id, name: bot.fullname, testid: "bot-revoke" }, text: "Revoke" }))))
        : [h("li", { class: "hint", dataset: { testid: "bots-empty" }, text: "No bots yet." })]));
    } catch (failure) {
      showFormError(byTestId("bots-error", this.root), failure);
    }
  }

  async createBot() {
    const { form } = this;
    const error = byTestId("bots-error", this.root);
    const name = form.elements.name.value.trim();
    const username = form.elements.username.value.trim();
    if (!name || !username) return showFormError(error, { message: "A bot needs a name and a username." });
    try {
      const made = await this.api.post("/api/bots", { name, username });
      showFormError(error, null);
      form.reset();
      // The only time the token is shown: the server keeps its hash alone.
      byTestId("bot-token", this.root).value = made.token;
      byTestId("bot-token-name", this.root).textContent = made.bot.fullname;
      byTestId("bot-token-reveal", this.root).hidden = false;
      await this.renderBots();
    } catch (failure) {
      showFormError(error, failure);
    }
  }

  async revokeBot(botId, name) {
    const ok = await confirmDialog({ title: `Revoke ${name}?`, text: "Its token stops working at once and its open connections end.", ok: "Revoke" });
    if (!ok) return;
    try {
      await this.api.del(`/api/bots/${encodeURIComponent(botId)}`);
      byTestId("bot-token-reveal", this.root).hidden = true;
      await this.renderBots();
    } catch (failure) {
      showFormError(byTestId("bots-error", this.root), failure);
    }
  }

  // --- a chat's incoming webhooks -------------------------------------------------------------

  // Called as the channel settings open: the section shows for the chat's owner and admins only.
  async openHooks(chat) {
    const shown = Boolean(chat && chat.type !== "direct" && MANAGERS.has(this.store.myRole(chat)));
    this.hooks.hidden = !shown;
    this.chatId = shown ? chat.id : null;
    byTestId("webhook-url-reveal", this.hooks).hidden = true;
    byTestId("webhook-url", this.hooks).value = "";
    byTestId("webhook-name", this.hooks).value = "";
    showFormError(byTestId("webhooks-error", this.hooks), null);
    if (shown) await this.renderHooks();
  }

  async renderHooks() {
    const chatId = this.chatId;
    if (!chatId) return;
    const list = byTestId("webhooks-list", this.hooks);
    try {
      const hooks = await this.api.get(`/api/chats/${encodeURIComponent(chatId)}/webhooks`);
      if (chatId !== this.chatId) return;
      list.replaceChildren(...(hooks.length ? hooks.map((hook) => h("li", { class: "admin-member", dataset: { testid: "webhook-row", hookId: hook.id } },
        h("span", { class: "member-name", text: hook.name }),
        h("span", { class: "admin-member-actions" },
          h("button", { type: "button", class: "small danger-text", dataset: { hookId: hook.id, name: hook.name, testid: "webhook-delete" }, text: "Delete" }))))
        : [h("li", { class: "hint", text: "No incoming webhooks." })]));
    } catch (failure) {
      showFormError(byTestId("webhooks-error", this.hooks), failure);
    }
  }

  async createHook() {
    const field = byTestId("webhook-name", this.hooks);
    const error = byTestId("webhooks-error", this.hooks);
    const name = field.value.trim();
    if (!name) return showFormError(error, { message: "A webhook needs a name." });
    try {
      const made = await this.api.post(`/api/chats/${encodeURIComponent(this.chatId)}/webhooks`, { name });
      showFormError(error, null);
      field.value = "";
      byTestId("webhook-url", this.hooks).value = `${location.origin}${made.url}`;
      byTestId("webhook-url-reveal", this.hooks).hidden = false;
      await Promise.all([this.renderHooks(), this.onMembersChanged(this.chatId)]);
    } catch (failure) {
      showFormError(error, failure);
    }
  }

  async deleteHook(hookId, name) {
    const ok = await confirmDialog({ title: `Delete ${name}?`, text: "Its URL stops working at once.", ok: "Delete" });
    if (!ok) return;
    try {
      await this.api.del(`/api/chats/${encodeURIComponent(this.chatId)}/webhooks/${encodeURIComponent(hookId)}`);
      byTestId("webhook-url-reveal", this.hooks).hidden = true;
      await this.renderHooks();
    } catch (failure) {
      showFormError(byTestId("webhooks-error", this.hooks), failure);
    }
  }
}
