// Headless Chromium for the browser suites: Debian's `chromium` package driven by puppeteer-core (which downloads
// no browser), a fresh profile per launch, and the one flag WebGPU needs on a machine without a GPU.
//
// On such a machine Chromium's WebGPU offers its CPU adapter, SwiftShader ("swiftshader", vendor "google"), once
// the blocklist is lifted with --enable-unsafe-webgpu. Measured on Chromium 156: that flag alone gives the adapter;
// --enable-features=Vulkan --use-vulkan=native --use-angle=vulkan --ignore-gpu-blocklist (or
// --use-webgpu-adapter=swiftshader) change nothing for WebGPU (the page's GL then runs on Mesa's llvmpipe, but
// Mesa's Vulkan llvmpipe stays blocklisted for WebGPU), so they are left out. --no-sandbox: CI runs as root.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';

export const CHROMIUM = process.env.LINATTN_CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--enable-unsafe-webgpu',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export interface Chromium {
  readonly browser: Browser;
  close(): Promise<void>;
}

/** Launches headless Chromium; fails, saying how to install it, where there is none. */
export async function launchChromium(): Promise<Chromium> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: the browser suites drive headless Chromium. Install Debian's package ` +
        '(sudo apt-get install chromium; .ci/run does this on CI), or point LINATTN_CHROMIUM at a Chromium or Chrome binary.',
    );
  }
  const profile = mkdtempSync(join(tmpdir(), 'linattn-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`],
    // SwiftShader compiles a large kernel in seconds, not milliseconds; one page.evaluate may wait on several.
    protocolTimeout: 300_000,
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
