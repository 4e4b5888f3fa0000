// The signed-in session in localStorage, shared by every tab: tokens, who we are, when the access token expires.

export const SESSION_KEY = "fechatter.session";

// What the auth endpoints answer, plus the wall-clock time the access token expires.
export function loadSession() {
  try {
    const session = JSON.parse(localStorage.getItem(SESSION_KEY));
    return session && session.access_token && session.refresh_token ? session : null;
  } catch {
    return null;
  }
}

export function saveSession(answer, previous = null) {
  const session = {
    access_token: answer.access_token,
    refresh_token: answer.refresh_token,
    expires_in: answer.expires_in,
    // Refresh answers may not repeat user/workspace; keep the ones we have.
    user: answer.user || (previous && previous.user) || null,
    workspace: answer.workspace || (previous && previous.workspace) || null,
    expires_at: Date.now() + Number(answer.expires_in || 900) * 1000,
  };
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

export function clearSession() {
  localStorage.removeItem(SESSION_KEY);
}

// How long before expiry we refresh: a quarter of the lifetime, at most one minute.
export function refreshLeadMs(session) {
  const lifetime = Number(session.expires_in || 900) * 1000;
  return Math.min(60_000, lifetime / 4);
}
