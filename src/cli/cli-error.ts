/** A problem the user can fix; printed as its message alone, without a stack. Exits 1. */
export class CliError extends Error {
  override name = 'CliError';
}

/** Bad command-line usage (unknown command or option, missing or malformed value). Exits 2. */
export class UsageError extends CliError {
  override name = 'UsageError';
}

/** Exit codes: usage errors 2 everywhere, runtime errors 1. */
export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;
