#!/usr/bin/env node
// `pnpm check:changesets`: what `changeset status` checks, on any checkout CI may have.
//
// 1. Every changeset and `.changeset/config.json` are valid against the workspace (unknown package
//    names, a `fixed` group naming a package that does not exist, bad bump types). This reads the
//    files only, so it runs on every checkout: a fresh clone, a tarball, `main` itself.
// 2. Every package changed since the base branch has a changeset. The base is `$OWLET_CHANGESET_BASE`,
//    else `origin/<baseBranch>`, else `<baseBranch>` from the config (`main`). On the base branch itself
//    nothing has changed since it, so this passes; with no base ref at all (a bare CI checkout, a
//    detached shallow clone) it is skipped and says so.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
// The release-plan reader `changeset status` itself uses, resolved through the CLI so the root needs
// no second dependency that could drift from the CLI's version.
const cliRequire = createRequire(require.resolve('@changesets/cli/package.json'));
const getReleasePlan = cliRequire('@changesets/get-release-plan').default;

function git(...args) {
  const r = spawnSync('git', args, { cwd: root, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function fail(message) {
  console.error(`check:changesets: ${message}`);
  process.exit(1);
}

let plan;
try {
  plan = await getReleasePlan(root);
} catch (error) {
  fail(`the changesets or .changeset/config.json do not match the workspace:\n${error?.message ?? error}`);
}
console.log(`check:changesets: ${plan.changesets.length} changesets valid against the workspace`);

const { baseBranch = 'main' } = JSON.parse(readFileSync(path.join(root, '.changeset', 'config.json'), 'utf8'));
if (git('rev-parse', '--is-inside-work-tree') !== 'true') {
  console.log('check:changesets: not a git checkout, so the changed-packages check is skipped');
  process.exit(0);
}
const candidates = [process.env.OWLET_CHANGESET_BASE, `origin/${baseBranch}`, baseBranch].filter(Boolean);
const base = candidates.find((ref) => git('rev-parse', '--verify', '--quiet', `${ref}^{commit}`) !== undefined);
if (base === undefined) {
  if (process.env.OWLET_CHANGESET_BASE)
    fail(`OWLET_CHANGESET_BASE=${process.env.OWLET_CHANGESET_BASE} is not a commit`);
  console.log(
    `check:changesets: no ${candidates.join(' / ')} ref in this checkout, so the changed-packages check is skipped`,
  );
  process.exit(0);
}
if (git('merge-base', base, 'HEAD') === undefined) {
  fail(`HEAD shares no history with ${base} (a shallow clone? fetch with more depth or set OWLET_CHANGESET_BASE)`);
}
const changesetBin = require.resolve('@changesets/cli/bin.js');
const status = spawnSync(process.execPath, [changesetBin, 'status', `--since=${base}`], {
  cwd: root,
  stdio: 'inherit',
});
if (status.error) fail(`could not run changeset: ${status.error.message}`);
process.exit(status.status ?? 1);
