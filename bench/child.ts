/** Entry of a benchmark child process: runs one task sent by the parent and reports its figures. */
import type { ChildMessage, ParentMessage } from './protocol.js';
import { clickhouseOnlyTask } from './tasks/clickhouse-only.js';
import { drainTask } from './tasks/drain.js';
import { duckdbTask } from './tasks/duckdb.js';
import { graphTask } from './tasks/graph.js';
import { livePipelineTask, livePublishTask } from './tasks/live.js';
import { pipelineTask } from './tasks/pipeline.js';
import { publishFilesTask, publishJsonTask } from './tasks/publish.js';
import { threadsTask } from './tasks/threads.js';

export interface TaskContext {
  progress(text: string): void;
  ready(): void;
  /** Resolves when the parent asks the task to stop. */
  readonly stopped: Promise<void>;
}

type Task = (args: never, context: TaskContext) => Promise<unknown>;

const tasks: Record<string, Task> = {
  publishFiles: publishFilesTask,
  publishJson: publishJsonTask,
  pipeline: pipelineTask,
  drain: drainTask,
  duckdb: duckdbTask,
  clickhouseOnly: clickhouseOnlyTask,
  graph: graphTask,
  livePipeline: livePipelineTask,
  livePublish: livePublishTask,
  threads: threadsTask,
};

const send = (message: ChildMessage): void => {
  process.send?.(message);
};

let stop: () => void = () => {};
const stopped = new Promise<void>((resolve) => {
  stop = resolve;
});

process.on('message', (raw) => {
  const message = raw as ParentMessage;
  if (message.type === 'stop') {
    stop();
    return;
  }
  const task = tasks[message.task];
  if (task === undefined) {
    send({ type: 'failed', error: `unknown task ${message.task}` });
    return;
  }
  const context: TaskContext = {
    progress: (text) => send({ type: 'progress', text }),
    ready: () => send({ type: 'ready' }),
    stopped,
  };
  task(message.args as never, context).then(
    (result) => {
      send({ type: 'result', result });
      process.exitCode = 0;
    },
    (error: unknown) => {
      send({
        type: 'failed',
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
      process.exitCode = 1;
    },
  );
});

process.on('disconnect', () => {
  // The parent has what it needs (or is gone): leave even if a client keeps a socket open.
  setTimeout(() => process.exit(), 200).unref();
});
