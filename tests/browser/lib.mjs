// What the browser specs share: Debian's Chromium, headless, driven by
// playwright-core (no test runner, no browser download), screenshots, and
// assertions that fail with a message saying what was expected and what the
// page showed.
//
// A spec is a plain Node ES module run as `node tests/browser/<spec>.mjs`;
// the Rust side (tests/src/browser.rs) sets its environment:
//
//   STOREFRONT_NODE_MODULES   where playwright-core is (else the cache
//                             `scripts/prepare.sh --test` fills)
//   STOREFRONT_SCREENSHOTS    the directory screenshots go to (else none are written)
//   STOREFRONT_CHROMIUM       the browser (else /usr/bin/chromium)
//   STOREFRONT_BROWSER_TIMEOUT_MS  the whole spec's budget (120 s)
//   STOREFRONT_STEP_TIMEOUT_MS     each wait's budget (20 s)
//
// and whatever the spec itself reads with `env(name)`.
//
//   import { run, newPage, screenshot, waitForText } from './lib.mjs';
//   await run('console', async (browser) => {
//     const page = await newPage(browser, env('CONSOLE_URL'));
//     await page.goto('/');
//     await waitForText(page, 'h1', 'Console');
//     await screenshot(page, 'home');
//   });

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';

const PREPARE = 'run scripts/prepare.sh --test';

/** A failed expectation: reported as its message alone, without a stack. */
export class Failure extends Error {}

/** Fails the spec with `message`. */
export function fail(message) {
  throw new Failure(message);
}

export function assert(condition, message) {
  if (!condition) fail(message);
}

export function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${what}: expected ${e}, the page shows ${a}`);
}

/** The environment variable `name`; fails when it is unset and has no fallback. */
export function env(name, fallback) {
  const value = process.env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  fail(`${name} is not set (the Rust side, tests/src/browser.rs, passes it)`);
}

export const stepTimeout = Number(process.env.STOREFRONT_STEP_TIMEOUT_MS || 20_000);
const specTimeout = Number(process.env.STOREFRONT_BROWSER_TIMEOUT_MS || 120_000);

/** Where playwright-core is installed. */
export function nodeModulesDir() {
  if (process.env.STOREFRONT_NODE_MODULES) return process.env.STOREFRONT_NODE_MODULES;
  const cache =
    process.env.STOREFRONT_CACHE_DIR ||
    join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'storefront');
  return join(cache, 'node', 'node_modules');
}

function playwright() {
  const dir = nodeModulesDir();
  const manifest = join(dir, 'playwright-core', 'package.json');
  if (!existsSync(manifest)) {
    fail(`playwright-core is not installed in ${dir}: ${PREPARE}`);
  }
  const { version } = JSON.parse(readFileSync(manifest, 'utf8'));
  const require = createRequire(join(dir, 'noop.js'));
  return { version, chromium: require('playwright-core').chromium };
}

let openBrowser = null;

/** Debian's Chromium, headless. */
export async function launch() {
  const executablePath = process.env.STOREFRONT_CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    fail(`no Chromium at ${executablePath}: ${PREPARE} (it installs Debian's chromium)`);
  }
  const { version, chromium } = playwright();
  let browser;
  try {
    browser = await chromium.launch({
      executablePath,
      headless: true,
      timeout: 60_000,
      // Chromium's shared memory in /dev/shm can be small in containers.
      args: ['--disable-dev-shm-usage', '--disable-gpu'],
    });
  } catch (err) {
    fail(`Chromium (${executablePath}) did not start under playwright-core ${version}: ${err.message}`);
  }
  openBrowser = browser;
  console.log(`chromium ${browser.version()}, playwright-core ${version}`);
  return browser;
}

/**
 * A page in a fresh context (its own cookies) whose relative URLs resolve
 * against `baseURL`. Uncaught errors in the page are collected in
 * `page.pageErrors` and printed; console errors and warnings, answers
 * of 400 and above and failed requests are printed.
 */
export async function newPage(browser, baseURL, options = {}) {
  const context = await browser.newContext({
    baseURL,
    viewport: { width: 1024, height: 768 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
    ...options,
  });
  context.setDefaultTimeout(stepTimeout);
  const page = await context.newPage();
  page.pageErrors = [];
  page.on('pageerror', (err) => {
    page.pageErrors.push(err.message);
    console.log(`  [page error] ${err.message}`);
  });
  page.on('console', (msg) => {
    // Failed loads are logged with their URL below.
    if (msg.text().startsWith('Failed to load resource')) return;
    if (msg.type() === 'error' || msg.type() === 'warning') {
      console.log(`  [console ${msg.type()}] ${msg.text()}`);
    }
  });
  page.on('response', (res) => {
    if (res.status() >= 400) {
      console.log(`  [http ${res.status()}] ${res.request().method()} ${res.url()}`);
    }
  });
  page.on('requestfailed', async (req) => {
    // Chromium reports a fetch answered 204 as aborted: it was answered.
    if (await req.response().catch(() => null)) return;
    console.log(`  [request failed] ${req.method()} ${req.url()}: ${req.failure()?.errorText}`);
  });
  return page;
}

/** Fails if the page threw an uncaught error so far. */
export function assertNoPageErrors(page) {
  assert(page.pageErrors.length === 0, `the page threw: ${page.pageErrors.join('; ')}`);
}

let shots = 0;

/** Writes a full-page PNG `<name>.png` into STOREFRONT_SCREENSHOTS. */
export async function screenshot(page, name) {
  const dir = process.env.STOREFRONT_SCREENSHOTS;
  if (!dir) return null;
  mkdirSync(dir, { recursive: true });
  shots += 1;
  const path = join(dir, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path, fullPage: true, animations: 'disabled', caret: 'hide' });
  console.log(`  screenshot ${path}`);
  return path;
}

/** Waits until the first element matching `selector` is visible. */
export async function waitForVisible(page, selector, { timeout = stepTimeout } = {}) {
  try {
    await page.locator(selector).first().waitFor({ state: 'visible', timeout });
  } catch (err) {
    fail(`${selector} is not visible after ${timeout} ms (${await describe(page)})`);
  }
}

/** Waits until no element matching `selector` is visible. */
export async function waitForHidden(page, selector, { timeout = stepTimeout } = {}) {
  try {
    await page.locator(selector).first().waitFor({ state: 'hidden', timeout });
  } catch (err) {
    fail(`${selector} is still visible after ${timeout} ms (${await describe(page)})`);
  }
}

/**
 * Waits until the text of the first element matching `selector` contains
 * `expected` (a string), matches it (a RegExp) or, with neither, is not
 * empty; returns that text.
 */
export async function waitForText(page, selector, expected, { timeout = stepTimeout } = {}) {
  const matches = (text) =>
    text != null &&
    (expected instanceof RegExp
      ? expected.test(text)
      : expected == null
        ? text.trim() !== ''
        : text.includes(expected));
  const deadline = Date.now() + timeout;
  let text = null;
  for (;;) {
    text = await page
      .locator(selector)
      .first()
      .textContent({ timeout: 500 })
      .catch(() => null);
    if (matches(text)) return text.trim();
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const want = expected == null ? 'some text' : JSON.stringify(String(expected));
  fail(
    `${selector} does not show ${want} after ${timeout} ms: ` +
      (text == null ? 'no such element' : `it shows ${JSON.stringify(text.trim())}`) +
      ` (${await describe(page)})`,
  );
}

/** The trimmed texts of every element matching `selector`. */
export async function texts(page, selector) {
  return (await page.locator(selector).allTextContents()).map((t) => t.trim());
}

async function describe(page) {
  try {
    return `at ${page.url()}`;
  } catch {
    return 'page closed';
  }
}

let currentStep = null;

/** Runs one named part of a spec; a failure names it. */
export async function step(name, fn) {
  currentStep = name;
  const started = Date.now();
  console.log(`- ${name}`);
  const value = await fn();
  console.log(`  ok (${Date.now() - started} ms)`);
  currentStep = null;
  return value;
}

/** `promise`, or undefined once `ms` have passed. */
function within(ms, promise) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function closeBrowser() {
  const browser = openBrowser;
  openBrowser = null;
  if (browser) await within(10_000, browser.close().catch(() => {}));
}

async function failureScreenshots(browser) {
  if (!browser) return;
  for (const context of browser.contexts()) {
    for (const page of context.pages()) {
      await within(5_000, screenshot(page, 'failure').catch(() => {}));
    }
  }
}

/**
 * Runs the spec `fn(browser)` with Chromium launched, closes it whatever
 * happens, and exits: 0 if it passed, 1 with the failed expectation (and a
 * screenshot of every open page, `NN-failure.png`) if not, also when it
 * overruns STOREFRONT_BROWSER_TIMEOUT_MS.
 */
export async function run(name, fn) {
  const started = Date.now();
  let reported = false;
  const report = async (message) => {
    // Once: a spec still running when the watchdog fires fails again as the browser closes.
    if (reported) return;
    reported = true;
    // Whatever hangs below, node exits.
    setTimeout(() => process.exit(1), 30_000).unref();
    const where = currentStep ? ` in step "${currentStep}"` : '';
    // Playwright's call logs carry terminal colours.
    const plain = message.replace(/\x1b\[[0-9;]*m/g, '');
    console.error(`FAILED: browser spec ${name}${where}: ${plain}`);
    await failureScreenshots(openBrowser);
    await closeBrowser();
    process.exit(1);
  };
  const watchdog = setTimeout(
    () => report(`it took longer than ${specTimeout} ms (STOREFRONT_BROWSER_TIMEOUT_MS)`),
    specTimeout,
  );
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => report(`stopped by ${signal}`));
  }
  try {
    const browser = await launch();
    await fn(browser);
  } catch (err) {
    clearTimeout(watchdog);
    await report(err instanceof Failure ? err.message : err.stack || String(err));
    return;
  }
  clearTimeout(watchdog);
  await closeBrowser();
  console.log(`browser spec ${name} passed in ${Date.now() - started} ms`);
}
