/**
 * Validates the optional measurements a reading was sent with (voltage, current, power factor, frequency,
 * temperature, humidity): each must be a decimal number within its plausible range of the rule profile,
 * or the whole reading is quarantined with one reason per bad measurement (`invalid_voltage:"abc"`,
 * `implausible_voltage:312 outside [150, 280]`), as any reading failing a rule is. Accepted values are
 * stored on the reading; a reading sent without measurements passes untouched.
 */
import { parDo, type Transform } from '../core/index.js';
import { MEASUREMENT_NAMES, type MeasurementName, type Measurements } from '../schemas/reading.js';
import { type Lineage, QUARANTINE } from './outputs.js';
import type { ParsedReading } from './parse-reading.js';
import { toQuarantineRecord } from './quarantine-record.js';
import type { RuleProfile } from './rule-profile.js';

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** [min, max] per measurement from the profile. */
export function measurementRanges(
  t: RuleProfile['measurements'],
): Readonly<Record<MeasurementName, readonly [number, number]>> {
  return {
    voltage: [t.voltageMinV, t.voltageMaxV],
    current: [t.currentMinA, t.currentMaxA],
    power_factor: [t.powerFactorMin, t.powerFactorMax],
    frequency: [t.frequencyMinHz, t.frequencyMaxHz],
    temperature: [t.temperatureMinC, t.temperatureMaxC],
    humidity: [t.humidityMinPct, t.humidityMaxPct],
  };
}

export function validateMeasurements(
  thresholds: RuleProfile['measurements'],
  lineage: Lineage,
): Transform<ParsedReading, ParsedReading> {
  const ranges = measurementRanges(thresholds);
  return parDo<ParsedReading, ParsedReading>((r, out) => {
    const sent = r.sentMeasurements;
    if (sent === undefined) {
      out.emit(r);
      return;
    }
    r.sentMeasurements = undefined;
    const values: Measurements = {};
    const reasons: string[] = [];
    for (const name of MEASUREMENT_NAMES) {
      const text = sent[name];
      if (text === undefined) continue;
      const v = DECIMAL.test(text) ? Number(text) : Number.NaN;
      const [min, max] = ranges[name];
      if (!Number.isFinite(v)) reasons.push(`invalid_${name}:${JSON.stringify(text.slice(0, 32))}`);
      else if (v < min || v > max) reasons.push(`implausible_${name}:${v} outside [${min}, ${max}]`);
      else values[name] = v;
    }
    if (reasons.length > 0) {
      out.tag(QUARANTINE, toQuarantineRecord(r, reasons, lineage));
      return;
    }
    r.measurements = values;
    out.emit(r);
  });
}
