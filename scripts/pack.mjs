#!/usr/bin/env node
/**
 * `npm run pack`: builds the publishable `hwa` tarball from the workspace. The package is @hwa/cli renamed
 * `hwa` (its index is the programmatic API, its bin the `hwa` command) with the other @hwa/* packages bundled
 * inside it (bundleDependencies), so the tarball needs no @hwa/* package from a registry; the third-party
 * dependencies of every bundled package are its own dependencies, which npm installs as usual (or from its
 * cache with --offline). The native TensorFlow packages stay optional peers.
 *
 *   npm run pack                      → build/pack/hwa-<version>.tgz
 *   npm run pack -- --out DIR         → DIR/hwa-<version>.tgz
 *   npm run pack -- --consumer DIR    → also DIR/package.json and DIR/package-lock.json of a project that depends
 *                                       on the tarball (copied there): `npm ci --offline` in DIR installs it
 *                                       from npm's cache alone (a plain `npm install ./hwa.tgz` asks the
 *                                       registry for metadata, which a cache may not hold)
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outArg = process.argv.indexOf('--out');
const out = resolve(outArg > 0 ? process.argv[outArg + 1] : join(root, 'build', 'pack'));
const stage = join(root, 'build', 'pack-stage', 'hwa');
const rootJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const bundled = ['core', 'protocol', 'engine', 'coordinator', 'worker'];
const read = (p) => JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8'));

for (const p of ['cli', ...bundled])
  if (!existsSync(join(root, 'packages', p, 'dist', 'index.js'))) {
    console.error(`pack: packages/${p}/dist is missing; run \`npm run build\` first`);
    process.exit(1);
  }

/** Copies a package's published files (package.json, dist without build caches, bin, python scripts) to `to`. */
function copyPackage(p, to, json) {
  mkdirSync(to, { recursive: true });
  cpSync(join(root, 'packages', p, 'dist'), join(to, 'dist'), { recursive: true, filter: (f) => !f.endsWith('.tsbuildinfo') });
  for (const folder of ['bin', 'python'])
    if (existsSync(join(root, 'packages', p, folder))) cpSync(join(root, 'packages', p, folder), join(to, folder), { recursive: true });
  writeFileSync(join(to, 'package.json'), JSON.stringify(json, null, 2) + '\n');
}

/**
 * The exact dependency tree of the workspace's package-lock.json, cut to what `hwa` needs at run time, as the
 * package's npm-shrinkwrap.json: npm installs a package's shrinkwrap as written, by version and integrity, so
 * the tarball installs the same versions the repository is tested with, and needs no registry metadata (an
 * install with --offline takes every file from npm's cache).
 */
function shrinkwrap(manifest) {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const entries = lock.packages;
  const packages = {};
  /** The lock path a dependency `name` of the package at lock path `from` resolves to (node's lookup). */
  const locate = (from, name) => {
    for (let at = from; ; ) {
      const candidate = `${at ? `${at}/` : ''}node_modules/${name}`;
      if (entries[candidate] && !entries[candidate].link) return candidate;
      if (!at) return null;
      const up = at.lastIndexOf('/node_modules/');
      at = up < 0 ? '' : at.slice(0, up);
    }
  };
  const visit = (from, deps, optionalDeps) => {
    for (const [name, optional] of [...Object.keys(deps ?? {}).map((n) => [n, false]), ...Object.keys(optionalDeps ?? {}).map((n) => [n, true])]) {
      if (name.startsWith('@hwa/')) continue;
      const path = locate(from, name);
      if (!path) {
        if (optional) continue;
        throw new Error(`pack: ${name} (needed by ${from || 'hwa'}) is not in package-lock.json; run npm install`);
      }
      if (packages[path]) continue;
      const { dev: _d, devOptional: _do, peer: _pe, ...entry } = entries[path];
      // The registry URL npm itself would use: with it and the integrity, npm needs no registry metadata.
      const bare = name.split('/').at(-1);
      packages[path] = { resolved: `https://registry.npmjs.org/${name}/-/${bare}-${entry.version}.tgz`, ...entry };
      visit(path, entry.dependencies, entry.optionalDependencies);
    }
  };
  for (const p of ['cli', ...bundled]) visit('', read(p).dependencies);
  const { name, version, dependencies, peerDependencies, peerDependenciesMeta, bin, engines, license } = manifest;
  const sorted = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => a.localeCompare(b)));
  for (const p of bundled) sorted[`node_modules/@hwa/${p}`] = { version: read(p).version, inBundle: true, license: rootJson.license };
  return {
    name,
    version,
    lockfileVersion: 3,
    requires: true,
    packages: { '': { name, version, license, dependencies, peerDependencies, peerDependenciesMeta, bin, engines }, ...sorted },
  };
}

rmSync(stage, { recursive: true, force: true });
const dependencies = {};
const optional = {};
for (const p of ['cli', ...bundled]) {
  const json = read(p);
  for (const [name, range] of Object.entries(json.dependencies ?? {})) if (!name.startsWith('@hwa/')) dependencies[name] = range;
  Object.assign(optional, json.optionalDependencies ?? {});
  if (p !== 'cli') {
    // Inside the tarball the bundled packages need no install of their own: their dependencies are hwa's.
    const { optionalDependencies: _o, ...rest } = json;
    copyPackage(p, join(stage, 'node_modules', '@hwa', p), { ...rest, dependencies: json.dependencies });
  }
}
const cli = read('cli');
const { private: _p, optionalDependencies: _o, ...cliRest } = cli;
copyPackage('cli', stage, {
  ...cliRest,
  name: 'hwa',
  version: rootJson.version,
  description: rootJson.description,
  license: rootJson.license,
  engines: rootJson.engines,
  // npm packs only bundled packages that are also dependencies.
  dependencies: Object.fromEntries(Object.entries({ ...cli.dependencies, ...dependencies }).sort()),
  bundleDependencies: bundled.map((p) => `@hwa/${p}`),
  // Native TensorFlow is the user's choice (`npm install @tensorflow/tfjs-node`); wasm works without it.
  peerDependencies: optional,
  peerDependenciesMeta: Object.fromEntries(Object.keys(optional).map((n) => [n, { optional: true }])),
  files: ['dist', 'bin', 'python', 'npm-shrinkwrap.json'],
});
for (const p of bundled) {
  // The bundled packages' own dependency ranges name @hwa/* siblings; npm resolves them inside the bundle.
  const json = JSON.parse(readFileSync(join(stage, 'node_modules', '@hwa', p, 'package.json'), 'utf8'));
  json.dependencies = Object.fromEntries(Object.entries(json.dependencies ?? {}).filter(([n]) => !n.startsWith('@hwa/')));
  writeFileSync(join(stage, 'node_modules', '@hwa', p, 'package.json'), JSON.stringify(json, null, 2) + '\n');
}
writeFileSync(join(stage, 'npm-shrinkwrap.json'), JSON.stringify(shrinkwrap(JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8'))), null, 2) + '\n');
mkdirSync(out, { recursive: true });
const file = execFileSync('npm', ['pack', '--pack-destination', out, '--silent'], { cwd: stage, encoding: 'utf8' }).trim().split('\n').at(-1);
const tarball = join(out, file);
console.log(tarball);

const consumerArg = process.argv.indexOf('--consumer');
if (consumerArg > 0) writeConsumer(resolve(process.argv[consumerArg + 1]), tarball);

/**
 * A project depending on the tarball, with the lock npm would write for it: the shrinkwrap's tree hoisted to
 * the project's node_modules, the bundled @hwa/* packages inside hwa's.
 */
function writeConsumer(dir, tarball) {
  mkdirSync(dir, { recursive: true });
  const name = basename(tarball);
  copyFileSync(tarball, join(dir, name));
  const sw = JSON.parse(readFileSync(join(stage, 'npm-shrinkwrap.json'), 'utf8'));
  const top = sw.packages[''];
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  const dependencies = { hwa: `file:${name}` };
  const packages = { '': { name: 'hwa-consumer', version: '1.0.0', dependencies } };
  packages['node_modules/hwa'] = {
    version: top.version,
    resolved: `file:${name}`,
    integrity,
    license: top.license,
    bundleDependencies: bundled.map((p) => `@hwa/${p}`),
    dependencies: top.dependencies,
    bin: top.bin,
    engines: top.engines,
    peerDependencies: top.peerDependencies,
    peerDependenciesMeta: top.peerDependenciesMeta,
  };
  for (const [path, entry] of Object.entries(sw.packages)) if (path) packages[path.startsWith('node_modules/@hwa/') ? `node_modules/hwa/${path}` : path] = entry;
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'hwa-consumer', version: '1.0.0', private: true, type: 'module', dependencies }, null, 2) + '\n');
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ name: 'hwa-consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2) + '\n');
}
