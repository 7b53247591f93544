/**
 * report.html in headless Chromium, driven by playwright-core (which brings no browser of its own): the
 * system's Chromium opens the page from disk, with every network request refused, and each plot is exported
 * as PNG by Vega itself (`view.toImageURL`), so the images are what the page draws.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, ResourceError } from '@hwa/core';
import type { Page } from 'playwright-core';
import { ioError } from './run-folder.js';

/** Where Chromium is looked for when neither `--chromium` nor HWA_CHROMIUM names it. */
export const CHROMIUM_PATHS = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

/** The Chromium to use: `given`, else HWA_CHROMIUM, else the first of CHROMIUM_PATHS that exists; null if none. */
export function findChromium(given = process.env.HWA_CHROMIUM ?? ''): string | null {
  if (given) return given;
  return CHROMIUM_PATHS.find((p) => existsSync(p)) ?? null;
}

/** Console errors, uncaught page errors and refused requests seen while a page was open. */
export interface PageProblems {
  errors: string[];
}

/** How long the plots may take to draw before the page counts as broken. */
const DRAW_TIMEOUT_MS = 60_000;

/**
 * Opens `file` in headless Chromium, waits until every plot is drawn (`window.hwaCharts`) and runs `body` on
 * the page. Requests for anything but the file itself are refused and counted as problems.
 * @throws ConfigError when no Chromium is found; ResourceError when it cannot start or the page does not draw.
 */
export async function withReportPage<T>(file: string, chromium: string | null, body: (page: Page, problems: PageProblems) => Promise<T>): Promise<T> {
  if (!chromium)
    throw new ConfigError(
      `rendering plots needs Chromium, and none was found (looked for ${CHROMIUM_PATHS.join(', ')}): install it (apt-get install chromium) or name it with --chromium PATH or HWA_CHROMIUM`,
    );
  if (!existsSync(chromium)) throw new ConfigError(`--chromium ${chromium}: no such file`);
  const { chromium: launcher } = await import('playwright-core');
  let browser;
  try {
    browser = await launcher.launch({ executablePath: chromium, headless: true });
  } catch (e) {
    throw new ResourceError(`cannot start ${chromium} headless: ${(e as Error).message.split('\n')[0]}`);
  }
  try {
    const page = await browser.newPage();
    const problems: PageProblems = { errors: [] };
    const url = pathToFileURL(resolve(file)).href;
    page.on('console', (m) => {
      if (m.type() === 'error') problems.errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.errors.push(`page error: ${e.message}`));
    await page.route('**/*', (route) => {
      if (route.request().url() === url) return route.continue();
      problems.errors.push(`request refused: ${route.request().url()}`);
      return route.abort();
    });
    await page.goto(url);
    await page.waitForFunction(() => 'hwaCharts' in globalThis, undefined, { timeout: DRAW_TIMEOUT_MS });
    // The views themselves stay in the page: only whether they are drawn comes back.
    await page.evaluate(async () => void (await (globalThis as unknown as { hwaCharts: Promise<unknown> }).hwaCharts));
    return await body(page, problems);
  } finally {
    await browser.close();
  }
}

/**
 * Renders every plot of the report `file` to `<outDir>/<plot>.png` (`scale` × its size in the page) and
 * returns the files written.
 */
export async function renderPngs(file: string, outDir: string, chromium: string | null, scale = 2): Promise<string[]> {
  const images = await withReportPage(file, chromium, async (page, problems) => {
    const shots = await page.evaluate(async (s) => {
      const charts = await (globalThis as unknown as { hwaCharts: Promise<{ name: string; view: { toImageURL(type: string, scale: number): Promise<string> } }[]> }).hwaCharts;
      return Promise.all(charts.map(async (c) => ({ name: c.name, url: await c.view.toImageURL('png', s) })));
    }, scale);
    if (problems.errors.length) throw new ResourceError(`${file} did not render cleanly: ${problems.errors.join('; ')}`);
    return shots;
  });
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (e) {
    throw ioError(`cannot create ${outDir}`, e);
  }
  return images.map(({ name, url }) => {
    const png = join(outDir, `${name}.png`);
    try {
      writeFileSync(png, Buffer.from(url.replace(/^data:image\/png;base64,/, ''), 'base64'));
    } catch (e) {
      throw ioError(`cannot write ${png}`, e);
    }
    return png;
  });
}
