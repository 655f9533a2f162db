/** A revision-checked KV write was refused: someone else wrote the key since we read it. */
export class RevisionConflict extends Error {
  override readonly name = 'RevisionConflict';
  constructor(readonly key: string, options?: { cause?: unknown }) {
    super(`revision conflict on ${key}: another writer owns it now`, options);
  }
}

/** nats-server answers a failed expected-revision write with API error 10071. */
export function isRevisionConflict(e: unknown): boolean {
  const err = e as { api_error?: { err_code?: number }; code?: number | string; message?: string };
  return err?.code === 10071 || err?.api_error?.err_code === 10071 || /wrong last sequence|10071/.test(String(err?.message ?? ''));
}
