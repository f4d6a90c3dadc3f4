/**
 * Load progress on stderr: a bar per file with bytes and ETA on a TTY, one plain line per file
 * otherwise (when it has loaded), nothing with --quiet. Consumes the transformers.js-shaped events
 * of fromPretrained.
 */
import type { LoadProgress } from '@owlet/mplug-owl';

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

export function progressReporter(opts: {
  quiet: boolean;
  tty: boolean;
  write?: (s: string) => void;
}): (e: LoadProgress) => void {
  const write = opts.write ?? ((s: string) => process.stderr.write(s));
  if (opts.quiet) return () => {};
  const started = new Map<string, number>();
  let lastDraw = 0;
  return (e) => {
    if (e.status === 'ready') {
      if (opts.tty) write('\r\x1b[2K');
      return;
    }
    const file = e.file;
    if (e.status === 'initiate') {
      started.set(file, performance.now());
      return;
    }
    if (e.status === 'progress') {
      if (!opts.tty) return;
      const now = performance.now();
      if (now - lastDraw < 100 && e.loaded < e.total) return;
      lastDraw = now;
      const t0 = started.get(file) ?? now;
      const rate = e.loaded / Math.max(1, now - t0); // bytes per ms
      const eta = rate > 0 ? (e.total - e.loaded) / rate / 1000 : 0;
      const width = 24;
      const filled = Math.round((width * e.loaded) / Math.max(1, e.total));
      write(
        `\r\x1b[2K${file} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${mb(e.loaded)}/${mb(e.total)} ETA ${eta.toFixed(0)}s`,
      );
      return;
    }
    if (e.status === 'done') {
      const t0 = started.get(file);
      const secs = t0 === undefined ? 0 : (performance.now() - t0) / 1000;
      if (opts.tty) write(`\r\x1b[2K${file} done in ${secs.toFixed(1)}s\n`);
      else write(`loaded ${file} in ${secs.toFixed(1)}s\n`);
    }
  };
}
