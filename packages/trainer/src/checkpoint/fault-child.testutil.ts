/**
 * Child process of the kill-during-checkpoint tests: writes the files of SRC as the checkpoint
 * folder DEST with the real AtomicFolderWriter, and SIGKILLs itself at the point KILL names:
 * `bytes:N` (after N bytes of file data), `before-rename`, `after-aside` (between moving an existing
 * folder aside and renaming the new one in), or `none`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { AtomicFolderWriter, COMPLETE_MARKER, NODE_FS, type CheckpointFs } from './atomic-folder.js';

const [src, dest, kill] = process.argv.slice(2) as [string, string, string];
const die = () => process.kill(process.pid, 'SIGKILL');
let budget = kill.startsWith('bytes:') ? Number(kill.slice(6)) : Number.POSITIVE_INFINITY;
let renames = 0;
const fs: CheckpointFs = {
  ...NODE_FS,
  async open(path, flags) {
    const h = await NODE_FS.open(path, flags);
    return {
      async write(buf, off, len, pos) {
        if (len > budget) {
          await h.write(buf, off, budget, pos); // a partial write, then the kill
          die();
        }
        budget -= len;
        return h.write(buf, off, len, pos);
      },
      sync: () => h.sync(),
      close: () => h.close(),
    };
  },
  async rename(a, b) {
    renames++;
    if (kill === 'before-rename' && renames === 1) die();
    if (kill === 'after-aside' && renames === 2) die();
    return NODE_FS.rename(a, b);
  },
};
const w = await AtomicFolderWriter.begin(dest, fs);
for (const name of readdirSync(src).sort()) {
  if (name === COMPLETE_MARKER) continue;
  await w.writeFile(name, readFileSync(join(src, name)));
}
await w.commit();
