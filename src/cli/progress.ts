/** A one-line progress bar on stderr (redrawn in place on a terminal, every 10% otherwise). */
export function progressBar(label: string): { update(done: number, total: number): void; finish(): void } {
  const tty = process.stderr.isTTY === true;
  let lastTenth = -1;
  return {
    update(done, total) {
      const ratio = total === 0 ? 1 : done / total;
      if (tty) {
        const width = 30;
        const filled = Math.round(ratio * width);
        process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
      } else if (Math.floor(ratio * 10) > lastTenth) {
        lastTenth = Math.floor(ratio * 10);
        process.stderr.write(`${label} ${done}/${total}\n`);
      }
    },
    finish() {
      if (tty) process.stderr.write('\n');
    },
  };
}
