/** Value and name formatting shared by the injectors (which record exact lines) and the emitter. */
import { KW_QUANTUM } from './series.js';

const fractions4 = Array.from({ length: KW_QUANTUM }, (_, i) => String(i).padStart(4, '0'));

/** kW with 4 decimals (the pipeline's rounding), from kW × 10,000. */
export function formatKw(value: number): string {
  if (value < 0) return `-${formatKw(-value)}`;
  const whole = Math.floor(value / KW_QUANTUM);
  return `${whole}.${fractions4[value - whole * KW_QUANTUM]}`;
}

/** Watts with 1 decimal, from kW × 10,000: the same precision, so nothing is lost. */
export function formatW(value: number): string {
  if (value < 0) return `-${formatW(-value)}`;
  const whole = Math.floor(value / 10);
  return `${whole}.${value - whole * 10}`;
}

/** Energy of a half hour in kWh with 5 decimals (exact), from its mean kW × 10,000. */
export function formatHalfHourKwh(value: number): string {
  return (value / 20_000).toFixed(5);
}

export function gatewayName(gateway: number): string {
  return `gw-${String(gateway + 1).padStart(4, '0')}`;
}
