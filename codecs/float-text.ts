/**
 * `String(value)` of a number, character for character, made cheaply for the usual meter value (at most
 * four decimals): the text both stores' encoders write for a float.
 */

/** `.0001` … `.9999` without trailing zeros, and '' for a whole number. */
export const TEN_THOUSANDTHS: readonly string[] = Array.from({ length: 10_000 }, (_, f) =>
  f === 0 ? '' : `.${String(f).padStart(4, '0').replace(/0+$/, '')}`,
);

/**
 * `String(value)` with a fast path for at most four decimals; general shortest-round-trip formatting
 * costs ~6× as much. When `k / 10000` is exactly `value` (k an integer under 1e13), the decimal
 * `k / 10^4` parses back to `value` and, having at most 13 significant digits, is its shortest form,
 * which is what `String` writes (plain notation: 1e-4 ≤ |value| < 1e9). Anything else takes `String`,
 * and so does -0 (`"0"`, as `String` writes it).
 */
export function floatText(value: number): string {
  const k = Math.round(value * 10_000);
  if (k / 10_000 !== value || !(k < 1e13 && k > -1e13)) return String(value);
  const magnitude = k < 0 ? -k : k;
  const whole = Math.floor(magnitude / 10_000);
  const text = `${whole}${TEN_THOUSANDTHS[magnitude - whole * 10_000]}`;
  return k < 0 ? `-${text}` : text;
}
