#!/usr/bin/env node
// Builds owlet's optional native CPU accelerator (packages/core/native/*.cc, Node-API) into
// native/build/owlet_cpu.node with the system C++ compiler ($CXX, else c++ / g++ / clang++).
// Optional: without it the CPU engine runs its WASM kernels. Exits 0 with a one-line notice when
// no compiler or no Node-API headers are found (--strict: exit 1 instead), 1 when a build fails.
//   node packages/core/scripts/build-native.mjs [--strict] [--out FILE] [--quiet]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');
const src = join(pkg, 'native');
const argv = process.argv.slice(2);
const strict = argv.includes('--strict');
const quiet = argv.includes('--quiet');
const outIdx = argv.indexOf('--out');
const out = outIdx >= 0 ? resolve(argv[outIdx + 1]) : join(src, 'build', 'owlet_cpu.node');

function notice(msg, code = 0) {
  process.stderr.write(`build-native: ${msg}\n`);
  process.exit(strict && code === 0 ? 1 : code);
}

function findCompiler() {
  const candidates = [process.env.CXX, 'c++', 'g++', 'clang++'].filter(Boolean);
  for (const c of candidates) {
    const r = spawnSync(c, ['--version'], { stdio: 'ignore' });
    if (r.status === 0) return c;
  }
  return null;
}

function findHeaders() {
  const dirs = [];
  if (process.env.OWLET_NODE_API_HEADERS) dirs.push(process.env.OWLET_NODE_API_HEADERS);
  dirs.push(join(dirname(dirname(process.execPath)), 'include', 'node'));
  const home = process.env.HOME ?? '';
  for (const base of [join(home, '.cache', 'node-gyp'), join(home, '.node-gyp')])
    dirs.push(join(base, process.versions.node, 'include', 'node'));
  try {
    const req = createRequire(import.meta.url);
    dirs.push(join(dirname(req.resolve('node-api-headers/package.json')), 'include'));
  } catch {}
  dirs.push('/usr/include/node', '/usr/local/include/node');
  return dirs.find((d) => existsSync(join(d, 'node_api.h'))) ?? null;
}

const cxx = findCompiler();
if (!cxx) notice('no C++ compiler found ($CXX, c++, g++, clang++): the CPU engine will use its WASM kernels');
const headers = findHeaders();
if (!headers) notice('no Node-API headers (node_api.h) found: the CPU engine will use its WASM kernels');

const x86 = arch() === 'x64';
const common = [
  '-O3',
  '-std=c++20',
  '-fPIC',
  '-fvisibility=hidden',
  '-fno-strict-aliasing',
  '-ffp-contract=off',
  '-DNAPI_VERSION=8',
  `-I${headers}`,
  `-I${src}`,
];
const units = [
  ['addon.cc', x86 ? [] : ['-DOWLET_NO_X86']],
  ['kernels_scalar.cc', []],
  ...(x86
    ? [
        ['kernels_avx2.cc', ['-mavx2', '-mfma', '-mf16c']],
        [
          'kernels_avx512.cc',
          ['-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mavx512vnni', '-mfma', '-mf16c'],
        ],
      ]
    : []),
];
const tmp = mkdtempSync(join(tmpdir(), 'owlet-native-'));
try {
  const objs = [];
  for (const [file, flags] of units) {
    const obj = join(tmp, file.replace(/\.cc$/, '.o'));
    execFileSync(cxx, [...common, ...flags, '-c', join(src, file), '-o', obj], { stdio: quiet ? 'pipe' : 'inherit' });
    objs.push(obj);
  }
  mkdirSync(dirname(out), { recursive: true });
  const tmpOut = join(tmp, 'owlet_cpu.node');
  execFileSync(cxx, ['-shared', '-pthread', ...objs, '-o', tmpOut], { stdio: quiet ? 'pipe' : 'inherit' });
  renameSync(tmpOut, out);
  // a smoke test in a fresh process: the add-on loads and reports its instruction set
  const check = spawnSync(
    process.execPath,
    ['-e', `const m = require(${JSON.stringify(out)}); process.stdout.write(m.info().isa)`],
    { encoding: 'utf8' },
  );
  if (check.status !== 0) {
    rmSync(out, { force: true });
    notice(`built ${out} but it does not load: ${(check.stderr || '').trim().split('\n')[0]}`, 1);
  }
  if (!quiet) process.stderr.write(`build-native: wrote ${out} (${cxx}, kernels: ${check.stdout})\n`);
} catch (e) {
  rmSync(out, { force: true });
  notice(
    `the native accelerator did not build (${(e.message || String(e)).split('\n')[0]}); the CPU engine will use its WASM kernels`,
    1,
  );
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
