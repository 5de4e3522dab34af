/**
 * CSV rendering in the landing layout: one file per gateway and hour, `raw/YYYY/MM/DD/HH/gw-XXXX.csv`.
 * Gateways differ the way real ones do: most write `Z` timestamps, some an offset, some no zone
 * (UTC by contract) or milliseconds; some add a `location` column, quote every field, or end lines
 * with CRLF. Lines are built by concatenation and joined once per file: the hot path of a 50,000-meter day.
 */
import {
  type Dataset,
  type ExtraReading,
  FLAG_DUPLICATE_NEXT_FILE,
  FLAG_DUPLICATE_SAME_FILE,
  FLAG_MISSING_UNIT,
  FLAG_OVERRIDE,
} from './dataset.js';
import { formatHalfHourKwh, formatKw, formatW, gatewayName } from './format.js';
import { isoSeconds, type ResolvedOptions, SLOT_MS, SLOTS_PER_HOUR } from './options.js';
import { chance, pick, substream } from './rng.js';
import { MISSING, NULL_VALUE } from './series.js';

export interface GatewayStyle {
  readonly timeZone: 'Z' | 'Zms' | 'offset' | 'naive';
  readonly offsetMinutes: number;
  readonly location: boolean;
  readonly quoteAll: boolean;
  readonly crlf: boolean;
}

export interface HourFile {
  /** Relative to the output folder: `raw/2024/03/11/14/gw-0001.csv`. */
  readonly path: string;
  readonly csv: string;
  /** Start of the hour, `YYYY-MM-DDTHH:00:00Z`. */
  readonly hour: string;
  readonly gateway: string;
  /** Lines after the header. */
  readonly lines: number;
}

export const readingsHeader = 'meter_id,timestamp,value,unit';

export function gatewayStyles(options: ResolvedOptions, gateways: number): GatewayStyle[] {
  const styles: GatewayStyle[] = [];
  for (let g = 0; g < gateways; g++) {
    const rng = substream(options.seed, 'gateway', g);
    const zoneDraw = rng.next();
    const timeZone = zoneDraw < 0.75 ? 'Z' : zoneDraw < 0.83 ? 'Zms' : zoneDraw < 0.92 ? 'offset' : 'naive';
    styles.push({
      timeZone,
      offsetMinutes: timeZone === 'offset' ? pick(rng, [60, 120, -300, 330, -180]) : 0,
      location: chance(rng, 0.2),
      quoteAll: chance(rng, 0.05),
      crlf: chance(rng, 0.1),
    });
  }
  return styles;
}

function formatTimestamp(ms: number, style: GatewayStyle): string {
  switch (style.timeZone) {
    case 'Z':
      return isoSeconds(ms);
    case 'Zms':
      return new Date(ms).toISOString();
    case 'naive':
      return new Date(ms).toISOString().slice(0, 19);
    case 'offset': {
      const local = new Date(ms + style.offsetMinutes * 60_000).toISOString().slice(0, 19);
      const abs = Math.abs(style.offsetMinutes);
      const sign = style.offsetMinutes < 0 ? '-' : '+';
      return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
    }
  }
}

function quote(field: string): string {
  return field.startsWith('"') ? field : `"${field.replaceAll('"', '""')}"`;
}

export class LineRenderer {
  private readonly stamps = new Map<string, string[]>();
  private readonly gatewayStamps: (string[] | undefined)[] = [];

  constructor(
    private readonly data: Dataset,
    readonly styles: readonly GatewayStyle[],
  ) {}

  header(gateway: number): string {
    return this.styles[gateway].location ? `${readingsHeader},location` : readingsHeader;
  }

  private timestamps(style: GatewayStyle): string[] {
    const key = `${style.timeZone}${style.offsetMinutes}`;
    let list = this.stamps.get(key);
    if (!list) {
      list = [];
      for (let s = 0; s < this.data.options.slots; s++) {
        list.push(formatTimestamp(this.data.options.startMs + s * SLOT_MS, style));
      }
      this.stamps.set(key, list);
    }
    return list;
  }

  private stampsFor(gateway: number): string[] {
    const stamps = this.timestamps(this.styles[gateway]);
    this.gatewayStamps[gateway] = stamps;
    return stamps;
  }

  private join(
    style: GatewayStyle,
    id: string,
    timestamp: string,
    value: string,
    unit: string,
    location: string,
  ) {
    if (style.quoteAll) {
      const line = `${quote(id)},${quote(timestamp)},${quote(value)},${quote(unit)}`;
      return style.location ? `${line},${quote(location)}` : line;
    }
    const line = `${id},${timestamp},${value},${unit}`;
    return style.location ? `${line},${location}` : line;
  }

  /** The line written for a registered meter's interval; null when nothing is sent. */
  line(meterIndex: number, slot: number): string | null {
    const { values, flags, overrides, options, registry } = this.data;
    const index = meterIndex * options.slots + slot;
    const v = values[index];
    if (v === MISSING) return null;
    const meter = registry.meters[meterIndex];
    const style = this.styles[meter.gateway];
    const flag = flags[index];
    const change = flag & FLAG_OVERRIDE ? overrides.get(index) : undefined;
    if (change?.line !== undefined) return change.line;
    const stamps = this.gatewayStamps[meter.gateway] ?? this.stampsFor(meter.gateway);
    const timestamp = change?.timestamp ?? stamps[slot];
    const value =
      change?.value ??
      (v === NULL_VALUE
        ? ''
        : meter.reportsWatts
          ? formatW(v)
          : meter.reportsKwh
            ? formatHalfHourKwh(v)
            : formatKw(v));
    const unit = change?.unit ?? (flag & FLAG_MISSING_UNIT ? '' : meter.unit);
    return this.join(style, meter.info.meterId, timestamp, value, unit, meter.locationField);
  }

  extraLine(reading: ExtraReading, gateway: number): string {
    const style = this.styles[gateway];
    const timestamp = this.stampsFor(gateway)[reading.slot];
    return this.join(
      style,
      reading.meterId,
      timestamp,
      formatKw(reading.value),
      reading.unit,
      '"Unregistered"',
    );
  }
}

function hourFolder(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `raw/${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}`;
}

/** Every gateway's file for every hour, in time order (a header-only file when a gateway sent nothing). */
export function* renderHours(data: Dataset, renderer: LineRenderer): Generator<HourFile> {
  const { options, registry, flags, extras } = data;
  const gateways = registry.gateways;
  const carried = new Map<number, string[]>();
  for (let hour = 0; hour < options.hours; hour++) {
    const hourMs = options.startMs + hour * 3_600_000;
    const folder = hourFolder(hourMs);
    const hourIso = isoSeconds(hourMs);
    const firstSlot = hour * SLOTS_PER_HOUR;
    for (let g = 0; g < gateways; g++) {
      const lines: string[] = [renderer.header(g)];
      const late = carried.get(g);
      if (late) {
        lines.push(...late);
        carried.delete(g);
      }
      const resent: string[] = [];
      const firstMeter = g * options.gatewaySize;
      const lastMeter = Math.min(registry.meters.length, firstMeter + options.gatewaySize);
      for (let m = firstMeter; m < lastMeter; m++) {
        const rowAt = m * options.slots;
        for (let s = firstSlot; s < firstSlot + SLOTS_PER_HOUR; s++) {
          const line = renderer.line(m, s);
          if (line === null) continue;
          lines.push(line);
          const flag = flags[rowAt + s];
          if (flag & FLAG_DUPLICATE_SAME_FILE) resent.push(line);
          if (flag & FLAG_DUPLICATE_NEXT_FILE) {
            const list = carried.get(g) ?? [];
            list.push(line);
            carried.set(g, list);
          }
        }
      }
      for (const reading of extras.get(hour * gateways + g) ?? []) lines.push(renderer.extraLine(reading, g));
      lines.push(...resent);
      const eol = renderer.styles[g].crlf ? '\r\n' : '\n';
      yield {
        path: `${folder}/${gatewayName(g)}.csv`,
        csv: lines.join(eol) + eol,
        hour: hourIso,
        gateway: gatewayName(g),
        lines: lines.length - 1,
      };
    }
  }
}
