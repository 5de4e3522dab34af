/**
 * `greenstream review list|approve|reject|override|backlog`: the Review page's actions on the command
 * line, against the hot store itself (a chDB folder no worker holds, or a ClickHouse server).
 */
import { userInfo } from 'node:os';
import {
  approveQuarantined,
  listQuarantine,
  overrideScore,
  raiseReviewBacklogAlerts,
  rejectQuarantined,
} from '../console/review.js';
import { type ConsoleStore, openConsoleStore } from '../console/store.js';
import { type Command, UsageError } from './main.js';
import { type OptionSpec, optionsHelp, optionTable, parseOptions } from './option-table.js';
import { hotStoreOptions, loadProfile, parseHotTarget, parseTime } from './options.js';
import { render } from './sql.js';

/** `--hot` and `--database` as `review` and `dlq` declare them. */
export const STORE_OPTIONS: readonly OptionSpec[] = [
  ...hotStoreOptions({ hot: 'chdb:<dir> (no worker may hold it) or http(s)://host:8123' }),
];

/** `--reviewer`, which falls back to the login name. */
export const REVIEWER_OPTION: OptionSpec = {
  name: 'reviewer',
  type: 'string',
  arg: 'name',
  env: 'GS_REVIEWER',
  defaultText: 'the login name',
  help: 'who takes the decision, as review_log records it',
};

export const reviewTable = optionTable({
  command: 'review',
  synopsis: [
    'Usage: greenstream review list [--meter <id>] [--reason <reason>] [--decision undecided|decided|all] [--limit 50] [--format table|json|csv]',
    '       greenstream review approve <id> --reason "<why>" [--value <kW>] [--reviewer <name>]',
    '       greenstream review reject <id> --reason "<why>" [--reviewer <name>]',
    '       greenstream review override <meter> <time> --score <0-100> --reason "<why>" [--reviewer <name>]',
    '       greenstream review backlog [--dead-letter <dir>]   raise the alert for records waiting more than 24 h',
    '  Every action takes [--hot chdb:<dir>|http(s)://host:8123] [--database <db>]; ids are those `list` prints.',
    '  A decision already taken, or a record that is not there, is refused (exit status 5) and changes nothing.',
  ],
  positionals: true,
  options: [
    ...STORE_OPTIONS,
    { name: 'meter', type: 'string', arg: 'id', env: 'GS_REVIEW_METER', help: 'list: only this meter' },
    {
      name: 'reason',
      type: 'string',
      arg: 'text',
      env: 'GS_REVIEW_REASON',
      help: 'list: only records quarantined for this reason; approve, reject, override: why (required)',
    },
    {
      name: 'decision',
      type: 'string',
      choices: ['undecided', 'decided', 'all'],
      env: 'GS_REVIEW_DECISION',
      default: 'undecided',
      help: 'list: which records',
    },
    {
      name: 'limit',
      type: 'integer',
      env: 'GS_REVIEW_LIMIT',
      default: 50,
      help: 'list: at most this many rows',
    },
    {
      name: 'format',
      type: 'string',
      choices: ['table', 'json', 'csv'],
      env: 'GS_REVIEW_FORMAT',
      default: 'table',
      help: 'list: output format',
    },
    {
      name: 'value',
      type: 'string',
      arg: 'kW',
      env: 'GS_REVIEW_VALUE',
      help: 'approve: store this corrected value (kW ≥ 0) instead of the raw one',
    },
    {
      name: 'score',
      type: 'integer',
      arg: '0-100',
      min: 0,
      max: 100,
      env: 'GS_REVIEW_SCORE',
      help: 'override: the new quality score (required)',
    },
    REVIEWER_OPTION,
    {
      name: 'profile',
      type: 'string',
      arg: 'json',
      help: 'rule profile overrides (approve, override: the rules the record is scored by)',
    },
    {
      name: 'dead-letter',
      type: 'string',
      arg: 'dir',
      env: 'GS_LANDING_DEAD_LETTER',
      help: "backlog: the landing folder's dead-letter folder, whose old files count too",
    },
  ],
});

/** Who the command acts as: `--reviewer`, `$GS_REVIEWER`, the login name (a blank variable counts as unset). */
export function reviewerOf(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const fromEnv = env.GS_REVIEWER?.trim() === '' ? undefined : env.GS_REVIEWER;
  const name = flag ?? fromEnv ?? env.USER ?? userInfo().username;
  if (name.trim() === '') throw new UsageError('give --reviewer <name>');
  return name;
}

export const reviewCommand: Command = {
  name: 'review',
  summary: 'list quarantined records; approve, reject or override a score, with a reason (review_log)',
  usage: optionsHelp(reviewTable),
  run: async (argv) => {
    const { values: v, positionals } = parseOptions(reviewTable, argv);
    const values = {
      hot: v.hot as string,
      database: v.database as string | undefined,
      meter: v.meter as string | undefined,
      reason: v.reason as string | undefined,
      decision: v.decision as 'undecided' | 'decided' | 'all',
      limit: v.limit as number,
      format: v.format as 'table' | 'json' | 'csv',
      value: v.value as string | undefined,
      score: v.score as number | undefined,
      reviewer: v.reviewer as string | undefined,
      profile: v.profile as string | undefined,
      'dead-letter': v['dead-letter'] as string | undefined,
    };
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
        const { decision, format, limit } = values;
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
        const score = values.score;
        if (score === undefined) throw new UsageError('review override needs --score <0-100>');
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
    const store = await openConsoleStore(parseHotTarget(values.hot, process.env, values.database));
    try {
      const out = await run(store);
      process.stdout.write(out.endsWith('\n') ? out : `${out}\n`);
    } finally {
      await store.close();
    }
    return 0;
  },
};
