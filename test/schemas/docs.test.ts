import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { hotSchemaMarkdown } from '../../schemas/clickhouse.js';
import { modelsMarkdown } from '../../schemas/models.js';

describe('docs/hot-schema.md', () => {
  it('documents exactly the tables and columns the code creates', () => {
    const doc = readFileSync(new URL('../../docs/hot-schema.md', import.meta.url), 'utf8');
    expect(doc.slice(doc.indexOf('-->') + 5)).toBe(hotSchemaMarkdown());
  });
});

describe('docs/models.md', () => {
  it('documents exactly the model tables and views the migrations create', () => {
    const doc = readFileSync(new URL('../../docs/models.md', import.meta.url), 'utf8');
    expect(doc.slice(doc.indexOf('-->') + 5)).toBe(modelsMarkdown());
  });
});
