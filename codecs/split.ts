/**
 * Cutting a NEM12 file or a Green Button feed into smaller files of the same format that decode to the
 * same readings, for transports with a message limit (`publish`). Pure; text in, parts out.
 */

/** A file cut into a fixed head and tail around independent records (each a string of whole lines or elements). */
export interface SplitText {
  /** Goes first in every part (NEM12: the `100` header; Green Button: the feed up to its first entry + the entries every block needs). */
  readonly head: string;
  readonly records: readonly string[];
  /** Goes last in every part (NEM12: `900`; Green Button: the rest of the feed after its last entry). */
  readonly tail: string;
}

/**
 * NEM12: the `100` header, then one record per `200` data stream with its `300`/`400`/`500` records; a
 * stream longer than `maxRecordBytes` is cut between days, each piece repeating its `200` line (a day and
 * its `400` records stay together). A reason string when the text is not a NEM12 file.
 */
export function splitNem12(text: string, maxRecordBytes: number): SplitText | string {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let i = 0;
  while (i < lines.length && lines[i]!.trim() === '') i++;
  if (!lines[i]?.startsWith('100,')) return 'no 100 header record';
  const head = `${lines[i]}\n`;
  const records: string[] = [];
  let streamLine: string | null = null;
  let days: string[][] = [];
  const flush = (): void => {
    if (streamLine === null) {
      // Records before any 200 (malformed): kept as they are, for the decoder to quarantine.
      for (const day of days) records.push(day.join('\n'));
      days = [];
      return;
    }
    let piece: string[] = [streamLine];
    let size = streamLine.length + 1;
    for (const day of days) {
      const bytes = day.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
      if (piece.length > 1 && size + bytes > maxRecordBytes) {
        records.push(piece.join('\n'));
        piece = [streamLine];
        size = streamLine.length + 1;
      }
      piece.push(...day);
      size += bytes;
    }
    records.push(piece.join('\n'));
    days = [];
  };
  for (i++; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const indicator = line.slice(0, 4);
    // The end record goes once, in every part's tail.
    if (indicator.startsWith('900')) continue;
    if (indicator === '200,') {
      flush();
      streamLine = line;
    } else if (indicator === '300,' || days.length === 0) days.push([line]);
    else days[days.length - 1]!.push(line);
  }
  flush();
  return { head, records, tail: '900\n' };
}

/**
 * Green Button: the feed's opening and every entry that is not an `IntervalBlock` (usage points, meter
 * readings, reading types, local time) in the head, one record per `IntervalBlock` entry, and the closing
 * `</feed>` in the tail. A reason string when no entries are found.
 */
export function splitGreenButton(text: string): SplitText | string {
  const entries: { start: number; end: number; block: boolean }[] = [];
  const open = /<(?:[A-Za-z_][\w.-]*:)?entry[\s>]/g;
  for (let m = open.exec(text); m !== null; m = open.exec(text)) {
    const prefix = /<([A-Za-z_][\w.-]*:)?entry/.exec(m[0])![1] ?? '';
    const close = `</${prefix}entry>`;
    const end = text.indexOf(close, m.index);
    if (end === -1) return 'an entry is not closed (truncated feed?)';
    const stop = end + close.length;
    const body = text.slice(m.index, stop);
    entries.push({
      start: m.index,
      end: stop,
      block: /<(?:[A-Za-z_][\w.-]*:)?IntervalBlock[\s>]/.test(body),
    });
    open.lastIndex = stop;
  }
  if (entries.length === 0) return 'no Atom entry found';
  const first = entries[0]!;
  const last = entries[entries.length - 1]!;
  const shared = entries.filter((e) => !e.block).map((e) => text.slice(e.start, e.end));
  const head = `${text.slice(0, first.start)}${shared.join('\n')}\n`;
  const records = entries.filter((e) => e.block).map((e) => text.slice(e.start, e.end));
  return { head, records, tail: `\n${text.slice(last.end)}` };
}
