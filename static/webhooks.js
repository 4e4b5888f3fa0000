// Outgoing webhooks in the workspace owner's settings: create (the secret shown once), the list with each
// one's last deliveries, delete. The section is added to the owner's settings dialog (bots-dialog) and is
// refreshed each time that dialog opens.

import { copyText } from "./dialogs.js";
import { byTestId, confirmDialog, h, showFormError, toast } from "./ui.js";

const SHOWN_ATTEMPTS = 5;

export class OutgoingWebhooks {
  constructor({ api }) {
    this.api = api;
    this.dialog = document.getElementById("bots-dialog");
  }

  wire() {
    if (!this.dialog) return;
    this.error = h("p", { class: "form-error", role: "alert", dataset: { testid: "outgoing-webhooks-error" } });
    this.list = h("ul", { class: "admin-members", dataset: { testid: "outgoing-webhooks-list" } });
    this.url = h("input", { name: "url", type: "url", maxlength: "2000", autocomplete: "off", placeholder: "https://hooks.example.com/fechatter", dataset: { testid: "outgoing-webhook-url" } });
    this.secret = h("input", { readonly: true, class: "copy-field", "aria-label": "Webhook secret", dataset: { testid: "outgoing-webhook-secret" } });
    this.reveal = h("div", { hidden: true, dataset: { testid: "outgoing-webhook-secret-reveal" } },
      h("p", { text: "The signing secret (X-Fechatter-Signature: sha256=HMAC of the body), shown only now: copy it." }),
      this.secret,
      h("div", { class: "dialog-actions start" },
        h("button", { type: "button", dataset: { testid: "outgoing-webhook-secret-copy" }, text: "Copy secret" })));
    const create = h("button", { type: "button", class: "primary", dataset: { testid: "outgoing-webhook-create" }, text: "Add webhook" });
    const section = h("section", { dataset: { testid: "outgoing-webhooks-section" } },
      h("h3", { class: "dialog-section", text: "Outgoing webhooks" }),
      h("p", { class: "hint", text: "Every new message of the workspace is POSTed to each URL, signed, in order, retried for hours." }),
      this.list,
      h("label", {}, "URL ", this.url),
      this.error,
      h("div", { class: "dialog-actions start" }, create),
      this.reveal);
    const actions = this.dialog.querySelector(".form > .dialog-actions:last-child");
    (actions ? actions.parentNode : this.dialog).insertBefore(section, actions);
    create.addEventListener("click", () => this.create());
    this.url.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      this.create();
    });
    byTestId("outgoing-webhook-secret-copy", section).addEventListener("click", () => {
      copyText(this.secret.value);
      toast("Secret copied");
    });
    this.list.addEventListener("click", (event) => {
      const remove = event.target.closest("button[data-outgoing-id]");
      if (remove) this.remove(remove.dataset.outgoingId, remove.dataset.url);
    });
    // Refreshed whenever the owner opens the settings.
    new MutationObserver(() => {
      if (this.dialog.open) {
        this.reveal.hidden = true;
        this.secret.value = "";
        showFormError(this.error, null);
        this.render();
      }
    }).observe(this.dialog, { attributes: true, attributeFilter: ["open"] });
  }

  async render() {
    try {
      const { webhooks } = await this.api.get("/api/webhooks");
      const rows = await Promise.all(webhooks.map(async (hook) => {
        let attempts = [];
        try {
          attempts = (await this.api.get(`/api/webhooks/${encodeURIComponent(hook.id)}/deliveries`)).deliveries.slice(0, SHOWN_ATTEMPTS);
        } catch { /* the list still shows */ }
        return h("li", { class: "admin-member", dataset: { testid: "outgoing-webhook-row", outgoingId: hook.id } },
          h("span", { class: "member-name", text: hook.url }),
          h("span", { class: "role", text: hook.events.join(", ") }),
          h("span", { class: "admin-member-actions" },
            h("button", { type: "button", class: "small danger-text", dataset: { outgoingId: hook.id, url: hook.url, testid: "outgoing-webhook-delete" }, text: "Delete" })),
          h("ul", { class: "hint", dataset: { testid: "outgoing-webhook-deliveries" } },
            ...(attempts.length ? attempts.map((d) => h("li", { text: `${d.at} ${d.event_type} #${d.attempt}: ${d.status_code ?? d.error}` }))
              : [h("li", { text: "No deliveries yet." })])));
      }));
      this.list.replaceChildren(...(rows.length ? rows
        : [h("li", { class: "hint", dataset: { testid: "outgoing-webhooks-empty" }, text: "No outgoing webhooks yet." })]));
    } catch (failure) {
      showFormError(this.error, failure);
    }
  }

  async create() {
    const url = this.url.value.trim();
    if (!url) return showFormError(this.error, { message: "A webhook needs a URL." });
    try {
      const made = await this.api.post("/api/webhooks", { url, events: ["message.created"] });
      showFormError(this.error, null);
      this.url.value = "";
      this.secret.value = made.secret;
      this.reveal.hidden = false;
      await this.render();
    } catch (failure) {
      showFormError(this.error, failure);
    }
  }

  async remove(id, url) {
    if (!(await confirmDialog({ title: "Delete webhook", text: `Stop sending events to ${url}?` }))) return;
    try {
      await this.api.del(`/api/webhooks/${encodeURIComponent(id)}`);
      await this.render();
    } catch (failure) {
      showFormError(this.error, failure);
    }
  }
}
