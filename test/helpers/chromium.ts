/**
 * Headless Chromium for tests of report.html: the same lookup `hwa report --png` uses, a skip reason where
 * there is none (unless HWA_REQUIRE_CHROMIUM makes that a failure), and what each plot of an open page drew.
 */
import type { Page } from 'playwright-core';
import { findChromium } from '../../packages/cli/src/report-png.js';

export const chromium = findChromium();

/** Why Chromium tests skip here, or null when they run (Chromium found, or HWA_REQUIRE_CHROMIUM set). */
export function chromiumSkipReason(): string | null {
  if (chromium || process.env.HWA_REQUIRE_CHROMIUM) return null;
  return 'no Chromium found (apt-get install chromium, or HWA_CHROMIUM=PATH); set HWA_REQUIRE_CHROMIUM=1 to fail instead of skipping';
}

/** One plot as drawn: its name and, per line, its series and how many points the line's path joins. */
export interface DrawnPlot {
  name: string;
  lines: { series: string; points: number }[];
}

/** The plots of the open report page, read from the SVG that Vega drew. */
export function drawnPlots(page: Page): Promise<DrawnPlot[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('figure[data-chart]')].map((figure) => ({
      name: figure.getAttribute('data-chart') ?? '',
      lines: [...figure.querySelectorAll('svg g.mark-line path')].map((path) => ({
        series: /series: ([^;]+)/.exec(path.getAttribute('aria-label') ?? '')?.[1] ?? '',
        points: (path.getAttribute('d') ?? '').match(/[ML]/g)?.length ?? 0,
      })),
    })),
  );
}
