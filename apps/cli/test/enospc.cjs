/**
 * Test-only preload (NODE_OPTIONS=--require): makes writes under OWLET_TEST_ENOSPC_DIR fail with
 * ENOSPC once OWLET_TEST_ENOSPC_AFTER bytes have been written there, as a full disk would. Used by
 * convert-kill.test.ts where a tiny tmpfs cannot be mounted. Never loaded by owlet itself.
 */
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const path = require('node:path');
const { syncBuiltinESMExports } = require('node:module');

const dir = path.resolve(process.env.OWLET_TEST_ENOSPC_DIR || '/nonexistent');
const after = Number(process.env.OWLET_TEST_ENOSPC_AFTER || 0);
let written = 0;
const paths = new WeakMap();

const enospc = () =>
  Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
const inside = (p) => typeof p === 'string' && path.resolve(p).startsWith(dir + path.sep);
const count = (n) => {
  written += n;
  if (written > after) throw enospc();
};

const open = fsp.open;
fsp.open = async function patchedOpen(p, ...rest) {
  const h = await open.call(this, p, ...rest);
  if (inside(p)) {
    paths.set(h, p);
    if (!Object.hasOwn(h, 'write')) {
      const write = h.write.bind(h);
      const writeFile = h.writeFile.bind(h);
      h.write = async (buf, ...args) => {
        count(typeof args[1] === 'number' ? args[1] : (buf.byteLength ?? Buffer.byteLength(buf)));
        return write(buf, ...args);
      };
      h.writeFile = async (data, ...args) => {
        count(typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength);
        return writeFile(data, ...args);
      };
    }
  }
  return h;
};
syncBuiltinESMExports();
void fs;
