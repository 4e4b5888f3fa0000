// Signing in and out: the auth forms, entering the app with a stored session, and what a lost session shows.

import { loadSession } from "./tokens.js";
import { byTestId, showFormError, toast } from "./ui.js";

const BOOT_RETRY_MS = 3000;
const SIGNED_OUT_TEXT = {
  expired: "Your session has ended. Please sign in again.",
  signed_out_elsewhere: "You signed out in another tab.",
};

export class Session {
  constructor({ store, api, views, sync, live, chats }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.sync = sync;
    this.live = live;
    this.chats = chats;
    this.signin = byTestId("signin-form");
    this.signup = byTestId("signup-form");
  }

  // A stored session goes straight in; otherwise the sign-in form.
  start() {
    if (loadSession()) this.enter().catch((error) => this.bootFailed(error));
    else this.showAuth();
  }

  wire() {
    byTestId("tab-signin").addEventListener("click", () => this.showTab("signin"));
    byTestId("tab-signup").addEventListener("click", () => this.showTab("signup"));
    for (const radio of this.signup.elements.mode) radio.addEventListener("change", () => this.syncSignupMode());

    this.signin.addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.currentTarget;
      const error = byTestId("signin-error");
      const email = form.elements.email.value.trim();
      const password = form.elements.password.value;
      if (!email || !password) return showFormError(error, { message: "Enter your e-mail and password." });
      await this.submit(form, error, () => this.api.signin(email, password));
    });

    this.signup.addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.currentTarget;
      const error = byTestId("signup-error");
      const body = {
        fullname: form.elements.fullname.value.trim(),
        email: form.elements.email.value.trim(),
        password: form.elements.password.value,
      };
      const joining = form.elements.mode.value === "join";
      const extra = joining ? form.elements.invite_code.value.trim() : form.elements.workspace.value.trim();
      if (!body.fullname || !body.email || !body.password || !extra) {
        return showFormError(error, { message: joining ? "Fill in every field, including the invite code." : "Fill in every field, including the workspace name." });
      }
      body[joining ? "invite_code" : "workspace"] = extra;
      await this.submit(form, error, () => this.api.signup(body));
    });
  }

  // The sign-in page; an invite link (?invite=CODE) opens sign-up with the code filled in.
  showAuth(message = "") {
    this.live.stop();
    this.store.reset();
    this.views.showAuth();
    const invite = new URLSearchParams(location.search).get("invite");
    if (invite) {
      this.signup.elements.invite_code.value = invite;
      this.signup.elements.mode.value = "join";
      this.syncSignupMode();
      this.showTab("signup");
    } else {
      this.showTab("signin");
    }
    byTestId("signin-error").textContent = message;
    const first = this.views.auth.querySelector("form:not([hidden]) input:not([type=radio])");
    if (first) first.focus();
  }

  showTab(name) {
    for (const tab of ["signin", "signup"]) {
      const active = tab === name;
      byTestId(`tab-${tab}`).setAttribute("aria-selected", String(active));
      byTestId(`${tab}-form`).hidden = !active;
    }
  }

  syncSignupMode() {
    const mode = this.signup.elements.mode.value;
    for (const label of this.signup.querySelectorAll("[data-mode]")) label.hidden = label.dataset.mode !== mode;
  }

  async submit(form, errorEl, call) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    showFormError(errorEl, null);
    try {
      await call();
      form.reset();
      this.syncSignupMode();
      // The invite is used up; a reload should not offer sign-up again.
      if (new URLSearchParams(location.search).has("invite")) history.replaceState(null, "", `/${location.hash}`);
      await this.enter();
    } catch (error) {
      showFormError(errorEl, error);
    } finally {
      button.disabled = false;
    }
  }

  async enter() {
    const { store, api, views, sync } = this;
    const session = loadSession();
    api.scheduleRefresh();
    store.me = session.user;
    store.workspace = session.workspace;
    views.showApp();
    const [me] = await Promise.all([api.me(), sync.loadUsers(), sync.loadChats()]);
    store.me = me;
    views.sidebar.renderIdentity();
    this.live.start();
    sync.loadPresence();
    api.workspace().then((workspace) => {
      store.workspace = workspace;
      views.sidebar.renderIdentity();
    }).catch(() => {});
    this.chats.route();
  }

  bootFailed(error) {
    if (error && error.status === 401) return; // signedOut already showed the sign-in form
    toast(`${error.message} Retrying…`, { error: true });
    setTimeout(() => this.enter().catch((again) => this.bootFailed(again)), BOOT_RETRY_MS);
  }

  signedOut(reason) {
    history.replaceState(null, "", location.pathname + location.search);
    this.showAuth(SIGNED_OUT_TEXT[reason] || "");
  }

  signOut() {
    this.api.logout();
  }
}
