// One chat's loaded messages: a contiguous seq range, deduplicated by id and by seq; no DOM here.

// What else a message shows that changes without an edit: reactions, pin, thread counts, rendered text.
function marks(message) {
  const reactions = (message.reactions || []).map((r) => `${r.emoji}:${r.count}:${r.me ? 1 : 0}:${(r.user_ids || []).join(",")}`).join(";");
  return [reactions, Boolean(message.pinned), message.reply_count || 0, message.last_reply_at || "", message.content_html || ""].join("|");
}

export class Timeline {
  constructor() {
    this.byId = new Map();
    this.bySeq = new Map();
    this.hasMore = true;
    this.loaded = false;
    this.loadingOlder = false;
    // The highest seq known to be covered by messages kept elsewhere (a roots-only listing skips its replies).
    this.seenSeq = 0;
  }

  // A seq this timeline will never hold (a reply, shown in its thread) but has accounted for.
  noteSeq(seq) {
    if (Number.isInteger(seq) && seq > this.seenSeq) this.seenSeq = seq;
  }

  get minSeq() {
    let min = Infinity;
    for (const seq of this.bySeq.keys()) min = Math.min(min, seq);
    return min === Infinity ? null : min;
  }

  get maxSeq() {
    let max = this.seenSeq;
    for (const seq of this.bySeq.keys()) max = Math.max(max, seq);
    return max;
  }

  // Adds or updates one message; returns true when something visible changed.
  upsert(message) {
    const existing = this.byId.get(message.id) || this.bySeq.get(message.seq);
    if (existing) {
      if (existing.id !== message.id) return false; // a seq is never reused; ignore the impostor
      if (existing.deleted && !message.deleted) return false; // deletion is final
      if (!message.deleted && existing.edited_at && (!message.edited_at || message.edited_at < existing.edited_at)) {
        return false; // an older version arriving late
      }
      if (existing.content === message.content && existing.deleted === message.deleted && existing.edited_at === message.edited_at
        && marks(existing) === marks({ ...existing, ...message })) {
        return false;
      }
    }
    const merged = { ...existing, ...message };
    this.byId.set(merged.id, merged);
    this.bySeq.set(merged.seq, merged);
    return true;
  }

  markDeleted({ id, seq }) {
    const existing = this.byId.get(id) || this.bySeq.get(seq);
    if (!existing || existing.deleted) return false;
    return this.upsert({ ...existing, deleted: true, content: "" });
  }

  sorted() {
    return [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
  }
}
