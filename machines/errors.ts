/**
 * Error codes are the API's codes (docs/architecture.md, design 2). The core returns errors as values; the
 * host turns them into replies, so a rejected request never throws through the machine.
 */
export const ERROR_CODES = ['invalid_argument', 'not_found', 'conflict', 'ended', 'limit_exceeded', 'unavailable', 'internal'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface EngineError {
  code: ErrorCode;
  message: string;
  /** With `limit_exceeded`: the quota that was reached (a key of the Quotas schema in src/quota/quotas.ts, or pending_requests). */
  quota?: string;
}

export const engineError = (code: ErrorCode, message: string, quota?: string): EngineError => (quota === undefined ? { code, message } : { code, message, quota });

/** A validation failure in one line: the first five issues, each with its path. */
export function describeIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.map(String).join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}
