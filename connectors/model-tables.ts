/**
 * Writes rows of the models' own tables (weather, grid status, maintenance windows, expectation results)
 * to the hot store: one escaped `INSERT … VALUES` per batch of at most 10,000 rows. These tables are small
 * beside the readings, so the hot tables' streaming encoders are not needed here.
 */
import { type SqlValue, sql } from '../codecs/sql.js';
import type { ModelTable } from '../schemas/models.js';
import { modelTables, reportTables } from '../schemas/models.js';
import type { Column } from '../schemas/reading.js';
import type { HotStore } from './clickhouse.js';

const BATCH = 10_000;

function sqlValueOf(type: Column<unknown>['type'], v: ReturnType<Column<unknown>['get']>): SqlValue {
  if (v === null) return null;
  if ((type === 'DateTime' || type === 'NullableDateTime') && typeof v === 'number') return new Date(v);
  return v as SqlValue;
}

export async function insertModelRows<Row>(
  store: HotStore,
  table: string,
  rows: readonly Row[],
): Promise<number> {
  const spec: ModelTable | undefined = [...modelTables, ...reportTables].find((t) => t.name === table);
  if (spec === undefined) throw new RangeError(`no model table ${table}`);
  const columns = spec.columns as unknown as readonly Column<Row>[];
  const names = sql.join(columns.map((c) => sql.ident(c.name)));
  for (let i = 0; i < rows.length; i += BATCH) {
    const values = rows
      .slice(i, i + BATCH)
      .map((row) => sql`(${sql.list(columns.map((c) => sqlValueOf(c.type, c.get(row))))})`);
    await store.command(
      sql`INSERT INTO ${sql.ident(store.database, table)} (${names}) VALUES ${sql.join(values)}`,
    );
  }
  return rows.length;
}
