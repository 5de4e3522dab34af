/**
 * Review that acts: approve or reject a quarantined record, override a reading's score, redrive a dead
 * letter, list what awaits a decision, and raise the backlog alert. Shared by the console and by
 * `greenstream review` / `greenstream dlq`. Every decision is one `review_log` row; a decision already
 * taken, or one about a record that is not there, is refused with a `ReviewRefusedError` and writes nothing.
 *
 * An approved record re-enters as a correction through the hot store's own tables and encoders: its
 * reading replaces the row at its key (`meter_id`, `ts`; the `missing` row a quarantined interval left, or
 * the previous value), then its meter-hour of `hourly_consumption` and its day of `daily_peaks` are
 * recomputed from the stored rows by the pipeline's rules. What is not recomputed is listed in the README
 * ("Review"): the lake, faults, alerts, and an hour left without any reading.
 */

import type { Dirent } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, sep } from 'node:path';
import { of } from 'rxjs';
import { sql } from '../codecs/sql.js';
import type { HotStore } from '../connectors/clickhouse.js';
import { GreenStreamError } from '../core/errors.js';
import type { FlowEvent } from '../core/index.js';
import { classifyPeak } from '../operators/classify-peak.js';
import { canonicalTimestamp, recordId } from '../operators/record-id.js';
import { type RuleProfile, resolveRuleProfile } from '../operators/rule-profile.js';
import { gradeOf, tierOf } from '../operators/score-quality.js';
import { PIPELINE_VERSION } from '../pipelines/job.js';
import { decodeStoredRow, type StoredRow } from '../schemas/clickhouse.js';
import type { Alert, DailyPeak, HourlyConsumption, Reading, ReadingFlag } from '../schemas/reading.js';
import { REVIEW_LOG_TABLE, type ReviewAction, type ReviewTarget } from '../schemas/review.js';
import type { ConsoleStore } from './store.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Records waiting longer than this for a decision raise the backlog alert. */
export const REVIEW_DEADLINE_MS = DAY;

/** A review that cannot be taken as asked: nothing was written. */
export class ReviewRefusedError extends GreenStreamError<{ readonly target: string; readonly id: string }> {
  override readonly name = 'ReviewRefusedError';
  constructor(message: string, context: { readonly target: string; readonly id: string }) {
    super(message, { retryable: false, context });
  }
}

export interface Reviewer {
  readonly reviewer: string;
  readonly reason: string;
  /** Epoch ms of the decision (the clock, unless a test says otherwise). */
  readonly now?: number;
}

export interface ReviewOutcome {
  readonly message: string;
  readonly before: unknown;
  readonly after: unknown;
}

/** A quarantined record as the review lists it. */
export interface QuarantineItem {
  readonly id: string;
  readonly meter_id: string;
  readonly ts: number | null;
  readonly raw: string;
  readonly reasons: readonly string[];
  readonly source: string;
  readonly quarantined_at: number;
  /** The decision taken, if any: `approve` or `reject`. */
  readonly decision: string;
  readonly decided_by: string;
}

export interface QuarantineFilter {
  readonly meter?: string;
  /** A reason or its prefix (`invalid_unit` matches `invalid_unit:xyz`). */
  readonly reason?: string;
  /** `undecided` (default), `decided` or `all`. */
  readonly decision?: 'undecided' | 'decided' | 'all';
  readonly limit?: number;
}

function writable(store: ConsoleStore): HotStore {
  if (store.hot === undefined)
    throw new ReviewRefusedError(
      'reviews need the hot store itself: this console reads a running worker (read-only); stop the worker or use a ClickHouse server',
      { target: '', id: '' },
    );
  return store.hot;
}

const QUARANTINE_ID = /^\d{1,20}$/;

function checkId(id: string): void {
  if (!QUARANTINE_ID.test(id))
    throw new ReviewRefusedError(`"${id}" is not a quarantine id (digits, as listed)`, {
      target: 'quarantine',
      id,
    });
}

/** The latest decision per quarantine id, as a subquery. */
function decisions(store: ConsoleStore) {
  return sql`SELECT target_id AS id, argMax(action, reviewed_at) AS decision, argMax(reviewer, reviewed_at) AS decided_by
    FROM ${store.table(REVIEW_LOG_TABLE)} FINAL
    WHERE target = 'quarantine' AND action IN ('approve', 'reject')
    GROUP BY target_id`;
}

/** Quarantined records with their decision, newest first. */
export async function listQuarantine(
  store: ConsoleStore,
  filter: QuarantineFilter = {},
): Promise<QuarantineItem[]> {
  const meter = filter.meter === undefined || filter.meter === '' ? sql`1` : sql`meter_id = ${filter.meter}`;
  const reason =
    filter.reason === undefined || filter.reason === ''
      ? sql`1`
      : sql`arrayExists(r -> r = ${filter.reason} OR position(r, ${`${filter.reason}:`}) = 1, reasons)`;
  const decision =
    filter.decision === 'all'
      ? sql`1`
      : filter.decision === 'decided'
        ? sql`decision != ''`
        : sql`decision = ''`;
  const limit = Math.max(1, Math.min(filter.limit ?? 200, 10_000));
  const rows = await store.query<Omit<QuarantineItem, 'reasons'> & { reasons: string[] }>(sql`
    SELECT id, meter_id, ts, raw, reasons, source, quarantined_at, decision, decided_by FROM (
      SELECT toString(cityHash64(source, raw)) AS id, meter_id, toUnixTimestamp(ts) AS ts, raw, reasons, source,
        toUnixTimestamp(quarantined_at) AS quarantined_at
      FROM ${store.table('quarantine')} FINAL
      WHERE ${meter} AND ${reason}
    ) AS q ANY LEFT JOIN (${decisions(store)}) AS d USING id
    WHERE ${decision}
    ORDER BY quarantined_at DESC, id
    LIMIT ${limit}`);
  return rows.map((r) => ({
    ...r,
    ts: r.ts === null ? null : Number(r.ts) * 1000,
    quarantined_at: Number(r.quarantined_at) * 1000,
    decision: r.decision ?? '',
    decided_by: r.decided_by ?? '',
  }));
}

async function quarantineRow(store: ConsoleStore, id: string): Promise<QuarantineItem> {
  checkId(id);
  const rows = await store.query<{
    meter_id: string;
    ts: number | null;
    raw: string;
    reasons: string[];
    source: string;
    quarantined_at: number;
  }>(sql`SELECT meter_id, toUnixTimestamp(ts) AS ts, raw, reasons, source, toUnixTimestamp(quarantined_at) AS quarantined_at
    FROM ${store.table('quarantine')} FINAL WHERE cityHash64(source, raw) = toUInt64(${id}) LIMIT 1`);
  const row = rows[0];
  if (row === undefined)
    throw new ReviewRefusedError(`no quarantined record ${id}: it does not exist (any more)`, {
      target: 'quarantine',
      id,
    });
  const taken = await store.query<{ action: string; reviewer: string; at: number }>(
    sql`SELECT action, reviewer, toUnixTimestamp(reviewed_at) AS at FROM ${store.table(REVIEW_LOG_TABLE)} FINAL
      WHERE target = 'quarantine' AND target_id = ${id} AND action IN ('approve', 'reject')
      ORDER BY reviewed_at DESC LIMIT 1`,
  );
  return {
    id,
    ...row,
    ts: row.ts === null ? null : Number(row.ts) * 1000,
    quarantined_at: Number(row.quarantined_at) * 1000,
    decision: taken[0]?.action ?? '',
    decided_by:
      taken[0] === undefined
        ? ''
        : `${taken[0].reviewer} at ${new Date(Number(taken[0].at) * 1000).toISOString()}`,
  };
}

function refuseDecided(item: QuarantineItem): void {
  if (item.decision !== '')
    throw new ReviewRefusedError(
      `quarantined record ${item.id} was already ${item.decision === 'approve' ? 'approved' : 'rejected'} by ${item.decided_by}: nothing changed`,
      { target: 'quarantine', id: item.id },
    );
}

function checkReason(review: Reviewer, target: string, id: string): void {
  if (review.reason.trim() === '') throw new ReviewRefusedError('a review needs a reason', { target, id });
  if (review.reviewer.trim() === '')
    throw new ReviewRefusedError('a review needs a reviewer', { target, id });
}

async function log(
  hot: HotStore,
  store: ConsoleStore,
  target: ReviewTarget,
  id: string,
  action: ReviewAction,
  review: Reviewer,
  meterId: string,
  before: unknown,
  after: unknown,
): Promise<void> {
  const at = new Date(review.now ?? Date.now());
  await hot.command(sql`INSERT INTO ${store.table(REVIEW_LOG_TABLE)}
    (target, target_id, action, reviewer, reviewed_at, reason, meter_id, before, after)
    VALUES (${target}, ${id}, ${action}, ${review.reviewer}, ${at}, ${review.reason}, ${meterId},
      ${JSON.stringify(before)}, ${after === null ? '' : JSON.stringify(after)})`);
}

/** Rejects a quarantined record: it stays quarantined, with the decision in `review_log`. */
export async function rejectQuarantined(
  store: ConsoleStore,
  id: string,
  review: Reviewer,
): Promise<ReviewOutcome> {
  const hot = writable(store);
  checkReason(review, 'quarantine', id);
  const item = await quarantineRow(store, id);
  refuseDecided(item);
  await log(hot, store, 'quarantine', id, 'reject', review, item.meter_id, item, null);
  return { message: `rejected quarantined record ${id} (${item.meter_id})`, before: item, after: null };
}

/** The value and unit a raw line carries: a JSON object, or a CSV line in the documented column order. */
export function rawValueOf(raw: string): { value: string; unit: string } | undefined {
  const text = raw.trim();
  if (text.startsWith('{')) {
    try {
      const o = JSON.parse(text) as { value?: unknown; unit?: unknown };
      return {
        value: o.value === null || o.value === undefined ? '' : String(o.value),
        unit: String(o.unit ?? ''),
      };
    } catch {
      return undefined;
    }
  }
  const fields = text.split(',');
  if (fields.length < 3) return undefined;
  return { value: fields[2]!.trim(), unit: (fields[3] ?? '').trim() };
}

/** kW of a value in a unit the rules convert without an interval; undefined otherwise. */
export function kwOf(value: string, unit: string): number | undefined {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) return undefined;
  const u = unit.trim().toLowerCase();
  const factor =
    u === 'kw' || u === 'kilowatt' || u === 'kilowatts' || u === 'kwh'
      ? 1
      : u === 'w' || u === 'watt' || u === 'watts' || u === 'wh'
        ? 0.001
        : u === 'mwh'
          ? 1000
          : undefined;
  return factor === undefined ? undefined : Math.round(n * factor * 10_000) / 10_000;
}

export interface ApproveOptions extends Reviewer {
  /** The corrected value in kW; without it the value received is used (it must be readable). */
  readonly valueKw?: number;
  readonly profile?: RuleProfile;
}

/**
 * Approves a quarantined record: its reading is written at its key (replacing the `missing` row or the
 * previous value) as a measured reading scored 100 (the reviewer's word overrides the rules' verdict),
 * flagged `reviewed` (and `reviewed_corrected` with a corrected value); then its hour and day are
 * recomputed and the decision logged.
 */
export async function approveQuarantined(
  store: ConsoleStore,
  id: string,
  options: ApproveOptions,
): Promise<ReviewOutcome> {
  const hot = writable(store);
  checkReason(options, 'quarantine', id);
  const profile = options.profile ?? resolveRuleProfile();
  const item = await quarantineRow(store, id);
  refuseDecided(item);
  if (item.ts === null || item.meter_id === '')
    throw new ReviewRefusedError(
      `quarantined record ${id} has no usable meter or timestamp: it can only be rejected`,
      { target: 'quarantine', id },
    );
  const known = await store.query(
    sql`SELECT meter_id FROM ${store.table('meters')} FINAL WHERE meter_id = ${item.meter_id} LIMIT 1`,
  );
  if (known.length === 0)
    throw new ReviewRefusedError(`meter ${item.meter_id} is not in the registry: register it first`, {
      target: 'quarantine',
      id,
    });
  const received = rawValueOf(item.raw);
  let kw: number | undefined;
  if (options.valueKw !== undefined) {
    if (!(Number.isFinite(options.valueKw) && options.valueKw >= 0))
      throw new ReviewRefusedError(`a corrected value must be a finite kW ≥ 0, got ${options.valueKw}`, {
        target: 'quarantine',
        id,
      });
    kw = Math.round(options.valueKw * 10_000) / 10_000;
  } else if (received !== undefined) kw = kwOf(received.value, received.unit);
  if (kw === undefined)
    throw new ReviewRefusedError(
      `the value of quarantined record ${id} cannot be read as kW: approve it with a corrected value`,
      { target: 'quarantine', id },
    );
  const now = options.now ?? Date.now();
  const previous = await readingAt(store, item.meter_id, item.ts);
  const flags: ReadingFlag[] =
    options.valueKw === undefined ? ['reviewed'] : ['reviewed', 'reviewed_corrected'];
  const score = 100;
  const rawValue = received?.value ?? String(kw);
  const reading: Reading = {
    meterId: item.meter_id,
    ts: item.ts,
    kw,
    rawValue,
    rawUnit: options.valueKw === undefined ? (received?.unit ?? 'kW') : 'kW',
    status: 'measured',
    flags,
    warnings: 0,
    qualityScore: score,
    qualityTier: tierOf(score, profile.quality),
    grade: gradeOf(score, profile.quality),
    peakClass: 'standard',
    season: 'winter',
    recordId: recordId(item.meter_id, canonicalTimestamp(item.ts), rawValue),
    source: item.source,
    processedAt: laterThan(previous, now),
    pipelineVersion: PIPELINE_VERSION,
  };
  classify(reading, profile);
  await hot.insert('readings', [reading]);
  const recomputed = await recompute(store, hot, item.meter_id, item.ts, profile);
  await log(
    hot,
    store,
    'quarantine',
    id,
    'approve',
    options,
    item.meter_id,
    { quarantine: item, reading: previous ?? null },
    reading,
  );
  return {
    message: `approved quarantined record ${id}: ${item.meter_id} at ${new Date(item.ts).toISOString()} stored as ${kw} kW; ${recomputed}`,
    before: { quarantine: item, reading: previous ?? null },
    after: reading,
  };
}

export interface OverrideOptions extends Reviewer {
  readonly score: number;
  readonly profile?: RuleProfile;
}

/** Sets a stored reading's quality score (and tier, grade) by a person's word; its hour and day follow. */
export async function overrideScore(
  store: ConsoleStore,
  meterId: string,
  ts: number,
  options: OverrideOptions,
): Promise<ReviewOutcome> {
  const hot = writable(store);
  const id = `${meterId}@${Number.isFinite(ts) ? new Date(ts).toISOString() : String(ts)}`;
  checkReason(options, 'reading', id);
  const profile = options.profile ?? resolveRuleProfile();
  if (!(Number.isInteger(options.score) && options.score >= 0 && options.score <= 100))
    throw new ReviewRefusedError(`a score is a whole number 0–100, got ${options.score}`, {
      target: 'reading',
      id,
    });
  const previous = Number.isFinite(ts) ? await readingAt(store, meterId, ts) : undefined;
  if (previous === undefined) throw new ReviewRefusedError(`no reading of ${id}`, { target: 'reading', id });
  if (previous.kw === null || previous.status === 'missing')
    throw new ReviewRefusedError(`${id} holds no value (${previous.status}): there is nothing to score`, {
      target: 'reading',
      id,
    });
  if (previous.qualityScore === options.score)
    throw new ReviewRefusedError(`${id} already scores ${options.score}: nothing changed`, {
      target: 'reading',
      id,
    });
  const now = options.now ?? Date.now();
  const reading: Reading = {
    ...previous,
    flags: previous.flags.includes('score_overridden')
      ? previous.flags
      : [...previous.flags, 'score_overridden'],
    qualityScore: options.score,
    qualityTier: tierOf(options.score, profile.quality),
    grade: gradeOf(options.score, profile.quality),
    processedAt: laterThan(previous, now),
  };
  await hot.insert('readings', [reading]);
  const recomputed = await recompute(store, hot, meterId, ts, profile);
  await log(hot, store, 'reading', id, 'override', options, meterId, previous, reading);
  return {
    message: `score of ${id} set from ${previous.qualityScore} to ${options.score}; ${recomputed}`,
    before: previous,
    after: reading,
  };
}

/** A version strictly newer than the stored row's: `processed_at` has whole seconds and decides the key. */
function laterThan(previous: Reading | undefined, now: number): number {
  const floor = previous === undefined ? 0 : previous.processedAt + 1000;
  return Math.max(Math.floor(now / 1000) * 1000, floor);
}

function classify(reading: Reading, profile: RuleProfile): void {
  of<FlowEvent<Reading>>({ kind: 'data', items: [reading] })
    .pipe(classifyPeak(profile.peaks))
    .subscribe();
}

/** The stored reading of a meter at `ts`, or undefined. */
export async function readingAt(
  store: ConsoleStore,
  meterId: string,
  ts: number,
): Promise<Reading | undefined> {
  const rows = await store.query<Record<string, unknown>>(
    sql`SELECT * FROM ${store.table('readings')} FINAL WHERE meter_id = ${meterId} AND ts = ${new Date(ts)} LIMIT 1`,
  );
  return rows[0] === undefined ? undefined : readingOf(decodeStoredRow('readings', rows[0]));
}

function readingOf(r: StoredRow): Reading {
  return {
    meterId: String(r.meter_id),
    ts: Number(r.ts),
    kw: r.kw === null ? null : Number(r.kw),
    rawValue: String(r.raw_value),
    rawUnit: String(r.raw_unit),
    status: r.status as Reading['status'],
    flags: [...(r.flags as readonly string[])] as ReadingFlag[],
    warnings: 0,
    qualityScore: Number(r.quality_score),
    qualityTier: r.quality_tier as Reading['qualityTier'],
    grade: r.grade as Reading['grade'],
    peakClass: r.peak_class as Reading['peakClass'],
    season: r.season as Reading['season'],
    recordId: String(r.record_id),
    source: String(r.source),
    processedAt: Number(r.processed_at),
    pipelineVersion: String(r.pipeline_version),
  };
}

/**
 * Recomputes the meter-hour of `ts` in `hourly_consumption` and its day in `daily_peaks` from the stored
 * rows, by the rules of `aggregateHourly` and `rankDailyPeaks`: measured readings with a value, not under a
 * fault (flagged, or inside a zero/stuck window), scored at least `standardFrom`.
 */
async function recompute(
  store: ConsoleStore,
  hot: HotStore,
  meterId: string,
  ts: number,
  profile: RuleProfile,
): Promise<string> {
  const hour = Math.floor(ts / HOUR) * HOUR;
  const [rows, windows, meter] = await Promise.all([
    store.query<{ ts: number; kw: number }>(
      sql`SELECT toUnixTimestamp(ts) AS ts, kw FROM ${store.table('readings')} FINAL
        WHERE meter_id = ${meterId} AND ts >= ${new Date(hour)} AND ts < ${new Date(hour + HOUR)}
          AND status = 'measured' AND kw IS NOT NULL AND NOT has(flags, 'fault_excluded')
          AND quality_score >= ${profile.quality.standardFrom}`,
    ),
    store.query<{ from: number; to: number }>(
      sql`SELECT toUnixTimestamp(window_start) AS from, toUnixTimestamp(window_end) AS to FROM ${store.table('faults')} FINAL
        WHERE meter_id = ${meterId} AND fault_type IN ('zero', 'stuck')
          AND window_start < ${new Date(hour + HOUR)} AND window_end >= ${new Date(hour)}`,
    ),
    store.query<{ neighborhood: string }>(
      sql`SELECT neighborhood FROM ${store.table('meters')} FINAL WHERE meter_id = ${meterId} LIMIT 1`,
    ),
  ]);
  const values = rows
    .filter((r) => !windows.some((w) => Number(r.ts) >= Number(w.from) && Number(r.ts) <= Number(w.to)))
    .map((r) => Number(r.kw));
  if (values.length === 0) return 'its hour holds no reading for analytics (hourly row left as it was)';
  const shift = values[0]!;
  let sum = 0;
  let sumSq = 0;
  for (const v of values) {
    sum += v - shift;
    sumSq += (v - shift) * (v - shift);
  }
  const n = values.length;
  const mean = sum / n;
  const variance = sumSq / n - mean * mean;
  const hourly: HourlyConsumption = {
    meterId,
    neighborhood: meter[0]?.neighborhood ?? '',
    hour,
    avgKw: shift + mean,
    minKw: Math.min(...values),
    maxKw: Math.max(...values),
    stddevKw: variance > 0 ? Math.sqrt(variance) : 0,
    count: n,
  };
  await hot.insert('hourly_consumption', [hourly]);
  const offsetMs = profile.peaks.timeZoneOffsetMinutes * 60_000;
  const day = Math.floor((hour + offsetMs) / DAY) * DAY - offsetMs;
  const totals = await store.query<{ hour: number; total: number }>(
    sql`SELECT toUnixTimestamp(hour) AS hour, sum(avg_kw) AS total FROM ${store.table('hourly_consumption')} FINAL
      WHERE hour >= ${new Date(Math.max(0, day))} AND hour < ${new Date(day + DAY)} GROUP BY hour`,
  );
  const ranked = totals
    .map((t) => ({ hour: Number(t.hour) * 1000, total: Math.round(Number(t.total) * 10_000) / 10_000 }))
    .sort((a, b) => b.total - a.total || a.hour - b.hour)
    .slice(0, profile.peaks.topHoursPerDay);
  const peaks: DailyPeak[] = ranked.map((t, i) => ({ day, hour: t.hour, totalKw: t.total, rank: i + 1 }));
  if (peaks.length > 0) await hot.insert('daily_peaks', peaks);
  return `hour ${new Date(hour).toISOString()} re-aggregated (${n} reading(s)), ${peaks.length} peak hour(s) of its day re-ranked`;
}

// ---------------------------------------------------------------------------------------------
// Dead letters of the landing folder.

/** A dead-lettered landing file: its path in the dead-letter folder, where it came from, and why. */
export interface DeadLetter {
  readonly path: string;
  readonly source: string;
  readonly reason: string;
  readonly bytes: number;
  readonly since: number;
}

/** The dead-lettered files under `dir` (each beside its `.reason.json`), oldest first. */
export async function listDeadLetters(dir: string): Promise<DeadLetter[]> {
  const out: DeadLetter[] = [];
  const walk = async (folder: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return;
      throw error;
    }
    for (const e of entries) {
      const full = join(folder, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile() && e.name.endsWith('.reason.json')) {
        const file = full.slice(0, -'.reason.json'.length);
        let note: { source?: unknown; reason?: unknown } = {};
        try {
          note = JSON.parse(await readFile(full, 'utf8')) as typeof note;
        } catch {
          // A torn note still names its file.
        }
        const info = await stat(file).catch(() => undefined);
        const noteInfo = await stat(full);
        out.push({
          path: relative(dir, file).split(sep).join('/'),
          source: typeof note.source === 'string' ? note.source : '',
          reason: typeof note.reason === 'string' ? note.reason : '',
          bytes: info?.size ?? 0,
          since: noteInfo.mtimeMs,
        });
      }
    }
  };
  await walk(dir);
  return out.sort((a, b) => a.since - b.since || a.path.localeCompare(b.path));
}

/**
 * Sends a dead-lettered file through decoding again: it is moved back into the landing folder (the
 * dead-letter folder's parent) beside where it came from, under a new name (`<name>.redrive-<ms><ext>`),
 * so the worker's ledger takes it as a new file and decodes it with today's decoders; if it still fails,
 * the worker dead-letters it again. The dead-letter copy goes, so a second redrive finds nothing.
 */
export async function redriveDeadLetter(
  store: ConsoleStore,
  deadLetterDir: string,
  path: string,
  review: Reviewer,
): Promise<ReviewOutcome> {
  const hot = writable(store);
  checkReason(review, 'dead_letter', path);
  const item = (await listDeadLetters(deadLetterDir)).find((d) => d.path === path);
  if (item === undefined || item.bytes === 0)
    throw new ReviewRefusedError(`no dead letter ${path} with content in ${deadLetterDir}`, {
      target: 'dead_letter',
      id: path,
    });
  const landing = dirname(deadLetterDir);
  const origin = item.source !== '' && !item.source.split('/').includes('..') ? item.source : path;
  const now = review.now ?? Date.now();
  const ext = extname(origin);
  const name = `${basename(origin, ext)}.redrive-${now}${ext}`;
  const folder = join(landing, dirname(origin));
  const target = join(folder, name);
  if (relative(landing, target).startsWith('..'))
    throw new ReviewRefusedError(`dead letter ${path} would leave the landing folder`, {
      target: 'dead_letter',
      id: path,
    });
  await mkdir(folder, { recursive: true });
  // Written under a name the landing source skips, then renamed: the worker never reads half a file.
  const file = join(deadLetterDir, path);
  await rename(file, `${target}.partial`);
  await rename(`${target}.partial`, target);
  await rm(`${file}.reason.json`, { force: true });
  const after = { landed: relative(landing, target).split(sep).join('/') };
  await log(hot, store, 'dead_letter', path, 'redrive', review, '', item, after);
  return { message: `redrove ${path} to ${after.landed}`, before: item, after };
}

// ---------------------------------------------------------------------------------------------
// The backlog alert.

/**
 * Writes a `backlog` alert when quarantined records (or dead letters in `deadLetterDir`) have waited more
 * than 24 h without a decision; one alert row per kind and hour of `now`, so running it again within the
 * hour rewrites the same row. Returns the alerts written.
 */
export async function raiseReviewBacklogAlerts(
  store: ConsoleStore,
  options: { readonly now?: number; readonly deadLetterDir?: string } = {},
): Promise<Alert[]> {
  const hot = writable(store);
  const now = options.now ?? Date.now();
  const cutoff = new Date(Math.floor((now - REVIEW_DEADLINE_MS) / 1000) * 1000);
  const [row] = await store.query<{ n: number | string }>(sql`
    SELECT count() AS n FROM (
      SELECT toString(cityHash64(source, raw)) AS id FROM ${store.table('quarantine')} FINAL
      WHERE quarantined_at < ${cutoff}
    ) AS q ANY LEFT JOIN (${decisions(store)}) AS d USING id
    WHERE decision = ''`);
  const alerts: Alert[] = [];
  const hour = Math.floor(now / HOUR) * HOUR;
  const waiting = Number(row?.n ?? 0);
  if (waiting > 0)
    alerts.push({
      severity: 'warning',
      kind: 'backlog',
      meterId: '',
      ts: hour,
      message: `quarantine review overdue: ${waiting} record(s) quarantined more than 24 h ago await a decision`,
    });
  if (options.deadLetterDir !== undefined) {
    const old = (await listDeadLetters(options.deadLetterDir)).filter(
      (d) => d.since < now - REVIEW_DEADLINE_MS,
    );
    if (old.length > 0)
      alerts.push({
        severity: 'warning',
        kind: 'backlog',
        meterId: '',
        ts: hour,
        message: `dead-letter review overdue: ${old.length} file(s) dead-lettered more than 24 h ago await a redrive or removal`,
      });
  }
  if (alerts.length > 0) await hot.insert('alerts', alerts);
  return alerts;
}
