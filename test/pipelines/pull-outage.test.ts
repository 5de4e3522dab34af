/**
 * Pulls that keep failing: a source rides out a short outage, recreates its consumer once it lasts, and
 * ends the run with a retryable error once it outlasts its bound, instead of waiting forever (a worker of
 * the 3-node cluster test once checkpointed nothing new for four minutes after a node restart). Injected
 * against a real nats-server of its own, frozen with SIGSTOP: connections stay open, nothing answers.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../cli/exit-codes.js';
import { ensureReadingsStream, JetStreamSource, streamLastSeq } from '../../connectors/jetstream.js';
import { type PullsFailing, pullOutage, SourceUnavailableError } from '../../pipelines/pull-outage.js';
import type { ReadingSource } from '../../pipelines/runner.js';
import { messageReadingSource, partitionedReadingSource } from '../../pipelines/sources.js';
import { type NatsServer, startNatsServer, uniqueName } from '../harness/servers.js';

describe('pullOutage', () => {
  it('recreates the consumer once at reopenAfterMs, then gives up with a retryable error', () => {
    let t = 0;
    const events: PullsFailing[] = [];
    const outage = pullOutage('partition 3', () => t, {
      reopenAfterMs: 2_000,
      unavailableAfterMs: 5_000,
      onPullsFailing: (e) => events.push(e),
    });
    expect(outage.backoffMs()).toBe(0);
    expect(outage.note('heartbeats missed')).toBe('failing');
    t = 1_999;
    expect(outage.note('heartbeats missed')).toBe('failing');
    t = 2_000;
    expect(outage.note('TIMEOUT')).toBe('reopen');
    t = 4_999;
    expect(outage.note('TIMEOUT')).toBe('failing');
    t = 5_000;
    let thrown: unknown;
    try {
      outage.note('TIMEOUT');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(SourceUnavailableError);
    expect((thrown as SourceUnavailableError).retryable).toBe(true);
    expect((thrown as SourceUnavailableError).context).toEqual({
      source: 'partition 3',
      reason: 'TIMEOUT',
      failingForMs: 5_000,
    });
    expect(exitCodeFor(thrown)).toBe(75);
    expect(events.map((e) => [e.action, e.failingForMs])).toEqual([
      ['failing', 0],
      ['reopening', 2_000],
    ]);
  });

  it('starts over after a pull that works, and backs off more with every failure in a row, up to 2 s', () => {
    let t = 0;
    const outage = pullOutage('jetstream', () => t, { reopenAfterMs: 1_000, unavailableAfterMs: 3_000 });
    const backoffs: number[] = [];
    for (let i = 0; i < 8; i++) {
      outage.note('no responders');
      backoffs.push(outage.backoffMs());
    }
    expect(backoffs).toEqual([100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000]);
    t = 2_900;
    expect(outage.note(null)).toBe('ok');
    expect(outage.backoffMs()).toBe(0);
    // A new outage counts from its own first failure, and may reopen again.
    t = 10_000;
    expect(outage.note('no responders')).toBe('failing');
    t = 11_000;
    expect(outage.note('no responders')).toBe('reopen');
    t = 12_999;
    expect(outage.note('no responders')).toBe('failing');
  });
});

describe('a source whose server stops answering (SIGSTOP)', () => {
  let server: NatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url, reconnectTimeWait: 250 });
  }, 60_000);

  afterAll(async () => {
    server?.resume();
    await nc?.close();
    await server?.dispose();
  });

  /** `count` one-reading CSV messages over `partitions` subjects `<prefix>.<p>`. */
  async function streamOf(count: number, partitions: number) {
    const stream = uniqueName('OUTAGE');
    const prefix = stream.toLowerCase();
    const jsm = await jetstreamManager(nc);
    await ensureReadingsStream(jsm, { name: stream, subjects: [`${prefix}.>`], storage: 'memory' });
    const js = jetstream(nc);
    for (let i = 1; i <= count; i++) {
      const ts = new Date(Date.UTC(2024, 2, 11) + i * 900_000).toISOString();
      await js.publish(`${prefix}.${i % partitions}`, `meter_id,timestamp,value,unit\nM${i},${ts},1.5,kW\n`);
    }
    return { stream, prefix };
  }

  /** The durable as the worker opens it (`JetStreamSource.recreate`). */
  const opener = (stream: string, durable: string, subject?: string) => (resumeAfterSeq: number) =>
    JetStreamSource.recreate(
      jetstream(nc),
      { stream, durable, ...(subject === undefined ? {} : { filterSubjects: [subject] }) },
      resumeAfterSeq,
    );

  const seqOf = (source: string) => Number(/:(\d+)/.exec(source)?.[1]);

  /**
   * Reads a first batch, freezes the server and pulls until the source gives up; then thaws it and reads
   * the rest through a fresh source from the first one's position: every message exactly once.
   */
  async function outageRun(make: (events: PullsFailing[]) => ReadingSource) {
    const events: PullsFailing[] = [];
    const first = make(events);
    await first.open(undefined);
    const seqs: number[] = [];
    const batch = await first.next();
    if (batch === 'idle' || batch === 'end') throw new Error('expected a batch');
    for (const r of batch.records) seqs.push(seqOf(r.source));
    await first.commit();
    const position = first.position();

    await server.pause();
    const frozenAt = performance.now();
    let failure: unknown;
    try {
      // What it hands out meanwhile (fetched before the freeze) is past the committed position: a
      // restarted worker reads it again, as here.
      for (let i = 0; i < 1_000; i++) {
        const next = await first.next();
        if (next === 'idle' || next === 'end') throw new Error(`a frozen server made the source ${next}`);
      }
    } catch (error) {
      failure = error;
    }
    const gaveUpMs = performance.now() - frozenAt;
    server.resume();
    await first.close().catch(() => {});

    const second = make([]);
    await second.open(position);
    for (let i = 0; i < 200; i++) {
      const next = await second.next();
      if (next === 'idle' || next === 'end') break;
      for (const r of next.records) seqs.push(seqOf(r.source));
      await second.commit();
    }
    await second.close();
    return { events, failure, gaveUpMs, seqs: seqs.sort((a, b) => a - b) };
  }

  const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
  const bounds = { reopenAfterMs: 1_500, unavailableAfterMs: 4_000 };

  it('all partitions: gives up retryably within its bound, and a restart reads every message once', async () => {
    const { stream } = await streamOf(30, 1);
    const { events, failure, gaveUpMs, seqs } = await outageRun((events) =>
      messageReadingSource(opener(stream, 'outage_all'), {
        batchSize: 10,
        now: Date.now,
        ...bounds,
        onPullsFailing: (e) => events.push(e),
      }),
    );
    expect(failure, (failure as Error)?.stack).toMatchObject({ retryable: true });
    expect(exitCodeFor(failure)).toBe(75);
    // The bound plus what one stuck call may take (the client's request timeout, the setup retries).
    expect(gaveUpMs).toBeLessThan(45_000);
    expect(events[0]).toMatchObject({ source: 'jetstream', action: 'failing' });
    expect(seqs).toEqual(range(30));
  }, 120_000);

  it('a partition set: gives up retryably within its bound, and a restart reads every message once', async () => {
    const { stream, prefix } = await streamOf(40, 2);
    const jsm = await jetstreamManager(nc);
    const { failure, gaveUpMs, seqs } = await outageRun((events) =>
      partitionedReadingSource((p, after) => opener(stream, `outage_p${p}`, `${prefix}.${p}`)(after), {
        partitions: [0, 1],
        batchSize: 8,
        now: Date.now,
        streamLastSeq: () => streamLastSeq(jsm, stream, 3_000),
        ...bounds,
        onPullsFailing: (e) => events.push(e),
      }),
    );
    expect(failure, (failure as Error)?.stack).toMatchObject({ retryable: true });
    expect(exitCodeFor(failure)).toBe(75);
    expect(gaveUpMs).toBeLessThan(45_000);
    expect(seqs).toEqual(range(40));
  }, 120_000);

  it('a partition set ends idle once the consumer of a lane whose pull was cut short says nothing is pending', async () => {
    // A lane cut short while caught up is asked (not pulled) afterwards: its interruption must not outlive
    // the call that saw it, or an --until-idle worker never ends (the cluster test's stalled worker).
    const { stream, prefix } = await streamOf(12, 2);
    const source = partitionedReadingSource(
      (p, after) => opener(stream, `stale_p${p}`, `${prefix}.${p}`)(after),
      {
        partitions: [0, 1],
        batchSize: 8,
        now: Date.now,
        // Known to the test (nothing is published after), so the frozen server is asked nothing here.
        streamLastSeq: async () => 12,
        reopenAfterMs: 60_000,
        unavailableAfterMs: 120_000,
      },
    );
    await source.open(undefined);
    const seqs: number[] = [];
    const untilIdle = async (calls: number): Promise<number> => {
      for (let i = 1; i <= calls; i++) {
        const next = await source.next();
        if (next === 'idle') return i;
        if (next === 'end') throw new Error('a durable source never ends');
        for (const r of next.records) seqs.push(seqOf(r.source));
        await source.commit();
      }
      return -1;
    };
    expect(await untilIdle(20), 'idle after reading everything').toBeGreaterThan(0);
    expect(seqs.sort((a, b) => a - b)).toEqual(range(12));

    // Frozen: the lanes' consumers cannot be asked (unknown counts as pending), their pulls are cut short.
    await server.pause();
    const frozen = await source.next();
    server.resume();
    expect(frozen, 'not idle while the server does not answer').not.toBe('idle');
    // Thawed: both consumers report nothing pending, so the source is idle again within a few calls.
    expect(await untilIdle(5), 'idle again once the server answers').toBeGreaterThan(0);
    expect(seqs).toHaveLength(12);
    await source.close();
  }, 120_000);
});
