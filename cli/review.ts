/**
 * `greenstream review list|approve|reject|override|backlog`: the Review page's actions on the command
 * line, against the hot store itself (a chDB folder no worker holds, or a ClickHouse server).
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import {
  approveQuarantined,
  listQuarantine,
  overrideScore,
  raiseReviewBacklogAlerts,
  rejectQuarantined,
} from '../console/review.js';
import { type ConsoleStore, openConsoleStore } from '../console/store.js';
import { type Command, UsageError } from './main.js';
import { loadProfile, parseHotTarget, parseTime } from './options.js';
import { render } from './sql.js';

const USAGE = [
  'Usage: greenstream review list [--meter <id>] [--reason <reason>] [--decision undecided|decided|all] [--limit 50] [--format table|json|csv]',
  '       greenstream review approve <id> --reason "<why>" [--value <kW>] [--reviewer <name>]',
  '       greenstream review reject <id> --reason "<why>" [--reviewer <name>]',
  '       greenstream review override <meter> <time> --score <0-100> --reason "<why>" [--reviewer <name>]',
  '       greenstream review backlog [--dead-letter <dir>]   raise the alert for records waiting more than 24 h',
  '  Every command takes [--hot chdb:<dir>|http(s)://host:8123] [--database <db>]; ids are those `list` prints.',
  '  The reviewer defaults to $GS_REVIEWER, else the login name. A decision already taken, or a record',
  '  that is not there, is refused (exit status 5) and changes nothing.',
].join('\n');

/** Who the command acts as: `--reviewer`, `$GS_REVIEWER`, the login name. */
export function reviewerOf(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const name = flag ?? env.GS_REVIEWER ?? env.USER ?? userInfo().username;
  if (name.trim() === '') throw new UsageError('give --reviewer <name>');
  return name;
}

export const reviewCommand: Command = {
  name: 'review',
  summary: 'list quarantined records; approve, reject or override a score, with a reason (review_log)',
  usage: USAGE,
  run: async (argv) => {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        hot: { type: 'string' },
        database: { type: 'string' },
        meter: { type: 'string' },
        reason: { type: 'string' },
        decision: { type: 'string', default: 'undecided' },
        limit: { type: 'string', default: '50' },
        format: { type: 'string', default: 'table' },
        value: { type: 'string' },
        score: { type: 'string' },
        reviewer: { type: 'string' },
        profile: { type: 'string' },
        'dead-letter': { type: 'string' },
      },
    });
    const [action, ...args] = positionals;
    const need = (n: number, what: string) => {
      if (args.length !== n) throw new UsageError(`review ${action} takes ${what}`);
    };
    const reason = () => {
      if (values.reason === undefined || values.reason.trim() === '')
        throw new UsageError(`review ${action} needs --reason "<why>"`);
      return values.reason;
    };
    let run: (store: ConsoleStore) => Promise<string>;
    switch (action) {
      case 'list': {
        need(0, 'no arguments');
        const decision = values.decision;
        if (decision !== 'undecided' && decision !== 'decided' && decision !== 'all')
          throw new UsageError(`--decision must be undecided, decided or all, got "${decision}"`);
        const format = values.format;
        if (format !== 'table' && format !== 'json' && format !== 'csv')
          throw new UsageError(`--format must be table, json or csv, got "${format}"`);
        const limit = Number(values.limit);
        if (!(Number.isInteger(limit) && limit > 0))
          throw new UsageError('--limit must be a positive integer');
        run = async (store) => {
          const rows = await listQuarantine(store, {
            ...(values.meter === undefined ? {} : { meter: values.meter }),
            ...(values.reason === undefined ? {} : { reason: values.reason }),
            decision,
            limit,
          });
          return render(
            rows.map((r) => ({
              id: r.id,
              meter_id: r.meter_id,
              ts: r.ts === null ? '' : new Date(r.ts).toISOString(),
              reasons: r.reasons.join(' '),
              raw: r.raw,
              quarantined_at: new Date(r.quarantined_at).toISOString(),
              decision: r.decision,
            })),
            format,
          );
        };
        break;
      }
      case 'approve':
      case 'reject': {
        need(1, 'one quarantine id (as `review list` prints it)');
        const why = reason();
        const reviewer = reviewerOf(values.reviewer, process.env);
        const id = args[0]!;
        let valueKw: number | undefined;
        if (values.value !== undefined) {
          if (action === 'reject') throw new UsageError('--value goes with approve');
          valueKw = Number(values.value);
          if (values.value.trim() === '' || !Number.isFinite(valueKw) || valueKw < 0)
            throw new UsageError(`--value must be kW ≥ 0, got "${values.value}"`);
        }
        run = async (store) =>
          action === 'reject'
            ? (await rejectQuarantined(store, id, { reviewer, reason: why })).message
            : (
                await approveQuarantined(store, id, {
                  reviewer,
                  reason: why,
                  profile: loadProfile(values.profile),
                  ...(valueKw === undefined ? {} : { valueKw }),
                })
              ).message;
        break;
      }
      case 'override': {
        need(2, 'a meter id and a time');
        const why = reason();
        const reviewer = reviewerOf(values.reviewer, process.env);
        const score = Number(values.score);
        if (values.score === undefined || !(Number.isInteger(score) && score >= 0 && score <= 100))
          throw new UsageError(`--score must be a whole number 0–100, got "${values.score ?? ''}"`);
        const ts = parseTime(args[1]!, 'the time').getTime();
        run = async (store) =>
          (
            await overrideScore(store, args[0]!, ts, {
              reviewer,
              reason: why,
              score,
              profile: loadProfile(values.profile),
            })
          ).message;
        break;
      }
      case 'backlog': {
        need(0, 'no arguments');
        const deadLetterDir = values['dead-letter'];
        run = async (store) => {
          const alerts = await raiseReviewBacklogAlerts(
            store,
            deadLetterDir === undefined ? {} : { deadLetterDir },
          );
          return alerts.length === 0
            ? 'nothing has waited more than 24 h for a review'
            : alerts.map((a) => `alert ${a.severity} ${a.kind}: ${a.message}`).join('\n');
        };
        break;
      }
      default:
        throw new UsageError(
          `review needs list, approve, reject, override or backlog, got "${action ?? ''}"`,
        );
    }
    const store = await openConsoleStore(
      parseHotTarget(values.hot, process.env, values.database ?? process.env.CLICKHOUSE_DATABASE),
    );
    try {
      const out = await run(store);
      process.stdout.write(out.endsWith('\n') ? out : `${out}\n`);
    } finally {
      await store.close();
    }
    return 0;
  },
};
