// REST client: bearer tokens (kept by tokens.js) refreshed before they expire and once on a 401.

import { clearSession, loadSession, refreshLeadMs, saveSession, SESSION_KEY } from "./tokens.js";

const REFRESH_LOCK = "fechatter.refresh";
// The largest page the listings give; without `limit` they answer at most 1,000 rows.
const LIST_PAGE = 200;

export class ApiError extends Error {
  constructor(status, body, retryAfter = null) {
    const error = (body && body.error) || {};
    super(error.message || `Request failed (${status || "network error"})`);
    this.status = status;
    this.code = error.code || (status ? `http_${status}` : "network_error");
    this.fields = error.fields || null;
    this.retryAfter = retryAfter;
  }

  // Worth sending again with the same idempotency key.
  get transient() {
    return this.status === 0 || this.status === 429 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

async function readBody(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export class Api {
  // onSession(session) after sign-in/refresh; onSignedOut(reason) when the session is gone.
  constructor({ onSession = () => {}, onSignedOut = () => {} } = {}) {
    this.onSession = onSession;
    this.onSignedOut = onSignedOut;
    this.refreshing = null;
    this.refreshTimer = null;
    // Another tab may rotate the tokens; follow it instead of presenting a rotated token.
    window.addEventListener("storage", (event) => {
      if (event.key !== SESSION_KEY) return;
      const session = loadSession();
      if (session) {
        this.scheduleRefresh();
        this.onSession(session);
      } else {
        this.stopRefreshing();
        this.onSignedOut("signed_out_elsewhere");
      }
    });
  }

  get session() {
    return loadSession();
  }

  get token() {
    const session = loadSession();
    return session ? session.access_token : null;
  }

  // --- auth -------------------------------------------------------------

  async signup(fields) {
    return this.startSession(await this.send("POST", "/api/signup", fields, { auth: false }));
  }

  async signin(email, password) {
    return this.startSession(await this.send("POST", "/api/signin", { email, password }, { auth: false }));
  }

  async logout() {
    const session = loadSession();
    this.stopRefreshing();
    if (session) {
      try {
        await this.send("POST", "/api/logout", { refresh_token: session.refresh_token }, { retryOn401: false });
      } catch {
        // The tokens are forgotten below either way; the server expires them on its own.
      }
    }
    clearSession();
    this.onSignedOut("logout");
  }

  startSession(answer) {
    const session = saveSession(answer);
    this.scheduleRefresh();
    this.onSession(session);
    return session;
  }

  stopRefreshing() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }

  scheduleRefresh() {
    this.stopRefreshing();
    const session = loadSession();
    if (!session) return;
    const delay = Math.max(1000, session.expires_at - refreshLeadMs(session) - Date.now());
    this.refreshTimer = setTimeout(() => {
      this.refresh({ ifOlderThan: session.access_token }).catch(() => {
        // A transient failure: try again shortly; a 401 already signed us out.
        if (loadSession()) this.refreshTimer = setTimeout(() => this.scheduleRefresh(), 5000);
      });
    }, delay);
  }

  // A valid access token, refreshing first when it is about to expire.
  async freshToken() {
    const session = loadSession();
    if (!session) throw new ApiError(401, { error: { code: "signed_out", message: "Please sign in." } });
    if (session.expires_at - Date.now() > refreshLeadMs(session) / 2) return session.access_token;
    return (await this.refresh({ ifOlderThan: session.access_token })).access_token;
  }

  // Rotates the refresh token once, even with several callers or tabs at the same time.
  // ifOlderThan: the access token the caller saw; if storage already holds a newer one, use it.
  refresh({ ifOlderThan = null } = {}) {
    if (!this.refreshing) {
      const run = () => this.rotate(ifOlderThan);
      const locked = navigator.locks ? navigator.locks.request(REFRESH_LOCK, run) : run();
      this.refreshing = locked.finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async rotate(ifOlderThan) {
    const session = loadSession();
    if (!session) throw new ApiError(401, { error: { code: "signed_out", message: "Please sign in." } });
    if (ifOlderThan && session.access_token !== ifOlderThan && session.expires_at > Date.now() + 5000) {
      this.scheduleRefresh();
      this.onSession(session);
      return session;
    }
    let answer;
    try {
      answer = await this.send("POST", "/api/refresh", { refresh_token: session.refresh_token }, { auth: false });
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        clearSession();
        this.stopRefreshing();
        this.onSignedOut("expired");
      }
      throw error;
    }
    const next = saveSession(answer, session);
    this.scheduleRefresh();
    this.onSession(next);
    return next;
  }

  // --- transport ----------------------------------------------------------

  // url: same-origin path or an absolute URL (the notify role).
  async send(method, url, body = undefined, { auth = true, retryOn401 = true } = {}) {
    const headers = { Accept: "application/json" };
    // A FormData body (an upload) sets its own multipart Content-Type.
    const form = typeof FormData !== "undefined" && body instanceof FormData;
    if (body !== undefined && !form) headers["Content-Type"] = "application/json";
    let usedToken = null;
    if (auth) {
      usedToken = await this.freshToken();
      headers.Authorization = `Bearer ${usedToken}`;
    }
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined || form ? body : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, { error: { code: "network_error", message: "Cannot reach the server. Check your connection." } });
    }
    if (response.status === 401 && auth && retryOn401) {
      await this.refresh({ ifOlderThan: usedToken });
      return this.send(method, url, body, { auth, retryOn401: false });
    }
    const data = await readBody(response);
    if (!response.ok) {
      if (response.status === 401 && auth) {
        clearSession();
        this.stopRefreshing();
        this.onSignedOut("expired");
      }
      throw new ApiError(response.status, data, response.headers.get("Retry-After"));
    }
    return data;
  }

  get(url) {
    return this.send("GET", url);
  }

  post(url, body = {}) {
    return this.send("POST", url, body);
  }

  patch(url, body) {
    return this.send("PATCH", url, body);
  }

  del(url) {
    return this.send("DELETE", url);
  }

  // Every row of a paged listing ({[key]: rows, next_cursor}), one page after the other.
  async everyPage(path, key) {
    const rows = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ limit: String(LIST_PAGE) });
      if (cursor) query.set("cursor", cursor);
      const page = (await this.get(`${path}?${query}`)) || {};
      const items = page[key] || [];
      rows.push(...items);
      cursor = items.length ? page.next_cursor : null;
    } while (cursor);
    return rows;
  }

  // --- resources ----------------------------------------------------------

  me() {
    return this.get("/api/users/me");
  }

  users() {
    return this.everyPage("/api/users", "users");
  }

  workspace() {
    return this.get("/api/workspace");
  }

  chats() {
    return this.get("/api/chats");
  }

  chat(chatId) {
    return this.get(`/api/chats/${encodeURIComponent(chatId)}`);
  }

  createChat({ type, name, description, members }) {
    const body = { type, members };
    if (name) body.name = name;
    if (description) body.description = description;
    return this.post("/api/chats", body);
  }

  // Our own notification settings for a chat: {notify?: "all"|"mentions"|"none", muted?: bool}.
  chatSettings(chatId, changes) {
    return this.patch(`/api/chats/${encodeURIComponent(chatId)}/settings`, changes);
  }

  joinChat(chatId) {
    return this.post(`/api/chats/${encodeURIComponent(chatId)}/join`);
  }

  leaveChat(chatId, userId) {
    return this.del(`/api/chats/${encodeURIComponent(chatId)}/members/${encodeURIComponent(userId)}`);
  }

  // Channel administration (contract section 15): {name?, description?, topic?, default?}.
  updateChat(chatId, changes) {
    return this.patch(`/api/chats/${encodeURIComponent(chatId)}`, changes);
  }

  deleteChat(chatId) {
    return this.del(`/api/chats/${encodeURIComponent(chatId)}`);
  }

  archiveChat(chatId, archived = true) {
    return this.post(`/api/chats/${encodeURIComponent(chatId)}/${archived ? "archive" : "unarchive"}`);
  }

  // role: "admin" | "member" | "owner" (giving "owner" transfers the ownership).
  setRole(chatId, userId, role) {
    return this.patch(`/api/chats/${encodeURIComponent(chatId)}/members/${encodeURIComponent(userId)}`, { role });
  }

  members(chatId) {
    return this.everyPage(`/api/chats/${encodeURIComponent(chatId)}/members`, "members");
  }

  addMembers(chatId, userIds) {
    return this.post(`/api/chats/${encodeURIComponent(chatId)}/members`, { user_ids: userIds });
  }

  // Not in the contract (section 5) yet: the workspace's public channels the caller has not joined.
  publicChannels() {
    return this.everyPage("/api/channels/public", "channels");
  }

  // threads: "roots" lists only roots and plain messages (replies live in their thread).
  messages(chatId, { before = null, after = null, limit = 50, threads = null } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before !== null) query.set("before", String(before));
    if (after !== null) query.set("after", String(after));
    if (threads) query.set("threads", threads);
    return this.get(`/api/chats/${encodeURIComponent(chatId)}/messages?${query}`);
  }

  // replyTo: a message of the chat; the reply goes in its thread (contract section 12).
  sendMessage(chatId, content, idempotencyKey, replyTo = null) {
    const body = { content, idempotency_key: idempotencyKey };
    if (replyTo) body.reply_to = replyTo;
    return this.post(`/api/chats/${encodeURIComponent(chatId)}/messages`, body);
  }

  // --- threads, reactions, pins, edit history (contract section 12) ---------------

  replies(chatId, messageId, { after = 0, limit = 200 } = {}) {
    const query = new URLSearchParams({ after: String(after), limit: String(limit) });
    return this.get(`/api/chats/${encodeURIComponent(chatId)}/messages/${encodeURIComponent(messageId)}/replies?${query}`);
  }

  history(chatId, messageId) {
    return this.get(`/api/chats/${encodeURIComponent(chatId)}/messages/${encodeURIComponent(messageId)}/history`);
  }

  react(chatId, messageId, emoji, on = true) {
    const path = `/api/chats/${encodeURIComponent(chatId)}/messages/${encodeURIComponent(messageId)}/reactions/${encodeURIComponent(emoji)}`;
    return this.send(on ? "PUT" : "DELETE", path);
  }

  pin(chatId, messageId, on = true) {
    return this.send(on ? "PUT" : "DELETE", `/api/chats/${encodeURIComponent(chatId)}/pins/${encodeURIComponent(messageId)}`);
  }

  // Every pin of a chat, newest first (pages of 100, the route's largest).
  async pins(chatId) {
    const rows = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ limit: "100" });
      if (cursor) query.set("cursor", cursor);
      const page = (await this.get(`/api/chats/${encodeURIComponent(chatId)}/pins?${query}`)) || {};
      rows.push(...(page.pins || []));
      cursor = (page.pins || []).length ? page.next_cursor : null;
    } while (cursor && rows.length < 1000);
    return rows;
  }

  editMessage(chatId, messageId, content) {
    return this.patch(`/api/chats/${encodeURIComponent(chatId)}/messages/${encodeURIComponent(messageId)}`, { content });
  }

  deleteMessage(chatId, messageId) {
    return this.del(`/api/chats/${encodeURIComponent(chatId)}/messages/${encodeURIComponent(messageId)}`);
  }

  markRead(chatId, seq) {
    return this.post(`/api/chats/${encodeURIComponent(chatId)}/read`, { seq });
  }

  typing(chatId) {
    return this.post(`/api/chats/${encodeURIComponent(chatId)}/typing`);
  }

  // --- people -------------------------------------------------------------

  user(userId) {
    return this.get(`/api/users/${encodeURIComponent(userId)}`);
  }

  updateMe(fields) {
    return this.patch("/api/users/me", fields);
  }

  setAvatar(file) {
    const form = new FormData();
    form.append("file", file);
    return this.send("PUT", "/api/users/me/avatar", form);
  }

  // Every other session ends; ours keeps its refresh token, traded at once for an access token
  // issued after the change (the one we hold stopped working with it).
  async changePassword(currentPassword, newPassword) {
    const session = loadSession();
    await this.post("/api/users/me/password", {
      current_password: currentPassword,
      new_password: newPassword,
      refresh_token: session ? session.refresh_token : undefined,
    });
    return this.refresh();
  }

  async logoutAll() {
    this.stopRefreshing();
    try {
      await this.send("POST", "/api/logout-all", undefined, { retryOn401: false });
    } finally {
      clearSession();
      this.onSignedOut("logout");
    }
  }

  onlineUsers(notifyUrl, chatId = null) {
    const query = chatId ? `?chat_id=${encodeURIComponent(chatId)}` : "";
    return this.get(`${notifyUrl}/api/online-users${query}`);
  }
}
