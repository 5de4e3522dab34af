/**
 * One string object for a field text that recurs in a run of lines of one payload: the timestamps of a
 * gateway file.
 * A file lists each meter's readings of the hour in turn, so the same few timestamps come round in
 * the same order meter after meter; slicing each anew made a 32-byte string a reading that lived as
 * long as its batch, and gave `parseReading` a new string to read each time.
 */
/** Distinct texts remembered: a whole hour at the shortest interval (5 minutes) fits. */
const SLOTS = 16;
/**
 * New texts after which a payload whose texts do not recur (a week of one meter, then the next) is
 * sliced plainly, once they outnumber the texts found: a new text costs a copy and up to three compares.
 */
const MISSES_BEFORE_GIVING_UP = 32;

export class RecentTexts {
  private readonly texts: string[] = [];
  /** The slot matched last; the next line most likely holds the slot after it (or the same, or the first). */
  private last = 0;
  /** The slot the next new text replaces once every slot is taken. */
  private evict = 0;
  private hits = 0;
  private misses = 0;

  /** `text.slice(start, end)`, as the string object handed out before for an equal text when there was one. */
  take(text: string, start: number, end: number): string {
    if (this.misses >= MISSES_BEFORE_GIVING_UP && this.misses > this.hits) return text.slice(start, end);
    const texts = this.texts;
    const count = texts.length;
    if (count > 0) {
      const next = this.last + 1 < count ? this.last + 1 : 0;
      let found = -1;
      if (this.matches(texts[next]!, text, start, end)) found = next;
      else if (this.matches(texts[this.last]!, text, start, end)) found = this.last;
      else if (next !== 0 && this.matches(texts[0]!, text, start, end)) found = 0;
      if (found >= 0) {
        this.hits++;
        this.last = found;
        return texts[found]!;
      }
    }
    this.misses++;
    // A slice, which holds the payload's text alive: only as long as the readings of this payload.
    const own = text.slice(start, end);
    if (count < SLOTS) {
      texts.push(own);
      this.last = count;
    } else {
      texts[this.evict] = own;
      this.last = this.evict;
      this.evict = (this.evict + 1) % SLOTS;
    }
    return own;
  }

  private matches(candidate: string, text: string, start: number, end: number): boolean {
    return candidate.length === end - start && text.startsWith(candidate, start);
  }
}
