/**
 * The `review_log` table: every decision a person took on a quarantined record, a dead letter or a
 * reading's score (who, when, what, why, the row before and after), written by `console/review.ts`.
 * Migration 20 of the hot store creates it (versions 20–29 belong to the review work).
 */

import { sql } from '../codecs/sql.js';
import type { Migration } from './clickhouse.js';

export const REVIEW_LOG_TABLE = 'review_log';

/** What a review row is about. */
export type ReviewTarget = 'quarantine' | 'dead_letter' | 'reading';

/** What was done: approve/reject a quarantined record, override a reading's score, redrive a dead letter. */
export type ReviewAction = 'approve' | 'reject' | 'override' | 'redrive';

/** One `review_log` row as read back (times as `YYYY-MM-DD hh:mm:ss` UTC text). */
export interface ReviewLogRow {
  readonly target: ReviewTarget;
  readonly target_id: string;
  readonly action: ReviewAction;
  readonly reviewer: string;
  readonly reviewed_at: string;
  readonly reason: string;
  readonly meter_id: string;
  readonly before: string;
  readonly after: string;
}

/**
 * One row per decision. The key holds the decision itself, so writing the same decision again (a retried
 * insert) collapses into one row, while a later, different decision on the same record is a row of its own.
 */
export const reviewLogMigration: Migration = {
  version: 20,
  name: 'create review_log',
  statements: ({ database }) => [
    sql`CREATE TABLE IF NOT EXISTS ${sql.ident(database, REVIEW_LOG_TABLE)} (
  target String COMMENT 'quarantine | dead_letter | reading',
  target_id String COMMENT 'quarantine: cityHash64(source, raw) as text; dead_letter: its path in the dead-letter folder; reading: meter_id@ts',
  action String COMMENT 'approve | reject | override | redrive',
  reviewer String COMMENT 'Who decided',
  reviewed_at DateTime('UTC') COMMENT 'When',
  reason String COMMENT 'Why, as the reviewer wrote it',
  meter_id String COMMENT 'Meter concerned (empty for a dead letter)',
  before String COMMENT 'The row before the decision, JSON',
  after String COMMENT 'The row written by the decision, JSON (empty for reject)'
) ENGINE = ReplacingMergeTree()
ORDER BY (target, target_id, action, reviewed_at)`,
  ],
};
