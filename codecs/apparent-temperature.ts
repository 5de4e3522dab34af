/**
 * Apparent temperatures derived from a weather observation (seed "Staging Weather Data": heat index, wind
 * chill): pure formulas, each returning the air temperature where its formula does not apply.
 */

const toF = (c: number): number => (c * 9) / 5 + 32;
const toC = (f: number): number => ((f - 32) * 5) / 9;

/**
 * The US National Weather Service heat index: Steadman's simple formula, and where that reaches 80 °F the
 * Rothfusz regression with the NWS low- and high-humidity adjustments. Without humidity: the temperature.
 */
export function heatIndexC(temperatureC: number, humidityPct: number | null): number {
  if (humidityPct === null || !Number.isFinite(humidityPct)) return temperatureC;
  const t = toF(temperatureC);
  const rh = Math.min(100, Math.max(0, humidityPct));
  const simple = 0.5 * (t + 61 + (t - 68) * 1.2 + rh * 0.094);
  if ((simple + t) / 2 < 80) return t < 80 ? temperatureC : toC(simple);
  let hi =
    -42.379 +
    2.04901523 * t +
    10.14333127 * rh -
    0.22475541 * t * rh -
    0.00683783 * t * t -
    0.05481717 * rh * rh +
    0.00122874 * t * t * rh +
    0.00085282 * t * rh * rh -
    0.00000199 * t * t * rh * rh;
  if (rh < 13 && t >= 80 && t <= 112) hi -= ((13 - rh) / 4) * Math.sqrt((17 - Math.abs(t - 95)) / 17);
  else if (rh > 85 && t >= 80 && t <= 87) hi += ((rh - 85) / 10) * ((87 - t) / 5);
  return toC(hi);
}

/**
 * The 2001 wind chill index (Environment Canada / NWS), defined at or below 10 °C and above 4.8 km/h of
 * wind; elsewhere the temperature.
 */
export function windChillC(temperatureC: number, windSpeedMs: number | null): number {
  if (windSpeedMs === null || !Number.isFinite(windSpeedMs)) return temperatureC;
  const v = windSpeedMs * 3.6;
  if (temperatureC > 10 || v <= 4.8) return temperatureC;
  const p = v ** 0.16;
  return 13.12 + 0.6215 * temperatureC - 11.37 * p + 0.3965 * temperatureC * p;
}
