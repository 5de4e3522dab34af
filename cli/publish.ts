import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { detectUtilityContentType } from '../codecs/dispatch.js';
import { connectNats, ensureReadingsStream, ReadingsPublisher } from '../connectors/jetstream.js';
import { DEFAULT_READINGS_RETENTION } from '../connectors/jetstream-streams.js';
import { isLandingFileName } from '../connectors/landing.js';
import { type Command, UsageError } from './main.js';
import { natsConfigFrom, streamManagement } from './nats-source.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';

const days = (ms: number) => `${ms / 86_400_000} days`;
const limits = (r: typeof DEFAULT_READINGS_RETENTION) =>
  `${days(r.maxAgeMs)}, ${r.maxBytes < 0 ? 'no size limit' : `${r.maxBytes} bytes`}`;
const window = (ms: number) => (ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : `${ms / 60_000} min`);

// The stream limits are quoted from the constants that create the stream, so the help cannot drift.
export const publishTable = optionTable({
  command: 'publish',
  synopsis: [
    'Usage: greenstream publish <files or folders>... [--nats nats://host:port] [--partitions 16]',
    '  Uploads readings CSV/JSON landing files, NEM12 files and Green Button feeds (in a folder: the files',
    '  of the landing layout raw/YYYY/MM/DD/HH/, and NEM12 / Green Button files anywhere, told by content).',
    `  Creates the READINGS stream (subjects readings.>, ${limits(DEFAULT_READINGS_RETENTION)}) when missing. One message per file,`,
    '  or per chunk of at most 1 MiB with the CSV header repeated (NEM12 cut between data streams, Green',
    '  Button between interval blocks, each chunk a file of its own format); the message id is the SHA-256 of the',
    `  content, so publishing the same file again within the stream duplicate window (${window(DEFAULT_READINGS_RETENTION.duplicateWindowMs)}) stores nothing new.`,
    '  Credentials: $NATS_USER/$NATS_PASSWORD, $NATS_TOKEN, $NATS_CREDS, $NATS_TLS=1.',
  ],
  positionals: true,
  options: [
    { name: 'nats', type: 'string', arg: 'url', env: 'NATS_URL', help: 'the NATS server(s), required' },
    {
      name: 'partitions',
      type: 'integer',
      env: 'GS_PUBLISH_PARTITIONS',
      default: 16,
      help: 'partition subjects readings.<p>: every publisher of a stream must give the same count',
    },
    {
      name: 'replicas',
      type: 'integer',
      arg: 'n',
      min: 1,
      max: 5,
      default: 1,
      help: 'copies of the READINGS stream when it creates it (3 on a 3-node cluster); an existing stream is never changed',
    },
  ],
});

export const publishCommand: Command = {
  name: 'publish',
  summary: 'upload landing files into the JetStream readings stream (a file sent twice is stored once)',
  usage: optionsHelp(publishTable),
  run: async (argv) => {
    const { values, positionals } = parseOptions(publishTable, argv);
    if (positionals.length === 0) throw new UsageError('give at least one file or folder');
    const url = values.nats as string | undefined;
    if (url === undefined) throw new UsageError('give --nats nats://host:port or set $NATS_URL');
    const partitions = values.partitions as number;
    const nc = await connectNats(natsConfigFrom(url, process.env));
    try {
      const js = jetstream(nc);
      await ensureReadingsStream(js, streamManagement({ replicas: values.replicas as number }));
      const publisher = new ReadingsPublisher(js, {
        partitions,
        maxPayload: nc.info?.max_payload ?? 1024 * 1024,
      });
      const summary = await publisher.publishFiles(landingFiles(positionals));
      process.stdout.write(
        `${JSON.stringify({
          files: summary.files.length,
          messages: summary.messages,
          stored: summary.stored,
          duplicates: summary.duplicates,
          bytes: summary.bytes,
          failed: summary.failed.map((f) => ({ path: f.path, error: f.error.message })),
        })}\n`,
      );
      return summary.failed.length === 0 ? 0 : 1;
    } finally {
      await nc.drain();
    }
  },
};

const LANDING_PATH = /(?:^|\/)raw\/\d{4}\/\d{2}\/\d{2}\/\d{2}\/[^/]+$/;

/**
 * Files under the given paths, in path order. In a folder the files of the landing layout
 * (`raw/YYYY/MM/DD/HH/<name>`) are taken, and NEM12 files and Green Button feeds wherever they sit (told
 * by their content) — not the registry or labels beside them; a file named on the command line is always
 * taken. Names are kept relative to a `raw/` ancestor when there is one.
 */
async function* landingFiles(paths: readonly string[]): AsyncGenerator<{ path: string; bytes: Uint8Array }> {
  for (const p of paths) {
    const info = await stat(p);
    const files = info.isDirectory() ? await walk(p) : [p];
    for (const file of files.sort()) {
      const bytes = await readFile(file);
      if (info.isDirectory() && !LANDING_PATH.test(file) && detectUtilityContentType(bytes) === null)
        continue;
      const rawAt = file.lastIndexOf('raw/');
      const path = rawAt >= 0 ? file.slice(rawAt) : relative(process.cwd(), file);
      yield { path, bytes };
    }
  }
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(full)));
    else if (entry.isFile() && (isLandingFileName(entry.name) || /\.xml$/i.test(entry.name))) out.push(full);
  }
  return out;
}
