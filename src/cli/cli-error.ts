/** A usage problem the user can fix; printed as its message alone, without a stack. */
export class CliError extends Error {
  override name = 'CliError';
}
