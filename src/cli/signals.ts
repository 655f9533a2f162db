/**
 * Stops on SIGINT/SIGTERM: the node hands its shards over and in-flight requests finish, then the
 * process exits 0. Handing shards over needs NATS: if that does not finish within `deadlineMs`,
 * the process exits 1 instead of hanging until it is killed (its leases expire on their own).
 */
export function stopOnSignals(stop: () => Promise<void>, deadlineMs: number): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = () => {
      if (stopping) process.exit(130); // a second Ctrl-C: leave now
      stopping = true;
      const timer = setTimeout(() => {
        process.stderr.write(`activeflow: the stop did not finish within ${deadlineMs} ms (STOP_TIMEOUT_MS; is NATS reachable?); exiting: this node's leases expire on their own\n`);
        process.exit(1);
      }, deadlineMs);
      void stop()
        .then(
          () => resolve(0),
          (e: unknown) => {
            process.stderr.write(`activeflow: the stop failed: ${(e as Error).message}\n`);
            resolve(1);
          },
        )
        .finally(() => clearTimeout(timer));
    };
    // Kept for the second signal too: it leaves at once (130) instead of the default death by signal.
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
