import { describe, expect, it } from 'vitest';
import { EXIT, exitCodeFor } from '../../cli/exit-codes.js';
import { SinkRejectedError, SinkUnavailableError } from '../../connectors/clickhouse-errors.js';
import { FetchError } from '../../connectors/jetstream-errors.js';
import { LandingError } from '../../connectors/landing.js';
import { FencedError } from '../../connectors/lease.js';
import { MetricsServerError } from '../../connectors/metrics-server.js';
import { LakeInputError, LakeWriteError } from '../../connectors/parquet-lake.js';
import { ConfigurationError, GreenStreamError, StageError } from '../../core/index.js';
import { RuleProfileError } from '../../operators/rule-profile.js';
import { ImportInputError } from '../../pipelines/import-source.js';
import { RegistryError } from '../../pipelines/job.js';
import { CheckpointFormatError } from '../../pipelines/runner.js';
import { CheckpointStoreMismatchError } from '../../pipelines/store-identity.js';

const context = { engine: 'server', target: 'http://x', operation: 'insert', attempts: 4 } as const;

describe('exit codes (README, "Exit codes")', () => {
  it('map each class of failure to its status', () => {
    expect(exitCodeFor(new StageError('g', 'detectOverload', new Error('x')))).toBe(EXIT.stage);
    expect(exitCodeFor(new RegistryError('bad registry'))).toBe(EXIT.configuration);
    expect(exitCodeFor(new CheckpointFormatError({ seq: 1, position: 0, state: '', totals: 0 }, 'f/2'))).toBe(
      EXIT.configuration,
    );
    expect(exitCodeFor(new RuleProfileError(['bad']))).toBe(EXIT.configuration);
    expect(exitCodeFor(new SinkUnavailableError('down', context, undefined))).toBe(EXIT.retryable);
    expect(exitCodeFor(new SinkRejectedError('refused', context, undefined))).toBe(EXIT.refused);
    expect(exitCodeFor(new LakeWriteError('disk', {}))).toBe(EXIT.retryable);
    expect(exitCodeFor(new LakeInputError('bad id', {}))).toBe(EXIT.refused);
    expect(exitCodeFor(new FetchError('no such consumer'))).toBe(EXIT.refused);
    expect(exitCodeFor(new GreenStreamError('later', { retryable: true }))).toBe(EXIT.retryable);
    expect(exitCodeFor(new FencedError('taken over', { worker: 'w0', epoch: 2 }))).toBe(EXIT.fenced);
    expect(exitCodeFor(new CheckpointStoreMismatchError('cp.json', 3, ['hot store differs']))).toBe(
      EXIT.configuration,
    );
    expect(exitCodeFor(new MetricsServerError('port in use', { host: '127.0.0.1', port: 9464 }))).toBe(
      EXIT.configuration,
    );
    expect(exitCodeFor(new ImportInputError('no such file'))).toBe(EXIT.configuration);
    expect(exitCodeFor(new LandingError('cannot read', { path: 'raw/x.csv' }))).toBe(EXIT.refused);
    expect(exitCodeFor(new TypeError('bug'))).toBe(EXIT.unexpected);
  });

  it('keep the flag and context on every typed error', () => {
    const error = new SinkUnavailableError('down', context, new Error('ECONNREFUSED'));
    expect(error).toBeInstanceOf(GreenStreamError);
    expect(error.retryable).toBe(true);
    expect(error.context).toEqual(context);
    expect(new RegistryError('x')).toBeInstanceOf(ConfigurationError);
  });
});
