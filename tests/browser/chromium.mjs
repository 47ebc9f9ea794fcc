// Headless Chromium for the browser tests: Debian's chromium (scripts/setup.sh installs it) with the
// flags this machine needs as root and without network (see /work/shared/TOOLCHAIN.md).
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches a fresh headless browser (playwright's own launch uses a new empty profile). */
export function launch(options = {}) {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30_000, args: CHROMIUM_ARGS, ...options });
}
