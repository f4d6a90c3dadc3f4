/**
 * Test-only preload (NODE_OPTIONS=--require): on exit, writes the process's peak resident set size
 * (the kernel's high-water mark, `resourceUsage().maxRSS`) to OWLET_TEST_RSS_OUT as JSON.
 */
const { writeFileSync } = require('node:fs');

const out = process.env.OWLET_TEST_RSS_OUT;
if (out) {
  process.on('exit', () => {
    writeFileSync(out, JSON.stringify({ peak: process.resourceUsage().maxRSS * 1024 }));
  });
}
