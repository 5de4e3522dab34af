import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { runGraphInMemory } from '../../pipelines/in-memory.js';
import type { RawReading } from '../../schemas/reading.js';

/**
 * The rules graded on data the project did not write: the Green Button sample households (one year of
 * hourly readings each, energy per interval in Wh; `../shared/data/greenbutton`), converted here to the
 * mean kW of each interval. Two healthy homes: every fault raised on them is a false one.
 */
const folder = join(process.cwd(), '..', 'shared', 'data', 'greenbutton');
const files = [
  'Coastal_Multi_Family_Jan_1_2011_to_Jan_1_2012_RetailCustomer_5.xml',
  'Desert_Single_Family_Jan_1_2011_to_Jan_1_2012_RetailCustomer_7.xml',
];

function dailyBatches(): RawReading[][] {
  const rows: { id: string; ts: number; kw: number }[] = [];
  files.forEach((file, i) => {
    const xml = readFileSync(join(folder, file), 'utf8');
    const blocks = xml.matchAll(
      /<IntervalReading>[\s\S]*?<duration>(\d+)<\/duration>\s*<start>(\d+)<\/start>[\s\S]*?<value>(-?\d+)<\/value>/g,
    );
    for (const m of blocks) {
      const seconds = Number(m[1]);
      // uom 72 (Wh), powerOfTenMultiplier 0 in both files: Wh per interval → mean kW.
      rows.push({ id: `GB-${i + 1}`, ts: Number(m[2]) * 1000, kw: Number(m[3]) / 1000 / (seconds / 3600) });
    }
  });
  rows.sort((a, b) => a.ts - b.ts || a.id.localeCompare(b.id));
  const batches: RawReading[][] = [];
  for (let i = 0; i < rows.length; ) {
    const day = Math.floor(rows[i]!.ts / 86_400_000);
    const lines = ['meter_id,timestamp,value,unit'];
    for (; i < rows.length && Math.floor(rows[i]!.ts / 86_400_000) === day; i++) {
      const r = rows[i]!;
      lines.push(`${r.id},${new Date(r.ts).toISOString()},${r.kw.toFixed(4)},kW`);
    }
    const decoded = decodeReadings(Buffer.from(lines.join('\n')), {
      source: `greenbutton-${day}`,
      receivedAt: (day + 1) * 86_400_000,
      lineRefs: true,
    });
    if (!decoded.ok) throw new Error(`day ${day} did not decode`);
    batches.push(decoded.readings);
  }
  return batches;
}

describe('fault rules on two real households (Green Button samples, a year of hourly readings)', () => {
  it('raise no fault on them; the literal 4σ erratic-spike rule is measured beside', () => {
    const batches = dailyBatches();
    expect(batches.flat()).toHaveLength(2 * 8760);
    const { registry } = parseRegistryCsv(
      'meter_id,region,neighborhood,meter_type,vacant,max_kw\nGB-1,us,gb,residential,false,\nGB-2,us,gb,residential,false,\n',
    );
    const count = (spikeRule: 'own_profile' | 'seed_sigma') => {
      const out = runGraphInMemory(batches, registry, resolveRuleProfile({ faults: { spikeRule } }), {
        replay: true,
      });
      expect(out.quarantine).toEqual([]);
      return out.faults
        .filter((f) => JSON.parse(f.evidence).status !== 'cleared')
        .map((f) => `${f.meterId} ${f.faultType}`);
    };
    const own = count('own_profile');
    const literal = count('seed_sigma');
    console.log(
      `Green Button, 2 homes × 1 year: own_profile ${own.length} faults, seed_sigma ${literal.length} (${literal.join('; ')})`,
    );
    expect(own).toEqual([]);
  }, 60_000);
});
