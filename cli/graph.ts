import { BehaviorSubject } from 'rxjs';
import { SideInput, StateStore } from '../core/index.js';
import type { MeterRegistry } from '../operators/outputs.js';
import type { WeatherLookup } from '../operators/peak-exclusions.js';
import { resolveRuleProfile } from '../operators/rule-profile.js';
import { PIPELINE_VERSION } from '../pipelines/job.js';
import { meterQualityGraph } from '../pipelines/meter-quality.js';
import type { MaintenanceWindow } from '../schemas/external.js';
import type { Command } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';

export const graphTable = optionTable({
  command: 'graph',
  synopsis: ['Usage: greenstream graph [--format mermaid|dot]', '  Prints the operator graph.'],
  options: [
    {
      name: 'format',
      type: 'string',
      choices: ['mermaid', 'dot'],
      env: 'GS_GRAPH_FORMAT',
      default: 'mermaid',
      help: 'Mermaid flowchart or Graphviz dot',
    },
  ],
});

export const graphCommand: Command = {
  name: 'graph',
  summary: 'print the operator graph (Mermaid or Graphviz dot)',
  usage: optionsHelp(graphTable),
  run: async (argv) => {
    const { values } = parseOptions(graphTable, argv);
    const profile = resolveRuleProfile();
    const { graph } = meterQualityGraph({
      profile,
      registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject(new Map())),
      store: new StateStore(),
      lineage: { pipelineVersion: PIPELINE_VERSION, processedAt: () => 0 },
      replay: false,
      // The stage `run` adds with the profile's exclusions on; the inputs only matter to a running graph.
      ...(profile.exclusions.enabled
        ? {
            exclusions: {
              weather: new SideInput<WeatherLookup>('weather', new BehaviorSubject(new Map())),
              maintenance: new SideInput<readonly MaintenanceWindow[]>(
                'maintenance',
                new BehaviorSubject([]),
              ),
            },
          }
        : {}),
    });
    if (values.format === 'mermaid') process.stdout.write(graph.toMermaid());
    else process.stdout.write(graph.toDot());
    return 0;
  },
};
