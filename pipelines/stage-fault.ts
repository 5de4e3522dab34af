/**
 * Test hook, not a feature: `GS_TEST_FAULT=<stage>:<n>` makes that stage of the graph throw when its n-th
 * data batch arrives (counted from the start of the process; for a stage of a fused chain, each batch the
 * stage is handed), so the tests can stop a real worker with a
 * stage failure at a chosen point. Unset (always, outside tests), the graph is built without it.
 */
import { map } from 'rxjs';
import { ConfigurationError, type FlowEvent, type Transform } from '../core/index.js';

export interface StageFault {
  readonly stage: string;
  /** 1 for the first data batch the stage receives. */
  readonly batch: number;
}

/** The fault `GS_TEST_FAULT` asks for, or undefined. */
export function stageFaultFromEnv(env: NodeJS.ProcessEnv): StageFault | undefined {
  const text = env.GS_TEST_FAULT;
  if (text === undefined || text === '') return undefined;
  const match = /^([A-Za-z][A-Za-z0-9_]*):([1-9][0-9]*)$/.exec(text);
  if (match === null)
    throw new ConfigurationError(`GS_TEST_FAULT must be <stage>:<batch number>, got "${text}"`);
  return { stage: match[1]!, batch: Number(match[2]) };
}

/** The error the injected fault throws. */
export class InjectedFault extends Error {
  override readonly name = 'InjectedFault';
}

/** Throws on its `fault.batch`-th call: a chained stage's `beforeBatch` (`core/keyed-chain.ts`). */
export function throwOnBatch(fault: StageFault): () => void {
  let batches = 0;
  return () => {
    if (++batches === fault.batch)
      throw new InjectedFault(`injected fault on data batch ${fault.batch} (GS_TEST_FAULT)`);
  };
}

/** Passes events through, and throws on the `fault.batch`-th data batch. */
export function failOnBatch<T>(fault: StageFault): Transform<T, T> {
  const arrived = throwOnBatch(fault);
  return map((event: FlowEvent<T>) => {
    if (event.kind === 'data') arrived();
    return event;
  });
}
