import { parseArgs } from 'node:util';
import { BehaviorSubject } from 'rxjs';
import { SideInput, StateStore } from '../core/index.js';
import type { MeterRegistry } from '../operators/outputs.js';
import { resolveRuleProfile } from '../operators/rule-profile.js';
import { PIPELINE_VERSION } from '../pipelines/job.js';
import { meterQualityGraph } from '../pipelines/meter-quality.js';
import { type Command, UsageError } from './main.js';

export const graphCommand: Command = {
  name: 'graph',
  summary: 'print the operator graph (Mermaid or Graphviz dot)',
  usage: 'Usage: greenstream graph [--format mermaid|dot]',
  run: async (argv) => {
    const { values } = parseArgs({ args: argv, options: { format: { type: 'string', default: 'mermaid' } } });
    const { graph } = meterQualityGraph({
      profile: resolveRuleProfile(),
      registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject(new Map())),
      store: new StateStore(),
      lineage: { pipelineVersion: PIPELINE_VERSION, processedAt: () => 0 },
      replay: false,
    });
    if (values.format === 'mermaid') process.stdout.write(graph.toMermaid());
    else if (values.format === 'dot') process.stdout.write(graph.toDot());
    else throw new UsageError(`--format must be mermaid or dot, got "${values.format}"`);
    return 0;
  },
};
