// Opens one page in headless Chromium (Debian's, driven by playwright-core) and reports
// what it saw, for the browser tests.
// Usage: node browser.mjs PLAN.json, where PLAN holds the chromium path, the page URL,
// a deadline and the page's `config` (given to every frame as window.__config before
// its scripts run). The page says it is done by setting window.__result.
// Prints one JSON line: the page's result, every URL the browser requested, what the
// page kept (its URL, localStorage, sessionStorage, cookies), the errors the console
// showed (a CORS block, say) and any uncaught exception.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await chromium.launch({
  executablePath: plan.chromium,
  headless: true,
  // No user namespaces for Chromium's own sandbox where the tests run as root.
  args: ['--no-sandbox'],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const requested = [];
  const consoleErrors = [];
  const exceptions = [];
  page.on('request', (request) => requested.push(request.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => exceptions.push(String(error)));
  await context.addInitScript((config) => {
    window.__config = config;
  }, plan.config);
  await page.goto(plan.url);
  await page.waitForFunction(() => window.__result !== undefined, null, {
    timeout: plan.deadline_ms,
  });
  const report = await page.evaluate(() => ({
    result: window.__result,
    url: location.href,
    localStorage: { ...localStorage },
    sessionStorage: { ...sessionStorage },
    documentCookie: document.cookie,
  }));
  report.cookies = await context.cookies();
  report.requested = requested;
  report.consoleErrors = consoleErrors;
  report.exceptions = exceptions;
  process.stdout.write(`${JSON.stringify(report)}\n`);
} finally {
  await browser.close();
}
