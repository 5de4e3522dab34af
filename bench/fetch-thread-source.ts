/**
 * The message source alone, no graph: one-reading JSON messages read from a nats-server started here
 * through the in-thread source (`messageReadingSource`) and through the threaded one
 * (`threadedMessageSource`), committing every `--commit-every` readings as the job does after a write.
 * Reports the wall time, how busy the reading thread was (event-loop utilization, which counts waiting
 * for a core on a loaded machine) and its own CPU time (`/proc`): what the graph's thread spends on the
 * source, the part a fetch thread takes off it.
 *
 *   node --expose-gc dist/bench/fetch-thread-source.js [--readings 300000] [--pull 4096] [--rounds 2]
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { JetStreamSource } from '../connectors/jetstream.js';
import type { ReadingSource } from '../pipelines/runner.js';
import { messageReadingSource } from '../pipelines/sources.js';
import { threadedMessageSource } from '../pipelines/threaded-message-source.js';
import { startNatsServer } from '../test/harness/servers.js';
import { connect, ensureBenchStream } from './tasks/common.js';

const { values } = parseArgs({
  options: {
    readings: { type: 'string', default: '300000' },
    pull: { type: 'string', default: '4096' },
    'commit-every': { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '2' },
  },
});
const readings = Number(values.readings);
const pull = Number(values.pull);
const commitEvery = Number(values['commit-every']);

const work = await mkdtemp(join(tmpdir(), 'gs-fetch-thread-'));
const nats = await startNatsServer({ workDir: join(work, 'nats') });
const { nc, js } = await connect(nats.url);
const spec = { natsUrl: nats.url, stream: 'BENCH_SOURCE', subjectPrefix: 'benchsource' };
try {
  await ensureBenchStream(js, spec);
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < readings; i++) {
    const payload = JSON.stringify({
      meter_id: `MTR-${String(i % 50_000).padStart(6, '0')}`,
      timestamp: new Date(Date.UTC(2024, 2, 11) + Math.floor(i / 50_000) * 900_000).toISOString(),
      value: String((i % 977) / 10),
      unit: 'kW',
    });
    pending.push(js.publish(`${spec.subjectPrefix}.${i % 16}`, payload));
    if (pending.length >= 2000) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);

  const inThread = (): ReadingSource =>
    messageReadingSource(
      (after) =>
        JetStreamSource.recreate(
          js,
          { stream: spec.stream, durable: 'bench_source', maxAckPending: 250_000, ackWaitMs: 600_000 },
          after,
        ),
      { batchSize: pull, now: Date.now },
    );
  const threaded = (): ReadingSource =>
    threadedMessageSource({
      nats: { servers: nats.url },
      consumer: {
        kind: 'durable',
        stream: spec.stream,
        durable: 'bench_source',
        maxAckPending: 250_000,
        ackWaitMs: 600_000,
      },
      batchSize: pull,
      now: Date.now,
    });

  for (let round = 0; round < Number(values.rounds); round++) {
    for (const [name, make] of [
      ['in-thread', inThread],
      ['threaded', threaded],
    ] as const) {
      globalThis.gc?.();
      const source = make();
      await source.open(undefined);
      const elu0 = performance.eventLoopUtilization();
      const thread0 = mainThreadCpuMs();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      let count = 0;
      let sinceCommit = 0;
      for (;;) {
        const batch = await source.next();
        if (batch === 'idle' || batch === 'end') break;
        count += batch.records.length;
        sinceCommit += batch.records.length;
        if (sinceCommit >= commitEvery) {
          await source.commit();
          sinceCommit = 0;
        }
      }
      await source.commit();
      // The final idle pull waits out its expiry: not part of the reading.
      const wallMs = performance.now() - t0;
      const elu = performance.eventLoopUtilization(elu0);
      const cpu = process.cpuUsage(cpu0);
      const threadMs = mainThreadCpuMs() - thread0;
      await source.close();
      console.log(
        `${name.padEnd(9)} ${count} readings: wall ${Math.round(wallMs)} ms (incl. the ~1 s idle pull), ` +
          `reading thread busy ${Math.round(elu.active)} ms, its CPU ${threadMs} ms (${Math.round((threadMs * 1e6) / count)} ns a reading), ` +
          `process CPU ${Math.round((cpu.user + cpu.system) / 1000)} ms`,
      );
    }
  }
} finally {
  await nc.drain();
  await nats.dispose();
  await rm(work, { recursive: true, force: true });
}

/** CPU time of this process's main thread (the graph's thread in a job), ms, from `/proc` (10 ms ticks). */
function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
