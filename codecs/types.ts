/**
 * What the utility-format codecs (NEM12, Green Button) hand back: readings in the pipeline's `RawReading`
 * shape, record failures for quarantine, or a whole-file failure for the dead letters, plus the data
 * streams the file describes (for registering meters the registry does not know).
 *
 * Pure types; the codecs are pure functions of the text (no I/O, no clock).
 */
import type { RawReading } from '../schemas/reading.js';

export const NEM12_CONTENT_TYPE = 'text/x-nem12';
export const GREEN_BUTTON_CONTENT_TYPE = 'application/atom+xml';

export type CodecFormat = 'nem12' | 'green_button';

/** Why one record of a NEM12 file or Green Button feed was not turned into readings. */
export type CodecRecordFailureCode =
  | 'nem12_record'
  | 'nem12_interval_count'
  | 'nem12_unit'
  | 'nem12_superseded'
  | 'green_button_reading'
  | 'green_button_unit';

/** Why a whole NEM12 file or Green Button feed was refused. */
export type CodecMessageFailureCode = 'nem12_file' | 'green_button_feed';

/**
 * Local-time rules of a Green Button `LocalTimeParameters` (kept for local-time rules: peaks, seasons).
 * Offsets in seconds; the DST rules are ESPI's packed hex strings, as sent.
 */
export interface LocalTimeParameters {
  readonly tzOffsetSeconds: number;
  readonly dstOffsetSeconds: number;
  readonly dstStartRule: string;
  readonly dstEndRule: string;
}

/** One data stream as the file describes it: becomes a registry entry when the meter is unknown. */
export interface FileMeter {
  readonly meterId: string;
  readonly format: CodecFormat;
  /** The NMI (NEM12) or the usage point (Green Button) the stream belongs to. */
  readonly group: string;
  readonly intervalMinutes: number;
  /** Unit as the file gives it (`KWH`, `Wh` …). */
  readonly unit: string;
  readonly localTime?: LocalTimeParameters;
}

export interface CodecRecordFailure {
  readonly code: CodecRecordFailureCode;
  readonly reason: string;
  readonly raw: string;
  readonly meterId: string;
  /** 1-based line (NEM12) or reading number in the feed (Green Button). */
  readonly line: number;
  /** `<file>#<line>` or `<file>#<element path>`: names the file and the record. */
  readonly source: string;
}

export interface CodecOutput {
  readonly ok: true;
  readonly readings: RawReading[];
  readonly failures: CodecRecordFailure[];
  readonly meters: FileMeter[];
}

export interface CodecFileFailure {
  readonly ok: false;
  readonly code: CodecMessageFailureCode;
  readonly reason: string;
}

export type CodecResult = CodecOutput | CodecFileFailure;

export interface CodecOptions {
  /** Lineage of the payload: a file path or `stream:<stream>:<seq>`. */
  readonly source: string;
  /** Copied onto every reading, see `RawReading.receivedAt`. */
  readonly receivedAt: number;
}

/** `YYYY-MM-DDTHH:MM:SSZ` of an epoch-ms instant: the canonical form the parser takes on its fast path. */
export function isoSeconds(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}
