/**
 * Debian's Chromium for the browser tests: installed through `deploy/local/install-chromium.sh` when
 * missing (as the servers are), then launched headless by playwright-core. A missing browser fails the
 * run; nothing is skipped.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
const script = join(
  fileURLToPath(new URL('../..', import.meta.url)),
  'deploy',
  'local',
  'install-chromium.sh',
);

/** Installs Chromium when it is missing (as root), or fails naming the package. */
export async function ensureChromium(): Promise<void> {
  if (existsSync(CHROMIUM)) return;
  try {
    await promisify(execFile)('sh', [script], { timeout: 600_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(
      `Chromium is not installed and could not be installed: ${stderr.trim() || String(error)}`,
    );
  }
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is still missing after install-chromium.sh`);
}

/** Headless Chromium, installed first if needed. */
export async function launchChromium(): Promise<Browser> {
  await ensureChromium();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}
