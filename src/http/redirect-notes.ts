import { randomToken } from "../store/ids.js";

const TTL_MS = 10 * 60_000;
const MAX_NOTES = 1_000;

/**
 * Messages for a page a redirect lands on (a git host's callback that failed). The redirect
 * carries only an id; the page asks for the text. A link that puts text in the URL itself could
 * make Slipway's page say anything; an id can only show what Slipway wrote. Kept in memory for a
 * few minutes: a page that asks another server process, or too late, gets a generic message.
 */
export class RedirectNotes {
  private readonly notes = new Map<string, { message: string; until: number }>();

  put(message: string): string {
    const now = Date.now();
    for (const [id, note] of this.notes) if (note.until < now || this.notes.size >= MAX_NOTES) this.notes.delete(id);
    const id = randomToken();
    this.notes.set(id, { message, until: now + TTL_MS });
    return id;
  }

  get(id: string): string | undefined {
    const note = this.notes.get(id);
    return note && note.until >= Date.now() ? note.message : undefined;
  }
}
