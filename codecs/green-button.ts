/**
 * Decoding a Green Button (NAESB REQ.21 ESPI) Atom feed into readings: pure, never throws.
 *
 * - The feed must be well-formed XML (a truncated download is not) with an Atom `feed` root holding ESPI
 *   content; otherwise the whole feed is refused with the parser's reason and line.
 * - Entries are tied together by their Atom links, as ESPI defines: a `MeterReading` at
 *   `…/UsagePoint/<u>/MeterReading/<m>` belongs to that `UsagePoint`, names its `ReadingType` in a `related`
 *   link, and its `IntervalBlock`s sit at `…/MeterReading/<m>/IntervalBlock/<b>`.
 * - Each electricity `UsagePoint` (`ServiceCategory` kind 0) is a meter, id = its path after `resource/`
 *   (`RetailCustomer/5/UsagePoint/1`), with `/MeterReading/<m>` appended when it has several readings.
 * - `ReadingType`: `uom` 72 = Wh (38 = W) scaled by 10^`powerOfTenMultiplier`; reactive or apparent units
 *   (VArh, VAh …) and others are quarantined per block; `intervalLength` (s) is the interval when an
 *   `IntervalReading` has no duration.
 * - Each `IntervalReading` (`timePeriod` start in epoch seconds, duration, `value`) is one reading at its
 *   UTC start; `ReadingQuality` codes become flags: 8, 9, 12 (estimated, interpolated, projected)
 *   `source_estimated`; 7, 11, 13 (manually edited, derived, mixed) `source_substituted`; others none.
 * - `LocalTimeParameters` linked from the usage point are kept on its meter description.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { RawReading, SourceQualityFlag } from '../schemas/reading.js';
import {
  type CodecOptions,
  type CodecRecordFailure,
  type CodecResult,
  type FileMeter,
  isoSeconds,
  type LocalTimeParameters,
} from './types.js';

export const ESPI_NAMESPACE = 'http://naesb.org/espi';

/** How far into a payload the ESPI namespace is looked for (sample feeds open with a long comment). */
const SNIFF_CHARS = 64 * 1024;

/** True when the text is XML naming the ESPI namespace near its start. */
export function looksLikeGreenButton(text: string): boolean {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (i < text.length && text.charCodeAt(i) <= 32) i++;
  if (text.charCodeAt(i) !== 60 /* < */) return false;
  return text.slice(i, i + SNIFF_CHARS).includes(ESPI_NAMESPACE);
}

const UNIT_OF_UOM: Readonly<Record<string, string>> = { '72': 'Wh', '38': 'W' };
const NON_ACTIVE_UOM: Readonly<Record<string, string>> = {
  '73': 'VArh',
  '71': 'VAh',
  '63': 'VAr',
  '61': 'VA',
};
const ESTIMATED_CODES = new Set(['8', '9', '12']);
const SUBSTITUTED_CODES = new Set(['7', '11', '13']);
const ESTIMATED: readonly SourceQualityFlag[] = Object.freeze(['source_estimated'] as SourceQualityFlag[]);
const SUBSTITUTED: readonly SourceQualityFlag[] = Object.freeze([
  'source_substituted',
] as SourceQualityFlag[]);

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  // ESPI content is numbers and links: no entity is needed, so none is expanded (no entity-expansion bombs).
  processEntities: false,
  // No `isArray` callback: it costs a path match per element; `asArray` below takes one or many alike.
});

type Node = Record<string, unknown>;

interface Entry {
  readonly self: string;
  readonly up: string;
  readonly related: readonly string[];
  readonly content: Node;
  readonly title: string;
}

interface ReadingTypeInfo {
  readonly uom: string;
  readonly multiplier: number;
  readonly intervalSeconds: number | null;
}

export function decodeGreenButton(text: string, options: CodecOptions): CodecResult {
  const { source, receivedAt } = options;
  const refuse = (reason: string): CodecResult => ({ ok: false, code: 'green_button_feed', reason });
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    const { msg, line, col } = valid.err;
    return refuse(
      `Green Button feed is not well-formed XML (truncated?): ${msg} at line ${line}, column ${col}`,
    );
  }
  let doc: Node;
  try {
    doc = parser.parse(text) as Node;
  } catch (error) {
    return refuse(
      `Green Button feed cannot be parsed: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const feed = asNode(doc.feed);
  if (feed === null) return refuse('Green Button feed has no Atom <feed> root');
  const entries: Entry[] = [];
  for (const raw of asArray(feed.entry)) {
    const node = asNode(raw);
    if (node === null) continue;
    let self = '';
    let up = '';
    const related: string[] = [];
    for (const l of asArray(node.link)) {
      const link = asNode(l);
      if (link === null) continue;
      const href = String(link['@_href'] ?? '');
      const rel = String(link['@_rel'] ?? '');
      if (rel === 'self') self = href;
      else if (rel === 'up') up = href;
      else if (rel === 'related') related.push(href);
    }
    entries.push({ self, up, related, content: asNode(node.content) ?? {}, title: text_(node.title) });
  }

  const usagePoints = new Map<string, Entry>();
  const meterReadings = new Map<string, Entry>();
  const readingTypes = new Map<string, ReadingTypeInfo>();
  const localTimes = new Map<string, LocalTimeParameters>();
  const blocks: Entry[] = [];
  for (const e of entries) {
    const c = e.content;
    if ('UsagePoint' in c) usagePoints.set(e.self, e);
    else if ('MeterReading' in c) meterReadings.set(e.self, e);
    else if ('ReadingType' in c) {
      const rt = asNode(c.ReadingType) ?? {};
      const length = Number(text_(rt.intervalLength));
      readingTypes.set(e.self, {
        uom: text_(rt.uom),
        multiplier: Number(text_(rt.powerOfTenMultiplier) || '0'),
        intervalSeconds: Number.isFinite(length) && length > 0 ? length : null,
      });
    } else if ('LocalTimeParameters' in c) {
      const lt = asNode(c.LocalTimeParameters) ?? {};
      localTimes.set(e.self, {
        tzOffsetSeconds: Number(text_(lt.tzOffset) || '0'),
        dstOffsetSeconds: Number(text_(lt.dstOffset) || '0'),
        dstStartRule: text_(lt.dstStartRule),
        dstEndRule: text_(lt.dstEndRule),
      });
    } else if ('IntervalBlock' in c) blocks.push(e);
  }
  if (usagePoints.size === 0 && blocks.length === 0) {
    return refuse('Green Button feed holds no UsagePoint and no IntervalBlock entry');
  }

  const readingsOfUsagePoint = new Map<string, number>();
  for (const href of meterReadings.keys()) {
    const up = prefixBefore(href, '/MeterReading');
    readingsOfUsagePoint.set(up, (readingsOfUsagePoint.get(up) ?? 0) + 1);
  }

  const readings: RawReading[] = [];
  const failures: CodecRecordFailure[] = [];
  const meters = new Map<string, FileMeter>();
  let recordNo = 0;
  for (const block of blocks) {
    const blockId = resourcePath(block.self) || `entry ${entries.indexOf(block) + 1}`;
    const meterReadingHref = prefixBefore(block.self || block.up, '/IntervalBlock');
    const meterReading = meterReadings.get(meterReadingHref);
    const usagePointHref = prefixBefore(meterReadingHref, '/MeterReading');
    const usagePoint = usagePoints.get(usagePointHref);
    const blockNodes = asArray(block.content.IntervalBlock);
    const intervalReadings = blockNodes.flatMap((b) => asArray(asNode(b)?.IntervalReading));
    const failBlock = (code: CodecRecordFailure['code'], reason: string, meterId = ''): void => {
      recordNo++;
      failures.push({
        code,
        reason: `${reason} (${intervalReadings.length} interval readings not stored)`,
        raw: block.self,
        meterId,
        line: recordNo,
        source: `${source}#${blockId}`,
      });
    };
    if (meterReading === undefined || usagePoint === undefined) {
      failBlock(
        'green_button_reading',
        `IntervalBlock ${blockId} belongs to no MeterReading and UsagePoint in the feed`,
      );
      continue;
    }
    const several = (readingsOfUsagePoint.get(usagePointHref) ?? 0) > 1;
    const meterId = resourcePath(several ? meterReadingHref : usagePointHref);
    const category = text_(asNode(asNode(usagePoint.content.UsagePoint)?.ServiceCategory)?.kind);
    if (category !== '0') {
      failBlock(
        'green_button_unit',
        `UsagePoint ${meterId} is not electricity (ServiceCategory kind ${category || 'missing'})`,
        meterId,
      );
      continue;
    }
    const typeHref = meterReading.related.find((h) => h.includes('/ReadingType'));
    const type = typeHref === undefined ? undefined : readingTypes.get(typeHref);
    if (type === undefined) {
      failBlock('green_button_reading', `MeterReading of ${meterId} has no ReadingType in the feed`, meterId);
      continue;
    }
    const unit = UNIT_OF_UOM[type.uom];
    if (unit === undefined) {
      const other = NON_ACTIVE_UOM[type.uom];
      failBlock(
        'green_button_unit',
        other === undefined
          ? `ReadingType uom ${type.uom || 'missing'} of ${meterId} is not an active-energy or power unit (72 Wh, 38 W); not stored`
          : `ReadingType uom ${type.uom} (${other}) of ${meterId} is reactive or apparent, not active energy; not stored`,
        meterId,
      );
      continue;
    }
    if (!Number.isInteger(type.multiplier) || Math.abs(type.multiplier) > 12) {
      failBlock(
        'green_button_reading',
        `ReadingType powerOfTenMultiplier of ${meterId} is not a small integer`,
        meterId,
      );
      continue;
    }
    const localHref = usagePoint.related.find((h) => h.includes('/LocalTimeParameters'));
    const localTime = localHref === undefined ? undefined : localTimes.get(localHref);
    let index = 0;
    for (const ir of intervalReadings) {
      index++;
      recordNo++;
      const node = asNode(ir) ?? {};
      const period = asNode(node.timePeriod) ?? {};
      const startText = text_(period.start);
      const durationText = text_(period.duration);
      const valueText = text_(node.value);
      const recordSource = `${source}#${blockId}/IntervalReading[${index}]`;
      const start = Number(startText);
      const duration = durationText === '' ? (type.intervalSeconds ?? Number.NaN) : Number(durationText);
      const problems: string[] = [];
      if (!/^-?\d+$/.test(startText))
        problems.push(`timePeriod start ${JSON.stringify(startText)} is not epoch seconds`);
      if (!(Number.isInteger(duration) && duration > 0))
        problems.push(`no positive duration (${JSON.stringify(durationText)})`);
      if (!/^-?\d+$/.test(valueText)) problems.push(`value ${JSON.stringify(valueText)} is not an integer`);
      if (problems.length > 0) {
        failures.push({
          code: 'green_button_reading',
          reason: `IntervalReading ${index} of ${blockId}: ${problems.join('; ')}`,
          raw: `start=${startText},duration=${durationText},value=${valueText}`,
          meterId,
          line: recordNo,
          source: recordSource,
        });
        continue;
      }
      const timestamp = isoSeconds(start * 1000);
      const value = scaled(valueText, type.multiplier);
      const flags = qualityFlags(node.ReadingQuality);
      const intervalMinutes = duration / 60;
      readings.push({
        meterId,
        timestamp,
        value,
        unit,
        raw: `${meterId},${timestamp},${value},${unit}`,
        source: recordSource,
        receivedAt,
        intervalMinutes,
        ...(flags === undefined ? {} : { sourceFlags: flags }),
      });
      if (!meters.has(meterId)) {
        meters.set(meterId, {
          meterId,
          format: 'green_button',
          group: resourcePath(usagePointHref),
          intervalMinutes: (type.intervalSeconds ?? duration) / 60,
          unit,
          ...(localTime === undefined ? {} : { localTime }),
        });
      }
    }
  }
  return { ok: true, readings, failures, meters: [...meters.values()] };
}

function qualityFlags(qualities: unknown): readonly SourceQualityFlag[] | undefined {
  let flags: readonly SourceQualityFlag[] | undefined;
  for (const q of asArray(qualities)) {
    const code = text_(asNode(q)?.quality ?? q);
    if (SUBSTITUTED_CODES.has(code)) return SUBSTITUTED;
    if (ESTIMATED_CODES.has(code)) flags = ESTIMATED;
  }
  return flags;
}

/** `value × 10^multiplier` as a decimal string (division keeps 450 × 10^-3 exactly 0.45). */
function scaled(value: string, multiplier: number): string {
  if (multiplier === 0) return value;
  const v = Number(value);
  return String(multiplier > 0 ? v * 10 ** multiplier : v / 10 ** -multiplier);
}

/** The part of an ESPI href after `/resource/` (the whole href when it has none). */
function resourcePath(href: string): string {
  const at = href.indexOf('/resource/');
  return at === -1 ? href : href.slice(at + '/resource/'.length);
}

/** `href` up to (not including) the last occurrence of `marker`, or `href` when absent. */
function prefixBefore(href: string, marker: string): string {
  const at = href.lastIndexOf(marker);
  return at === -1 ? href : href.slice(0, at);
}

function asNode(v: unknown): Node | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Node) : null;
}

function asArray(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

/** Text of an element (`#text` when it also has attributes); empty when absent. */
function text_(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v.trim();
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const node = asNode(v);
  if (node !== null && '#text' in node) return String(node['#text']).trim();
  return '';
}
