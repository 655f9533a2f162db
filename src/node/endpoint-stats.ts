/**
 * What `$SRV.STATS` says of each endpoint, measured where a request is really served: the request
 * pipeline. The services library counts and times its handler's synchronous call, but our handlers
 * hand a request to the pipeline and return at once, so the library alone would report a processing
 * time of about zero and never an error. And a shard's requests arrive on the ownership shell's own
 * subscriptions (they come and go with leases, which the library's endpoints cannot), so the library
 * never sees them at all. The pipeline records every answer here, by endpoint; the service's
 * `statsHandler`, which the library calls for each endpoint before it reads that endpoint's figures,
 * puts these in their place.
 */

/** The figures `$SRV.STATS` reports per endpoint (the micro protocol's names). */
export interface EndpointFigures {
  num_requests: number;
  num_errors: number;
  /** Nanoseconds, summed over the requests answered. */
  processing_time: number;
  average_processing_time: number;
  last_error?: string;
}

/** The endpoint the pipeline counts shard requests under (docs/api.md, "Service discovery"). */
export const ACTIVEFLOW_ENDPOINT = 'activeflow';

const none = (): EndpointFigures => ({ num_requests: 0, num_errors: 0, processing_time: 0, average_processing_time: 0 });

export class EndpointStats {
  private readonly figures = new Map<string, EndpointFigures>();

  /** One request answered (or refused) by `endpoint`, after `seconds`; `error` if it failed. */
  record(endpoint: string, seconds: number, error?: string): void {
    let f = this.figures.get(endpoint);
    if (f === undefined) {
      f = none();
      this.figures.set(endpoint, f);
    }
    f.num_requests++;
    f.processing_time += Math.round(seconds * 1e9);
    f.average_processing_time = Math.round(f.processing_time / f.num_requests);
    if (error !== undefined) {
      f.num_errors++;
      f.last_error = error;
    }
  }

  of(endpoint: string): EndpointFigures {
    return { ...(this.figures.get(endpoint) ?? none()) };
  }

  /**
   * The service's `statsHandler`: writes this endpoint's figures over the library's own (which time
   * only the synchronous hand-off), on the stats object the library keeps beside each endpoint and
   * reads right after this call. Returns the endpoint's `data` (none).
   */
  readonly statsHandler = async (endpoint: unknown): Promise<null> => {
    const e = endpoint as { stats?: Partial<EndpointFigures> & { name?: string } };
    if (e.stats?.name !== undefined) {
      const f = this.of(e.stats.name);
      e.stats.num_requests = f.num_requests;
      e.stats.num_errors = f.num_errors;
      e.stats.processing_time = f.processing_time;
      e.stats.average_processing_time = f.average_processing_time;
      e.stats.last_error = f.last_error;
    }
    return null;
  };
}
