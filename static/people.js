// People: the profile card a click on any name or picture opens, and one's own profile and settings
// (name, username, status, time zone, picture with preview, password, sign out everywhere).

import { avatarSrc, byTestId, h, showFormError, toast } from "./ui.js";

const CARD_GAP_PX = 8;

// "3:42 PM" where they are, or "" when their zone is unknown to this browser.
export function localTime(timeZone, now = new Date()) {
  if (!timeZone) return "";
  try {
    return new Intl.DateTimeFormat([], { hour: "numeric", minute: "2-digit", timeZone }).format(now);
  } catch {
    return "";
  }
}

function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    return "";
  }
}

function timeZones() {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf("timeZone");
  } catch {
    zones = [];
  }
  return zones.includes("UTC") ? zones : ["UTC", ...zones];
}

// The zone's offset from UTC now, in minutes (from how the time reads there).
function offsetMinutes(timeZone, at) {
  const now = new Date(Math.floor(at.getTime() / 60000) * 60000); // whole minutes, as the parts read
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-US", {
    timeZone, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric",
  }).formatToParts(now).map((part) => [part.type, part.value]));
  const there = Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day), Number(parts.hour) % 24, Number(parts.minute));
  return Math.round((there - now.getTime()) / 60000);
}

// "9 hours ahead", "1.5 hours behind", "" when the same as ours (as Slack's card says it).
export function timeDifference(timeZone, now = new Date()) {
  if (!timeZone) return "";
  let minutes;
  try {
    minutes = offsetMinutes(timeZone, now) + now.getTimezoneOffset();
  } catch {
    return "";
  }
  if (Math.abs(minutes) < 1) return "";
  const hours = Math.abs(minutes) / 60;
  const text = Number.isInteger(hours) ? String(hours) : hours.toFixed(1).replace(/\.0$/, "");
  return `${text} hour${hours === 1 ? "" : "s"} ${minutes > 0 ? "ahead" : "behind"}`;
}

function mine(store, userId) {
  return Boolean(store.me && store.me.id === userId);
}

export class People {
  constructor({ store, api, views, sync, chats }) {
    this.store = store;
    this.api = api;
    this.views = views;
    this.sync = sync;
    this.chats = chats;
    this.card = byTestId("profile-card");
    this.dialog = document.getElementById("my-profile-dialog");
    this.cardUserId = null;
    this.picked = null; // the picture chosen in the settings, not uploaded yet
    this.previewUrl = null;
  }

  wire() {
    byTestId("profile-card-message").addEventListener("click", () => this.message(this.cardUserId));
    byTestId("profile-card-edit").addEventListener("click", () => {
      this.closeCard();
      this.openSettings();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.card.hidden) this.closeCard({ focusBack: true });
    });
    // A click anywhere else closes the card; one on another name opens theirs (app.js "profile").
    document.addEventListener("mousedown", (event) => {
      if (!this.card.hidden && !this.card.contains(event.target) && !event.target.closest("[data-action=profile]")) this.closeCard();
    });
    window.addEventListener("resize", () => this.closeCard());
    const form = byTestId("profile-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.saveProfile(form);
    });
    form.elements.avatar.addEventListener("change", () => this.pick(form.elements.avatar.files[0] || null));
    const passwords = byTestId("password-form");
    passwords.addEventListener("submit", (event) => {
      event.preventDefault();
      this.changePassword(passwords);
    });
    byTestId("signout-everywhere").addEventListener("click", () => {
      this.dialog.close();
      this.api.logoutAll().catch((error) => toast(error.message, { error: true }));
    });
    this.dialog.addEventListener("close", () => this.pick(null));
    for (const tab of this.dialog.querySelectorAll("[role=tab]")) {
      tab.addEventListener("click", () => this.showTab(tab.getAttribute("aria-controls")));
    }
    const zones = byTestId("profile-timezone");
    zones.replaceChildren(h("option", { value: "", text: "Not set" }), ...timeZones().map((zone) => h("option", { value: zone, text: zone.replaceAll("_", " ") })));
  }

  // --- the card ---------------------------------------------------------------------

  openCard(userId, anchor) {
    if (!userId) return;
    this.cardUserId = userId;
    this.anchor = anchor;
    this.renderCard();
    this.card.hidden = false;
    this.place(anchor);
    (mine(this.store, userId) ? byTestId("profile-card-edit") : byTestId("profile-card-message")).focus();
    // Our copy may be older than the last event we missed: the card shows the server's.
    this.api.user(userId).then((user) => {
      this.store.applyUser(user);
      if (this.cardUserId === userId && !this.card.hidden) this.renderCard();
    }).catch(() => {});
  }

  closeCard({ focusBack = false } = {}) {
    if (this.card.hidden) return;
    this.card.hidden = true;
    this.cardUserId = null;
    if (focusBack && this.anchor && this.anchor.isConnected && this.anchor.focus) this.anchor.focus();
  }

  renderCard() {
    const { store } = this;
    const user = store.user(this.cardUserId) || { id: this.cardUserId };
    const own = mine(store, this.cardUserId);
    const img = byTestId("profile-card-avatar");
    const src = avatarSrc(user.avatar_url, 256);
    if (img.getAttribute("src") !== src) img.src = src;
    byTestId("profile-card-name").textContent = store.userName(this.cardUserId);
    byTestId("profile-card-username").textContent = user.username ? `@${user.username}` : "";
    const status = [user.status_emoji, user.status_text].filter(Boolean).join(" ");
    const statusEl = byTestId("profile-card-status");
    statusEl.textContent = status;
    statusEl.hidden = !status;
    const time = localTime(user.timezone);
    const timeEl = byTestId("profile-card-time");
    const difference = own ? "" : timeDifference(user.timezone);
    timeEl.textContent = time ? `${time} local time${difference ? ` · ${difference}` : ""}` : "";
    timeEl.hidden = !time;
    byTestId("profile-card-message").hidden = own;
    byTestId("profile-card-edit").hidden = !own;
    this.card.dataset.userId = this.cardUserId;
  }

  // Beside what was clicked, inside the window.
  place(anchor) {
    const card = this.card;
    const box = anchor && anchor.getBoundingClientRect ? anchor.getBoundingClientRect() : { left: 16, right: 16, top: 16, bottom: 16 };
    const width = card.offsetWidth;
    const height = card.offsetHeight;
    let left = box.right + CARD_GAP_PX;
    if (left + width > window.innerWidth - CARD_GAP_PX) left = Math.max(CARD_GAP_PX, box.left - width - CARD_GAP_PX);
    let top = Math.min(box.top, window.innerHeight - height - CARD_GAP_PX);
    top = Math.max(CARD_GAP_PX, top);
    card.style.left = `${Math.round(left)}px`;
    card.style.top = `${Math.round(top)}px`;
  }

  // An event or our own change: the card follows.
  userChanged(userId) {
    if (!this.card.hidden && userId === this.cardUserId) this.renderCard();
    if (this.store.me && userId === this.store.me.id && this.dialog.open && !this.picked) this.renderPreview();
  }

  // Opens the direct chat with them, made if there is none yet (the server returns the existing one).
  async message(userId) {
    if (!userId) return;
    this.closeCard();
    try {
      const existing = [...this.store.chats.values()].find((chat) => chat.type === "direct" && this.store.directPeer(chat) === userId);
      const chat = existing || await this.api.createChat({ type: "direct", name: "", description: "", members: [userId] });
      if (!existing) this.chats.addChat(chat);
      this.chats.navigate(chat.id);
    } catch (error) {
      toast(error.message, { error: true });
    }
  }

  // --- one's own settings -----------------------------------------------------------

  // "profile-form" or "password-form".
  showTab(panelId) {
    for (const tab of this.dialog.querySelectorAll("[role=tab]")) {
      const active = tab.getAttribute("aria-controls") === panelId;
      tab.setAttribute("aria-selected", String(active));
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !active;
    }
  }

  openSettings() {
    const { me } = this.store;
    if (!me) return;
    const form = byTestId("profile-form");
    form.elements.fullname.value = me.fullname || "";
    form.elements.username.value = me.username || "";
    form.elements.status_emoji.value = me.status_emoji || "";
    form.elements.status_text.value = me.status_text || "";
    const zones = form.elements.timezone;
    const zone = me.timezone || "";
    if (zone && ![...zones.options].some((option) => option.value === zone)) zones.append(h("option", { value: zone, text: zone }));
    zones.value = zone;
    // Not set yet: offer this browser's zone, saved with the rest.
    if (!zone) zones.value = browserZone() && [...zones.options].some((o) => o.value === browserZone()) ? browserZone() : "";
    form.elements.avatar.value = "";
    this.pick(null);
    showFormError(byTestId("profile-error"), null);
    const passwords = byTestId("password-form");
    passwords.reset();
    showFormError(byTestId("password-error"), null);
    byTestId("password-ok").textContent = "";
    this.showTab("profile-form");
    this.dialog.showModal();
    form.elements.fullname.focus();
  }

  pick(file) {
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = null;
    this.picked = file;
    if (file) this.previewUrl = URL.createObjectURL(file);
    this.renderPreview();
  }

  renderPreview() {
    const { me } = this.store;
    byTestId("avatar-preview").src = this.previewUrl || (me ? avatarSrc(me.avatar_url, 256) : "");
    byTestId("avatar-hint").textContent = this.picked ? `${this.picked.name}: saved with your changes` : "PNG, JPEG, GIF or WebP, up to 5 MB";
  }

  async saveProfile(form) {
    const { me } = this.store;
    const error = byTestId("profile-error");
    const button = byTestId("profile-save");
    showFormError(error, null);
    const fields = {};
    for (const name of ["fullname", "username", "status_emoji", "status_text", "timezone"]) {
      const value = form.elements[name].value.trim();
      if (value !== (me[name] || "")) fields[name] = value;
    }
    if (!Object.keys(fields).length && !this.picked) {
      this.dialog.close();
      return;
    }
    button.disabled = true;
    try {
      if (this.picked) {
        this.store.applyUser(await this.api.setAvatar(this.picked));
        this.pick(null);
        form.elements.avatar.value = "";
      }
      if (Object.keys(fields).length) this.store.applyUser(await this.api.updateMe(fields));
      this.views.renderAll();
      this.dialog.close();
      toast("Profile saved");
    } catch (failure) {
      showFormError(error, failure);
    } finally {
      button.disabled = false;
    }
  }

  async changePassword(form) {
    const error = byTestId("password-error");
    const ok = byTestId("password-ok");
    showFormError(error, null);
    ok.textContent = "";
    const current = form.elements.current_password.value;
    const next = form.elements.new_password.value;
    if (!current) return showFormError(error, { message: "Enter your current password" });
    const button = byTestId("password-submit");
    button.disabled = true;
    try {
      await this.api.changePassword(current, next);
      form.reset();
      ok.textContent = "Password changed. Every other session has been signed out.";
    } catch (failure) {
      showFormError(error, failure);
    } finally {
      button.disabled = false;
    }
  }
}
