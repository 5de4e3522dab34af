/** The smart-meter data simulator: deterministic readings with labeled faults and anomalies. */
export { type CommandIo, runSimulateCommand, simulateUsage } from './cli.js';
export { type HourFile, readingsHeader } from './emit.js';
export {
  type AnomalyKind,
  anomalyKinds,
  type FaultKind,
  faultKinds,
  type LabelKind,
  labelKinds,
  type UnitKind,
  unitKinds,
} from './kinds.js';
export {
  type Detection,
  type KindCount,
  type KindScore,
  type LabelRole,
  type LabelSummary,
  type LabelsFile,
  type SimulationLabel,
  scoreDetections,
} from './labels.js';
export {
  type SimulateOptions,
  type SimulationOptions,
  SimulationOptionsError,
} from './options.js';
export { registryHeader } from './registry.js';
export {
  createSimulation,
  generateHours,
  generateLabels,
  generateRegistry,
  type Simulation,
  type SimulationSummary,
  simulate,
} from './simulation.js';
