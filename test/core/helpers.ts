import { TestScheduler } from 'rxjs/testing';
import { expect } from 'vitest';
import { dataEvent, type FlowEvent, watermarkEvent } from '../../core/index.js';

export interface Ev {
  readonly key: string;
  readonly t: number;
  readonly v: number;
  readonly p?: string;
}

export const ev = (key: string, t: number, v = 1, p?: string): Ev =>
  p === undefined ? { key, t, v } : { key, t, v, p };
export const data = <T>(...items: T[]): FlowEvent<T> => dataEvent(items);
export const wm = (time: number): FlowEvent<never> => watermarkEvent(time);

export function testScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}
