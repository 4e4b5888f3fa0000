// The words of a system message (kind "system": joined, left, renamed…), named from the people we know now.

function listNames(names) {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

export function isSystem(message) {
  return Boolean(message && message.kind === "system" && message.system);
}

// "Alice renamed the channel to #launch"; `withActor: false` leaves the actor's name out.
export function systemText(store, message, { withActor = true } = {}) {
  const system = message.system || {};
  const chat = store.chats.get(message.chat_id) || store.preview;
  const channel = chat && (chat.type === "public_channel" || chat.type === "private_channel");
  const what = channel ? "the channel" : "the conversation";
  const actor = store.isMine(message) ? "You" : store.userName(message.sender_id);
  const people = listNames((system.user_ids || []).map((id) => (store.me && id === store.me.id ? "you" : store.userName(id))));
  const text = {
    joined: `joined ${what}`,
    left: `left ${what}`,
    added: `added ${people}`,
    removed: `removed ${people}`,
    renamed: `renamed ${what} to ${channel ? "#" : ""}${system.name || ""}`,
    topic: system.name ? `set the topic: ${system.name}` : "cleared the topic",
    archived: `archived ${what}`,
    unarchived: `unarchived ${what}`,
  }[system.type] || message.content || "";
  return withActor ? `${actor} ${text}` : text;
}
