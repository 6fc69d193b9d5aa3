// A job the worker runs on a timer of its own beside the heartbeat: the group's lag for
// metrics, scheduled messages, maintenance. Each is its own timer so that none of them
// can hold the heartbeat back: counting a backlog of ten million messages took 27 s, and
// a heartbeat that waited for it let the session expire and the buckets move.
//
// One run at a time. The next starts intervalMs after the last ended, or `spacing` times
// as long as that run took if that is longer: a job that has become slow (a count that
// grows with the backlog) then takes at most 1 / (spacing + 1) of a connection's time.

export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly intervalMs: number,
    private readonly job: () => Promise<void>,
    private readonly spacing = 0,
  ) {}

  /** Start the timer; `runNow` runs the job at once, and the promise resolves when that run has ended. */
  start(runNow: boolean): Promise<void> {
    if (runNow) return this.runAndSchedule();
    this.schedule(this.intervalMs);
    return Promise.resolve();
  }

  /** No more runs. Resolves when the run under way (if any) has ended; callers need not wait. */
  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    return this.current;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.runAndSchedule(), ms);
  }

  private runAndSchedule(): Promise<void> {
    const started = Date.now();
    // The job handles its own errors (it logs them); a throw here must not stop the timer.
    this.current = this.job().catch(() => {}).then(() => {
      this.schedule(Math.max(this.intervalMs, (Date.now() - started) * this.spacing));
    });
    return this.current;
  }
}
