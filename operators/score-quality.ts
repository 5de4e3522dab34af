import { parDo, type Transform } from '../core/index.js';
import type { Grade, QualityTier, Reading } from '../schemas/reading.js';
import type { RuleProfile } from './rule-profile.js';

/**
 * Scores every reading 0–100 by the first seed's deductions and derives its tier (first seed) and letter
 * grade (second seed) from the same score.
 *
 * Choices the seeds leave open:
 * - A reading without a value (a NULL reading or a missing interval of a gap) scores 0, tier quarantine,
 *   grade F: there is nothing in it to trust, and that keeps it out of every analytics threshold.
 * - "−10 per hour interpolated" is charged in full to each interpolated reading: the score is per record,
 *   this stage is stateless and does not know the meter's cadence, and an estimate should not look as
 *   good as a measurement with a small blemish (interpolated + unit-converted falls to standard).
 * - The unit deduction applies once when the unit was converted or inferred: an inferred unit is a guess.
 * - Validation warnings are read from `warnings` only (the validator counts each one there), never from
 *   flags, so none is charged twice.
 */
export function scoreQuality(thresholds: RuleProfile['quality']): Transform<Reading, Reading> {
  const { unitConversion, perInterpolatedHour, perValidationWarning, rateOfChangeFlag, fault } = thresholds;
  return parDo<Reading, Reading>((r, out) => {
    let score = 0;
    if (r.kw !== null && r.status !== 'missing') {
      let unit = false;
      let rateOfChange = false;
      let faulty = false;
      const flags = r.flags;
      for (let i = 0; i < flags.length; i++) {
        const f = flags[i];
        if (f === 'unit_converted' || f === 'unit_inferred') unit = true;
        else if (f === 'spike' || f === 'drop') rateOfChange = true;
        else if (f === 'fault_excluded') faulty = true;
      }
      score = 100 - r.warnings * perValidationWarning;
      if (unit) score -= unitConversion;
      if (r.status === 'interpolated') score -= perInterpolatedHour;
      if (rateOfChange) score -= rateOfChangeFlag;
      if (faulty) score -= fault;
      score = score <= 0 ? 0 : score >= 100 ? 100 : Math.round(score);
    }
    r.qualityScore = score;
    r.qualityTier = tierOf(score, thresholds);
    r.grade = gradeOf(score, thresholds);
    out.emit(r);
  });
}

export function tierOf(score: number, t: RuleProfile['quality']): QualityTier {
  if (score >= t.premiumFrom) return 'premium';
  return score >= t.standardFrom ? 'standard' : 'quarantine';
}

export function gradeOf(score: number, t: RuleProfile['quality']): Grade {
  if (score >= t.gradeA) return 'A';
  if (score >= t.gradeB) return 'B';
  return score >= t.gradeC ? 'C' : 'F';
}
