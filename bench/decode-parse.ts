/**
 * `node --expose-gc dist/bench/decode-parse.js [--meters 5000] [--rounds 6] [--json 200000] [--base <dist>]`:
 * the CPU time of turning payload bytes into parsed readings alone: a simulated day's gateway-hour CSV
 * files, each decoded as a JetStream message (`takeMessage`), an hour's files in one batch handed to
 * `parseReading`; then `--json` of the same readings as one-reading JSON messages, 1,000 a batch. The
 * payloads are made first (untimed). With `--base`, the same payloads go through that build's functions
 * too, in alternating rounds, so that two builds are compared in one process on one machine load.
 * `--profile <file>` writes a V8 CPU profile of this build's rounds, for `profile-top.js`. `--parse-only` times
 * `parseReading` alone: each batch is decoded before the clock starts (the decoded records are the same
 * either way, so the difference of the two figures is the decoding).
 * Caution: in one process, one build's CSV rounds have run ~1.5× faster than the other's for the whole run
 * with identical code (seen twice in about ten runs, on a loaded machine); check a difference with each
 * build alone in alternating processes too (a copy of the other build's `dist` with this file added).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Subject } from 'rxjs';
import { landingReceivedAt } from '../connectors/landing.js';
import type { FlowEvent } from '../core/index.js';
import type { QuarantineRecord, RawReading } from '../schemas/reading.js';
import { createSimulation } from '../simulator/index.js';

interface Build {
  readonly name: string;
  readonly messages: typeof import('../pipelines/message-source.js');
  readonly parse: typeof import('../operators/parse-reading.js');
  readonly core: typeof import('../core/index.js');
}

async function load(name: string, dist: string): Promise<Build> {
  const at = (path: string) => pathToFileURL(join(dist, path)).href;
  return {
    name,
    messages: await import(at('pipelines/message-source.js')),
    parse: await import(at('operators/parse-reading.js')),
    core: await import(at('core/index.js')),
  };
}

interface Message {
  readonly data: Uint8Array;
  readonly headers: Record<string, string>;
  readonly source: string;
  readonly receivedAt: number;
}

const CSV_HEADERS = { 'Content-Type': 'text/csv' };
const NO_HEADERS = {};
const JSON_BATCH = 1000;

const { values } = parseArgs({
  options: {
    meters: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '6' },
    json: { type: 'string', default: '200000' },
    base: { type: 'string' },
    profile: { type: 'string' },
    'parse-only': { type: 'boolean', default: false },
  },
});
const here = resolve(new URL('..', import.meta.url).pathname);
const builds = [await load('this', here)];
if (values.base !== undefined) builds.push(await load('base', resolve(values.base)));

// An hour's gateway files in one batch, as a pull brings them; the one-reading messages of the same day.
const csvBatches: Message[][] = [];
const jsonMessages: Message[] = [];
const maxJson = Number(values.json);
const parseOnly = values['parse-only'];
let seq = 0;
let folder = '';
for (const file of createSimulation({
  meters: Number(values.meters),
  days: 1,
  start: '2024-03-11',
  seed: 1,
}).hours()) {
  const f = file.path.slice(0, file.path.lastIndexOf('/'));
  if (f !== folder) csvBatches.push([]);
  folder = f;
  const receivedAt = landingReceivedAt(file.path) ?? 0;
  csvBatches[csvBatches.length - 1]!.push({
    data: Buffer.from(file.csv),
    headers: CSV_HEADERS,
    source: `stream:readings:${++seq}`,
    receivedAt,
  });
  if (jsonMessages.length < maxJson) {
    // The data lines as JSON objects (`publishJsonTask` does the same through the decoder).
    for (const line of file.csv.split(/\r?\n/).slice(1)) {
      const [meterId, timestamp, value, unit, ...rest] = line.split(',');
      if (unit === undefined || rest.length > 0 || jsonMessages.length >= maxJson) continue;
      const data = Buffer.from(JSON.stringify({ meter_id: meterId, timestamp, value, unit }));
      jsonMessages.push({ data, headers: NO_HEADERS, source: `stream:readings:${++seq}`, receivedAt });
    }
  }
}
const lines = csvBatches.reduce((n, b) => n + b.reduce((m, x) => m + x.data.length, 0), 0);
console.log(
  `payloads: ${csvBatches.length} CSV batches (${seq - jsonMessages.length} files, ${(lines / 1e6).toFixed(1)} MB), ${jsonMessages.length} JSON messages`,
);

/** What a round produced, to check the builds agree. */
interface Counts {
  readings: number;
  quarantined: number;
  check: number;
}

/** One round: CPU ms of decode + parse of every payload, in a fresh graph stage. */
function round(build: Build, counts: Counts, part: 'csv' | 'json'): number {
  const lineage = { pipelineVersion: 'bench', processedAt: () => 0 };
  const store = new build.core.StateStore();
  const input = new Subject<FlowEvent<RawReading>>();
  input.pipe(build.parse.parseReading(lineage, store.denseKeys('meters'))).subscribe((e) => {
    if (e.kind === 'data') {
      counts.readings += e.items.length;
      for (const r of e.items) counts.check = (counts.check + r.ts / 1000 + r.recordId.charCodeAt(7)) % 1e9;
    } else if (e.kind === 'tagged') counts.quarantined += e.items.length;
  });
  const take = build.messages.takeMessage;
  const batches: Message[][] = [];
  if (part === 'csv') batches.push(...csvBatches);
  else
    for (let from = 0; from < jsonMessages.length; from += JSON_BATCH)
      batches.push(jsonMessages.slice(from, from + JSON_BATCH));
  const decode = (messages: Message[]): RawReading[] => {
    const batch = { records: [] as RawReading[], quarantined: [] as QuarantineRecord[], deadLettered: 0 };
    for (const m of messages) take(m, batch, 0);
    counts.quarantined += batch.quarantined.length;
    return batch.records;
  };
  // Decoded before the clock starts with --parse-only, as each batch comes otherwise.
  const decoded = parseOnly ? batches.map(decode) : [];
  const t = process.cpuUsage();
  for (let i = 0; i < batches.length; i++)
    input.next(build.core.dataEvent(parseOnly ? decoded[i]! : decode(batches[i]!)));
  const used = process.cpuUsage(t);
  input.complete();
  return (used.user + used.system) / 1000;
}

const rounds = Number(values.rounds);
const results = new Map<string, { csv: number[]; json: number[]; counts: Counts }>();
let session: Session | undefined;
if (values.profile !== undefined) {
  session = new Session();
  session.connect();
  await new Promise<void>((done) => session!.post('Profiler.enable', () => done()));
}
for (let r = 0; r < rounds; r++) {
  for (const build of r % 2 === 0 ? builds : [...builds].reverse()) {
    const result = results.get(build.name) ?? {
      csv: [],
      json: [],
      counts: { readings: 0, quarantined: 0, check: 0 },
    };
    results.set(build.name, result);
    const profiled = session !== undefined && build.name === 'this';
    if (profiled) await new Promise<void>((done) => session!.post('Profiler.start', () => done()));
    (globalThis as { gc?: () => void }).gc?.();
    result.csv.push(round(build, result.counts, 'csv'));
    (globalThis as { gc?: () => void }).gc?.();
    result.json.push(round(build, result.counts, 'json'));
    if (profiled) {
      await new Promise<void>((done) =>
        session!.post('Profiler.stop', (_err, { profile }) => {
          writeFileSync(values.profile!, JSON.stringify(profile));
          done();
        }),
      );
    }
  }
}
const fmt = (xs: number[]): string => {
  const sorted = [...xs].sort((a, b) => a - b);
  return `min ${Math.round(sorted[0]!)} ms, median ${Math.round(sorted[sorted.length >> 1]!)} ms [${xs.map(Math.round).join(', ')}]`;
};
for (const [name, { csv, json, counts }] of results) {
  console.log(`${name}: CSV gateway batches ${fmt(csv)}`);
  console.log(`${name}: one-reading JSON ${fmt(json)}`);
  console.log(
    `${name}: ${counts.readings / rounds} readings, ${counts.quarantined / rounds} quarantined a round (check ${counts.check.toFixed(3)})`,
  );
}
