import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { jetstream } from '@nats-io/jetstream';
import { detectUtilityContentType } from '../codecs/dispatch.js';
import { connectNats, ensureReadingsStream, ReadingsPublisher } from '../connectors/jetstream.js';
import { isLandingFileName } from '../connectors/landing.js';
import { type Command, UsageError } from './main.js';
import { natsConfigFrom, streamManagement } from './nats-source.js';
import { replicasFlag } from './run.js';

export const publishCommand: Command = {
  name: 'publish',
  summary: 'upload landing files into the JetStream readings stream (a file sent twice is stored once)',
  usage: [
    'Usage: greenstream publish <files or folders>... [--nats nats://host:port] [--partitions 16]',
    '  Uploads readings CSV/JSON landing files, NEM12 files and Green Button feeds (in a folder: the files',
    '  of the landing layout raw/YYYY/MM/DD/HH/, and NEM12 / Green Button files anywhere, told by content).',
    '  Creates the READINGS stream (subjects readings.>, 7 days, 10 GiB) when missing. One message per file,',
    '  or per chunk of at most 1 MiB with the CSV header repeated (NEM12 cut between data streams, Green',
    '  Button between interval blocks, each chunk a file of its own format); the message id is the SHA-256 of the',
    '  content, so publishing the same file again within the stream duplicate window (2 min) stores nothing new.',
    '  Credentials: $NATS_USER/$NATS_PASSWORD, $NATS_TOKEN, $NATS_CREDS, $NATS_TLS=1.',
    '  --replicas <n>: copies (1-5) of the READINGS stream when it creates it (default 1; $GS_REPLICAS);',
    '  an existing stream is never changed.',
  ].join('\n'),
  run: async (argv) => {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        nats: { type: 'string' },
        partitions: { type: 'string', default: '16' },
        replicas: { type: 'string' },
      },
    });
    if (positionals.length === 0) throw new UsageError('give at least one file or folder');
    const url = values.nats ?? process.env.NATS_URL;
    if (url === undefined) throw new UsageError('give --nats nats://host:port or set $NATS_URL');
    const partitions = Number(values.partitions);
    if (!(Number.isInteger(partitions) && partitions > 0))
      throw new UsageError('--partitions must be a positive integer');
    const nc = await connectNats(natsConfigFrom(url, process.env));
    try {
      const js = jetstream(nc);
      await ensureReadingsStream(
        js,
        streamManagement({ replicas: replicasFlag(values.replicas, process.env) }),
      );
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
async function* landingFiles(paths: string[]): AsyncGenerator<{ path: string; bytes: Uint8Array }> {
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
