// Drives the admin playground in headless Chromium like an admin would:
// loads /graphql, logs in through the page's form, runs a query and a
// subscription from GraphiQL's editor, and records every network request.
// Prints one JSON line (what it saw) for tests/playground_browser.rs, which
// asserts on it. Usage: node playground.mjs <base-url> <username> <password>
import { chromium } from 'playwright-core';

const [base, username, password] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  headless: true,
  // The closed network refuses Chromium's own background connections.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = { requests: [], consoleErrors: [] };
try {
  const page = await browser.newPage();
  page.on('request', (r) => seen.requests.push(r.url()));
  page.on('websocket', (ws) => seen.requests.push(ws.url()));
  page.on('console', (m) => { if (m.type() === 'error') seen.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => seen.consoleErrors.push(String(e)));

  await page.goto(`${base}/graphql`, { waitUntil: 'load' });
  await page.waitForSelector('.graphiql-container', { timeout: 15000 });
  seen.title = await page.title();

  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => document.getElementById('who').textContent.length > 0,
    null, { timeout: 10000 });
  seen.who = await page.textContent('#who');
  seen.tokenStored = await page.evaluate(() => (sessionStorage.getItem('claude-relay.admin-token') || '').length > 0);

  // GraphiQL's editors are CodeMirror instances; set the text, press run.
  const run = async (query, until) => {
    await page.evaluate((q) => {
      document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q);
    }, query);
    // GraphiQL parses the edited text after a short debounce; until then it
    // would run the previous document (and route by its operation type).
    await page.waitForTimeout(700);
    await page.click('.graphiql-execute-button');
    await page.waitForFunction((needle) => {
      const cm = document.querySelector('.graphiql-response .CodeMirror');
      return cm && cm.CodeMirror.getValue().includes(needle);
    }, until, { timeout: 15000 });
    return page.evaluate(() => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue());
  };
  seen.query = JSON.parse(await run('{ me { username role } }', '"username"'));
  // A subscription over the page's WebSocket: the first tick arrives within a second.
  const tick = await run('subscription { usageTicker { at requests } }', '"usageTicker"');
  seen.subscription = JSON.parse(tick);
  await page.click('.graphiql-execute-button'); // stop the subscription
  await page.click('#logout');
  await page.waitForFunction(() => document.getElementById('bar').getAttribute('data-auth') === 'no',
    null, { timeout: 10000 });
  seen.loggedOut = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
