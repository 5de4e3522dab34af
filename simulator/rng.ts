/**
 * The simulator's only source of randomness. Every purpose (registry, one meter's load, one fault kind)
 * draws from its own stream derived from the seed, so adding meters or kinds does not shift the numbers
 * another part of the dataset sees, and one seed always gives the same bytes.
 */

/**
 * mulberry32: 32-bit state, fast, good enough for simulation (not for cryptography). A class rather
 * than a closure: the load generator draws tens of millions of times from 50,000 generators, and one
 * class keeps the call monomorphic so it is inlined.
 */
export class Rng {
  // In a typed array, because a number field holding values above 2^30 is re-boxed on every store.
  private readonly state = new Int32Array(1);

  constructor(seed: number) {
    this.state[0] = seed | 0;
  }

  /** A uniform draw on [0, 1). */
  next(): number {
    const a = (this.state[0] + 0x6d2b79f5) | 0;
    this.state[0] = a;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** Murmur3's finalizer: spreads every input bit over the whole word. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  }
  return fmix32(h);
}

/** Folds a non-negative safe integer seed into 32 bits without dropping its high part. */
export function seed32(seed: number): number {
  const high = Math.floor(seed / 4294967296);
  return fmix32((seed >>> 0) ^ fmix32(high + 0x9e3779b9));
}

/** The stream for one purpose and one index (e.g. a meter), independent of every other stream. */
export function substream(seed: number, purpose: string, index = 0): Rng {
  const base = fmix32(seed32(seed) ^ hashString(purpose));
  return new Rng(fmix32((base + Math.imul(index + 1, 0x9e3779b9)) >>> 0));
}

export function uniform(rng: Rng, low: number, high: number): number {
  return low + (high - low) * rng.next();
}

/** An integer in [low, high], both included. */
export function intBetween(rng: Rng, low: number, high: number): number {
  return low + Math.floor(rng.next() * (high - low + 1));
}

export function chance(rng: Rng, probability: number): boolean {
  return rng.next() < probability;
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[Math.floor(rng.next() * items.length)];
}

/**
 * An approximately standard normal draw (Irwin–Hall sum of four uniforms, rescaled): bounded to
 * ±3.46, which suits noise that must never produce absurd readings, and cheaper than Box–Muller.
 */
export function normal(rng: Rng): number {
  return (rng.next() + rng.next() + rng.next() + rng.next() - 2) * 1.7320508075688772;
}

export function shuffleInPlace<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const held = items[i];
    items[i] = items[j];
    items[j] = held;
  }
  return items;
}
