/**
 * report.html: one self-contained page per run or comparison, readable offline. Vega, Vega-Lite and
 * vega-embed are inlined from node_modules (no CDN), the plots' data is in the page, and a content security
 * policy forbids every fetch, so the page shows the same on a machine without network. Each plot has
 * vega-embed's menu to save it as PNG or SVG; `hwa report --png` renders them all (report-png.ts).
 *
 * The page exposes `window.hwaCharts`, a promise of `{ name, view }` per plot once all are drawn, for the
 * PNG export and the browser test.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ResourceError, type RunConfig } from '@hwa/core';
import { runCharts, type Chart } from './report-charts.js';
import { resultsTable, runResult, summarize, type TextTable } from './results.js';
import { readRunRecords } from './run-records.js';
import { writeFileAtomic } from './run-folder.js';

/** What a report page shows. */
export interface ReportPage {
  title: string;
  /** Paragraphs of plain text under the title. */
  intro: string[];
  table: TextTable;
  charts: Chart[];
  /** Links to other reports (a comparison's runs), relative to the page. */
  links?: { href: string; text: string }[];
}

/** The file name every report has in its folder. */
export const REPORT_FILE = 'report.html';

/** Accuracy target of a run's report table ("epochs to …"), where no comparison sets one. */
export const DEFAULT_TARGET = 0.9;

const LIBRARIES = ['vega', 'vega-lite', 'vega-embed'] as const;
const BUILDS: Record<(typeof LIBRARIES)[number], string> = {
  vega: 'vega.min.js',
  'vega-lite': 'vega-lite.min.js',
  'vega-embed': 'vega-embed.min.js',
};
let scripts: string | undefined;

/** The three libraries' browser builds, each in a script element (read once per process). */
function libraryScripts(): string {
  scripts ??= LIBRARIES.map((name) => {
    let code: string;
    try {
      // Each package's entry point sits in its build/ folder, beside the minified browser bundle.
      const build = join(dirname(fileURLToPath(import.meta.resolve(name))), BUILDS[name]);
      code = readFileSync(build, 'utf8').replace(/\/\/# sourceMappingURL=\S+\s*$/, '');
    } catch (e) {
      throw new ResourceError(`the report needs the ${name} package's browser build, which this install lacks (${(e as Error).message.split('\n')[0]}): run npm install`);
    }
    return `<script>/* ${name} */\n${inlineScript(code)}\n</script>`;
  }).join('\n');
  return scripts;
}

/** Text that may stand inside a script element: no `</script` or `<!--` that would end or change it. */
function inlineScript(code: string): string {
  return code.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function tableHtml(t: TextTable): string {
  const row = (cells: string[], tag: 'th' | 'td') => `<tr>${cells.map((c) => `<${tag}>${escapeHtml(c)}</${tag}>`).join('')}</tr>`;
  return `<table><thead>${row(t.header, 'th')}</thead><tbody>${t.rows.map((r) => row(r, 'td')).join('')}</tbody></table>`;
}

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1420px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; padding: 8px; border: 1px solid #e4e4e4; }
p.note { color: #555; max-width: 960px; }`;

/** The whole page as one string. */
export function reportHtml(page: ReportPage): string {
  // JSON in a script element: `<` escaped so no text in it can end the element.
  const charts = JSON.stringify(page.charts.map((c) => ({ name: c.name, spec: c.spec }))).replace(/</g, '\\u003c');
  const links = page.links?.length
    ? `<h2>Runs</h2><ul>${page.links.map((l) => `<li><a href="${escapeHtml(l.href)}">${escapeHtml(l.text)}</a></li>`).join('')}</ul>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:">
<title>${escapeHtml(page.title)}</title>
<style>${STYLE}</style>
${libraryScripts()}
</head>
<body>
<h1>${escapeHtml(page.title)}</h1>
${page.intro.map((p) => `<p class="note">${escapeHtml(p)}</p>`).join('\n')}
<h2>Results</h2>
${tableHtml(page.table)}
<h2>Plots</h2>
<div class="charts">
${page.charts.map((c) => `<figure id="chart-${c.name}" data-chart="${c.name}"></figure>`).join('\n')}
</div>
${links}
<script type="application/json" id="hwa-charts">${charts}</script>
<script>
const charts = JSON.parse(document.getElementById('hwa-charts').textContent);
const options = { mode: 'vega-lite', renderer: 'svg', actions: { export: true, source: false, compiled: false, editor: false } };
window.hwaCharts = Promise.all(charts.map((c) => vegaEmbed('#chart-' + c.name, c.spec, options).then((r) => ({ name: c.name, view: r.view }))));
window.hwaCharts.catch((e) => console.error('hwa report: a plot failed to draw: ' + (e && e.message ? e.message : e)));
</script>
</body>
</html>
`;
}

/** One line on what a run trained: mode, data, model, K, H, I, epochs, batch, lr. */
export function describeTraining(c: RunConfig, mode: string = c.mode): string {
  const limit = (n: number, what: string) => (n > 0 ? `, first ${n} ${what} images` : '');
  const window = c.mode === 'hwa' || c.mode === 'lawa' ? `, I = ${c.window}` : c.mode === 'ema' ? `, EMA decay ${c.emaDecay}` : '';
  return (
    `${mode} on ${c.dataset}${limit(c.trainLimit, 'training')}${limit(c.testLimit, 'test')}, model ${c.model}, ` +
    `K = ${c.workers ?? 1}, H = ${c.syncPeriod}${window}, ${c.epochs} epoch${c.epochs === 1 ? '' : 's'} per worker, batch ${c.batchSize}, ` +
    `lr ${c.lr} (${c.schedule}), momentum ${c.momentum}, weight decay ${c.weightDecay}, seed ${c.seed}`
  );
}

/** Writes `dir/report.html` for the run in `dir` and returns its path. */
export function writeRunReport(dir: string, target = DEFAULT_TARGET): string {
  const records = readRunRecords(dir);
  const result = runResult(records, target);
  const state = records.totals
    ? `It finished: ${result.samples.toLocaleString('en-US')} training samples in ${result.wallSec.toFixed(1)} s of wall time.`
    : `It has not finished (no run.json): the plots show its ${records.rounds.length} rounds so far.`;
  const file = join(dir, REPORT_FILE);
  const page: ReportPage = {
    title: `hwa run: ${records.config.mode}, ${records.config.dataset}, ${records.config.model}`,
    intro: [
      `${describeTraining(records.config)}. Run folder: ${dir}.`,
      state,
      'Online is θ̄, the average of the K workers after each round; offline is the model the run exports (θ_HWA: the window average for hwa and lawa, the cumulative mean for swa, the EMA for ema, θ̄ itself for sgd and localsgd).',
    ],
    table: resultsTable(summarize([result]), target),
    charts: runCharts(records),
  };
  writeFileAtomic(file, reportHtml(page));
  return file;
}
