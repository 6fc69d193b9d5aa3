// Shared by the vitest global setup (main process) and test files (workers).

/** The migrated database every test database is cloned from. */
export const TEMPLATE_DATABASE = 'bucketq_template';

/** Session advisory lock (on the admin database) that serialises template cloning. */
export const CLONE_LOCK_KEY = 7_310_552_001;

/** Same server and credentials, another database. Needs a URL-style connection string. */
export function databaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** Connection string with CREATEDB rights, used to clone and drop test databases. */
    bucketqAdminUrl: string;
    /** Prefix of every database this run creates, so teardown can drop leftovers. */
    bucketqRunPrefix: string;
  }
}
