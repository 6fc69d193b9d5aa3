// npx, `npm exec` and `npm run` start a command through `sh -c`; on SIGTERM npm exits
// and the shell dies without passing the signal on, so the command never hears it and
// runs on as an orphan. A command started by npm (npm_command set in its environment)
// therefore treats the loss of its parent as the stop signal it did not get.
export interface ParentWatch {
  stop(): void;
}

export function underNpm(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.npm_command);
}

/** Calls onOrphaned once when this process's parent changes (it exited); checks every intervalMs. */
export function watchParent(onOrphaned: (formerParent: number) => void, intervalMs = 500): ParentWatch {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onOrphaned(parent);
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
