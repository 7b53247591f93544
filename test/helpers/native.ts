/**
 * Tests that need the native TensorFlow backend (`npm run setup:native`). Where it is absent they skip and
 * say why; with HWA_REQUIRE_NATIVE=1 (CI sets it) its absence is a failing test instead, so a broken setup
 * can never pass as skipped.
 */
import { describe, it } from 'vitest';
import { NATIVE_PACKAGES, locateNativePackage, nativeAddonBuilt } from '@hwa/engine';

/** Why the native CPU backend cannot run here, or null when it can. */
export function nativeMissing(): string | null {
  const location = locateNativePackage(NATIVE_PACKAGES.cpu);
  if (location == null) return `${NATIVE_PACKAGES.cpu} is not installed (npm run setup:native installs it)`;
  if (!nativeAddonBuilt(location)) return `${NATIVE_PACKAGES.cpu}'s addon is not built (npm run setup:native builds it)`;
  return null;
}

/** `describe` for tests on the native backend: skipped with the reason printed, or failing when required. */
export function describeNative(name: string, body: () => void): void {
  const missing = nativeMissing();
  if (missing == null) return describe(name, body);
  if (process.env.HWA_REQUIRE_NATIVE === '1') {
    describe(name, () => {
      it('has the native backend (HWA_REQUIRE_NATIVE=1)', () => {
        throw new Error(`native backend required but unavailable: ${missing}`);
      });
    });
    return;
  }
  console.warn(`skipping "${name}": ${missing}`);
  describe.skip(name, body);
}
