// The operator console (cli/src/console/assets/) in Chromium: a wrong
// token is refused and the right one accepted; a login made through the
// storefront appears in the live list; its timeline shows a record on
// every request-path topic, drawn per service, and no password; the health
// view shows the services' groups and the charts; the topics view lists the
// namespace's topics and reads one's records with its secrets redacted, and
// shows the console's refusal of a topic there is not; a replay's dry run
// says what it would do (with the budget scale it would use), and a replay
// into the live namespace is refused.
//
// Environment (tests/tests/console.rs passes it):
//   CONSOLE_URL, CONSOLE_TOKEN     the console and its operator token
//   STOREFRONT_URL                 the gateway of the same namespace
//   STOREFRONT_USERNAME, STOREFRONT_PASSWORD   a seeded user
//   REPLAY_INTO                    a fresh namespace for the dry run

import {
  assert,
  assertNoPageErrors,
  env,
  newPage,
  run,
  screenshot,
  step,
  texts,
  waitForHidden,
  waitForText,
  waitForVisible,
} from './lib.mjs';

const consoleUrl = env('CONSOLE_URL');
const token = env('CONSOLE_TOKEN');
const storefrontUrl = env('STOREFRONT_URL');
const username = env('STOREFRONT_USERNAME');
const password = env('STOREFRONT_PASSWORD');
const replayInto = env('REPLAY_INTO');

const REQUEST_PATH = ['page.requested', 'user.resolved', 'history.fetched', 'ads.selected', 'page.completed'];

/** Logs in through the storefront's API; the request's ID. */
async function login() {
  const res = await fetch(`${storefrontUrl}/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const body = await res.json();
  assert(res.status === 200, `the login answers 200, not ${res.status}: ${JSON.stringify(body)}`);
  return body.request_id;
}

await run('console', async (browser) => {
  const page = await newPage(browser, consoleUrl, { viewport: { width: 1280, height: 900 } });

  await step('a wrong token is refused with a message', async () => {
    await page.goto('/');
    await waitForVisible(page, '#token-input');
    await page.fill('#token-input', 'not-the-operator-token');
    await page.click('#token-submit');
    await waitForText(page, '#token-error', /refused/i);
    await waitForVisible(page, '#token-input');
    await screenshot(page, 'token-refused');
  });

  await step('the operator token opens the console', async () => {
    await page.fill('#token-input', token);
    await page.click('#token-submit');
    await waitForVisible(page, '#requests');
    await waitForText(page, '#live-state', /live/i);
  });

  const requestId = await step('a login appears in the live list', async () => {
    const id = await login();
    const row = `#requests tr[data-request-id="${id}"]`;
    await waitForVisible(page, row);
    await waitForText(page, row, 'complete');
    await screenshot(page, 'requests-live');
    return id;
  });

  await step('its timeline shows every topic, per service, and no password', async () => {
    await page.click(`#requests tr[data-request-id="${requestId}"]`);
    await waitForVisible(page, '#timeline-steps');
    for (const topic of REQUEST_PATH) {
      await waitForVisible(page, `#timeline-steps tr[data-topic$="${topic}"]`);
    }
    await waitForVisible(page, '#timeline-chart');
    const chart = (await page.locator('#timeline-chart').textContent()) || '';
    for (const service of ['gateway', 'user-svc', 'history-svc', 'ads-svc', 'aggregator', 'deadline']) {
      assert(chart.includes(service), `the timeline chart names ${service}: it shows ${JSON.stringify(chart)}`);
    }
    await waitForText(page, '#timeline', requestId);
    const link = await page.locator('#trace-link').getAttribute('href');
    assert(/\/trace\/[0-9a-f]{32}$/.test(link || ''), `the trace link points at a trace id: ${link}`);
    const whole = await page.content();
    assert(!whole.includes(password), 'the password is nowhere on the page');
    await screenshot(page, 'timeline');
  });

  await step('health shows the groups, their lag and the charts', async () => {
    await page.click('#nav-health');
    await waitForVisible(page, '#groups');
    await waitForText(page, '#groups', 'user-svc');
    await waitForVisible(page, '#chart-rate svg, svg#chart-rate');
    await waitForVisible(page, '#chart-latency svg, svg#chart-latency');
    await screenshot(page, 'health');
  });

  await step('topics: a record of credentials shows its hash redacted, an unknown topic the refusal', async () => {
    await page.click('#nav-topics');
    await waitForVisible(page, '#topics tr[data-topic-name="page.completed"]');
    await page.click('#topics tr[data-topic-name="credentials"]');
    await waitForText(page, '#topic-name', 'credentials');
    assert(page.url().endsWith('#topics/credentials'), `the hash names the topic: ${page.url()}`);
    await page.click('#topic-load');
    // The records read on opening the topic are replaced by the ones loaded.
    await waitForHidden(page, '#topic-loading');
    const row = '#topic-records tr[data-offset]';
    await waitForVisible(page, row);
    await page.locator(`${row} details.record > summary`).first().click();
    const hash = page.locator('#topic-records tr.step-detail li', { hasText: 'password_hash' }).first();
    await waitForVisible(page, '#topic-records tr.step-detail li');
    const shown = ((await hash.textContent()) || '').trim();
    assert(/^password_hash:\s*\[redacted\]$/.test(shown), `the hash reads [redacted]: the page shows ${JSON.stringify(shown)}`);
    assert(!(await page.content()).includes('$argon2'), 'no password hash is anywhere on the page');
    await screenshot(page, 'topics');

    await page.evaluate(() => { location.hash = '#topics/no.such.topic'; });
    await waitForText(page, '#topic-error', /"no\.such\.topic" is not a topic/);
    const code = await page.locator('#topic-error').getAttribute('data-code');
    assert(code === 'unknown_topic', `the error is the console's unknown_topic, not ${code}`);
    assert(await page.locator('#topic-records-card').isHidden(), 'no records are shown under an unknown topic');
  });

  await step('a replay into the live namespace is refused', async () => {
    await page.click('#nav-replay');
    await waitForVisible(page, '#replay-from');
    await page.fill('#replay-from', '10m');
    await page.fill('#replay-to', '');
    await page.fill('#replay-into', '');
    await page.click('#replay-plan');
    await waitForText(page, '#replay-error', /namespace/i);
    assert(await page.locator('#replay-run').isDisabled(), 'no run without a dry run');
  });

  await step('a replay dry run says what it would do', async () => {
    await page.fill('#replay-into', replayInto);
    await page.fill('#replay-budget-scale', '2');
    await page.click('#replay-plan');
    await waitForText(page, '#replay-plan-result', replayInto);
    await waitForText(page, '#replay-plan-result', /Replay \d+ of the \d+ requests/);
    await waitForText(page, '#replay-plan-result', /budget scale 2/);
    assert(!(await page.locator('#replay-run').isDisabled()), 'the dry run enables the run');
    await screenshot(page, 'replay-dry-run');
  });

  assertNoPageErrors(page);
  const shown = await texts(page, '#replay-plan-result');
  console.log(`  dry run: ${shown.join(' ').slice(0, 200)}`);
});
