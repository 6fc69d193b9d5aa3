// Waiting in tests: poll a condition instead of sleeping for a guessed time.

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls check every 20 ms until it holds; throws naming `what` after timeoutMs. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
