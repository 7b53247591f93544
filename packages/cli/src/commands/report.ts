/**
 * `hwa report DIR [--png OUTDIR]`: writes report.html again for a run folder or a comparison folder (a
 * comparison's results.md and table too), and with --png renders each of its plots to OUTDIR/<plot>.png in
 * headless Chromium.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from '@hwa/core';
import { writeRunReport, DEFAULT_TARGET } from '../report-html.js';
import { findChromium, renderPngs } from '../report-png.js';
import { isRunFolder } from '../run-records.js';
import { comparisonReport, isComparisonFolder } from './compare.js';

export interface ReportCommandOptions {
  /** Folder for one PNG per plot; none when absent. */
  png?: string;
  /** Chromium to render with; default HWA_CHROMIUM or the system's. */
  chromium?: string;
  /** Accuracy for the epochs-to-target column; default the comparison's --target, 0.9 for a run. */
  target?: number;
}

export async function report(folder: string, options: ReportCommandOptions, print: (line: string) => void): Promise<void> {
  const dir = resolve(folder);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`${folder}: no such folder`);
  let file: string;
  if (isComparisonFolder(dir)) {
    const written = comparisonReport(dir, options.target);
    file = written.file;
    print(written.markdown);
    if (written.missing.length) print(`not finished: ${written.missing.join(', ')}`);
  } else if (isRunFolder(dir)) {
    file = writeRunReport(dir, options.target ?? DEFAULT_TARGET);
  } else {
    throw new ConfigError(`${folder} is neither a run folder (it has no config.json) nor a comparison folder (no compare.json)`);
  }
  print(`wrote ${file}`);
  if (options.png === undefined) return;
  const pngs = await renderPngs(file, resolve(options.png), findChromium(options.chromium));
  print(`wrote ${pngs.length} PNG images to ${resolve(options.png)}: ${pngs.map((p) => p.slice(resolve(options.png ?? '').length + 1)).join(', ')}`);
}
