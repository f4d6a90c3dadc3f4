/**
 * Child process of the kill-during-checkpoint tests: writes the files of SRC as the checkpoint
 * folder DEST with the real writer (`writeCheckpointFolder` over @owlet/checkpoint's
 * writeFolderAtomic), and SIGKILLs itself after N bytes of file data (`bytes:N`, the completion
 * marker included), or not at all (`none`).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { COMPLETE_MARKER, NODE_FS, writeCheckpointFolder, type CheckpointFs } from './atomic-folder.js';

const [src, dest, kill] = process.argv.slice(2) as [string, string, string];
let budget = kill.startsWith('bytes:') ? Number(kill.slice(6)) : Number.POSITIVE_INFINITY;
const fs: CheckpointFs = {
  ...NODE_FS,
  async open(path, flags) {
    const h = await NODE_FS.open(path, flags);
    return {
      async write(buf, off, len, pos) {
        if (len > budget) {
          await h.write(buf, off, budget, pos); // a partial write, then the kill
          process.kill(process.pid, 'SIGKILL');
        }
        budget -= len;
        return h.write(buf, off, len, pos);
      },
      sync: () => h.sync(),
      close: () => h.close(),
    };
  },
};
await writeCheckpointFolder(
  dest,
  async (w) => {
    for (const name of readdirSync(src).sort()) {
      if (name !== COMPLETE_MARKER) await w.writeFile(name, readFileSync(join(src, name)));
    }
  },
  { fs },
);
