// The storefront page (gateway/static/index.html) in Chromium: a wrong
// password, a login, the user's name, city, purchases and ads, a reload on
// the session cookie, logout, and a partial page's banner.
//
// Run by tests/tests/browser.rs (`cargo test -p storefront-e2e --test browser`),
// which starts the stacks and sets:
//
//   STOREFRONT_URL           a gateway of a stack with all five services
//   STOREFRONT_PARTIAL_URL   a gateway of a stack without ads-svc (pages are partial)
//   STOREFRONT_USERNAME, STOREFRONT_PASSWORD   a seeded user of both stacks
//   STOREFRONT_USER_NAME, STOREFRONT_USER_CITY  who that user is
//   STOREFRONT_PURCHASES     a JSON array of the names of their recent purchases, newest first

import {
  assert,
  assertEqual,
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

async function logIn(page, username, password) {
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('#login-submit');
}

async function expectLoginForm(page) {
  await waitForVisible(page, '#login');
  await waitForHidden(page, '#page');
  await waitForHidden(page, '#status');
}

/** The page of `user`: their name, city, and purchases in order. */
async function expectUsersPage(page, user) {
  await waitForVisible(page, '#page');
  await waitForHidden(page, '#login');
  await waitForText(page, '#user-name', user.name);
  assertEqual(await texts(page, '#user-name'), [user.name], 'the user name');
  assertEqual(await texts(page, '#user-city'), [user.city], 'the city');
  assertEqual(await texts(page, '#purchases li .name'), user.purchases, 'the recent purchases, newest first');
  for (const price of await texts(page, '#purchases li .price')) {
    assert(/^\$\d[\d,]*\.\d\d$/.test(price), `a purchase's price reads ${JSON.stringify(price)}, not like $12.34`);
  }
  assert(!(await page.isVisible('#purchases-empty')), 'the purchases list says "Nothing here yet." beside purchases');
  const requestId = await waitForText(page, '#request-id', null);
  assert(/^[0-9a-f-]{36}$/.test(requestId), `the footer's request id is ${JSON.stringify(requestId)}`);
  await waitForText(page, '#page-error', /^$/);
}

await run('storefront', async (browser) => {
  const fullUrl = env('STOREFRONT_URL');
  const partialUrl = env('STOREFRONT_PARTIAL_URL');
  const user = {
    username: env('STOREFRONT_USERNAME'),
    password: env('STOREFRONT_PASSWORD'),
    name: env('STOREFRONT_USER_NAME'),
    city: env('STOREFRONT_USER_CITY'),
    purchases: JSON.parse(env('STOREFRONT_PURCHASES')),
  };

  const page = await newPage(browser, fullUrl);

  await step('without a session, / shows the login form', async () => {
    await page.goto('/');
    await expectLoginForm(page);
    assertEqual(await page.title(), 'Storefront', 'the title');
    await waitForText(page, '#login-error', /^$/);
  });

  await step('a wrong password shows the error and no page', async () => {
    await logIn(page, user.username, `${user.password}-wrong`);
    const message = await waitForText(page, '#login-error', null);
    assertEqual(message, 'wrong username or password', 'the login error');
    await expectLoginForm(page);
    assertEqual(await page.inputValue('#password'), '', 'the password field after a failed login');
    assertEqual(await page.inputValue('#username'), user.username, 'the username field after a failed login');
    await screenshot(page, 'login-wrong-password');
  });

  await step('logging in shows the name, city, purchases and ads with their reasons', async () => {
    await page.fill('#password', user.password);
    await page.click('#login-submit');
    await expectUsersPage(page, user);
    await waitForText(page, '#login-error', /^$/);
    const ads = page.locator('#ads article.ad');
    const count = await ads.count();
    assert(count > 0, 'no ads on a complete page');
    assert(!(await page.isVisible('#ads-empty')), '"No picks right now." shows beside ads');
    for (let i = 0; i < count; i += 1) {
      const ad = ads.nth(i);
      const name = ((await ad.locator('h3').textContent()) || '').trim();
      const reason = ((await ad.locator('.reason').textContent()) || '').trim();
      const price = ((await ad.locator('.price').textContent()) || '').trim();
      assert(name !== '', `ad ${i + 1} has no name`);
      assert(reason !== '', `ad ${i + 1} (${name}) gives no reason`);
      assert(/^\$\d[\d,]*\.\d\d$/.test(price), `ad ${i + 1} (${name}) has the price ${JSON.stringify(price)}`);
    }
    assert(!(await page.isVisible('#partial-banner')), 'a complete page shows the partial banner');
    console.log(`  ${user.purchases.length} purchases, ${count} ads`);
    await screenshot(page, 'page-full');
  });

  await step('a reload shows the page again from the session cookie', async () => {
    await page.reload();
    await expectUsersPage(page, user);
  });

  await step('logging out returns to the login form, and a reload keeps it there', async () => {
    await page.click('#logout');
    await expectLoginForm(page);
    await waitForText(page, '#login-error', /^$/);
    await screenshot(page, 'logged-out');
    await page.reload();
    await expectLoginForm(page);
  });
  assertNoPageErrors(page);

  const partial = await newPage(browser, partialUrl);
  await step('without ads-svc, the page shows what arrived and a banner naming the late part', async () => {
    await partial.goto('/');
    await expectLoginForm(partial);
    await logIn(partial, user.username, user.password);
    await expectUsersPage(partial, user);
    await waitForVisible(partial, '#partial-banner');
    assertEqual(
      await texts(partial, '#partial-banner'),
      ['Some parts of this page are late: ads'],
      'the partial banner',
    );
    assertEqual(await partial.locator('#ads article').count(), 0, 'the number of ads');
    await waitForVisible(partial, '#ads-empty');
    await screenshot(partial, 'page-partial');
  });
  assertNoPageErrors(partial);
});
