// A small remote control for Debian's Chromium, driven by the pytest side (browser.py).
// One JSON request per line on stdin, one JSON answer per line on stdout:
//   {"id": 1, "op": "goto", "page": 1, "url": "..."}  ->  {"id": 1, "ok": true, "value": ...}
// playwright-core comes from web/node_modules (MQTTGATE_WEB_DIR); the browser is the
// executable given in the launch options, never one that Playwright downloads.
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(path.join(process.env.MQTTGATE_WEB_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const options = JSON.parse(process.argv[2]);
const context = await chromium.launchPersistentContext(options.userDataDir, {
  executablePath: options.executablePath,
  headless: true,
  args: options.args,
  acceptDownloads: true,
  viewport: { width: 1400, height: 950 },
});
const pages = new Map();
let nextPage = 1;

function track(page) {
  const id = nextPage++;
  const entry = { page, console: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      entry.console.push({ type: msg.type(), text: msg.text(), url: msg.location().url || '' });
    }
  });
  page.on('pageerror', (err) => entry.console.push({ type: 'pageerror', text: String(err), url: '' }));
  pages.set(id, entry);
  return id;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Expressions are evaluated over CDP, which the pages' Content-Security-Policy does not
// govern, so the pages keep their strict policy under test.
async function waitFor(page, expression, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await page.evaluate(expression);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${expression}`);
    await sleep(20);
  }
}

const ops = {
  async newPage() { return track(await context.newPage()); },
  async goto({ page, url }) {
    const response = await page.goto(url, { waitUntil: 'load' });
    return { status: response ? response.status() : null, url: page.url() };
  },
  async evaluate({ page, expression }) { return await page.evaluate(expression); },
  async waitFor({ page, expression, timeoutMs }) { return await waitFor(page, expression, timeoutMs ?? 5000); },
  async fill({ page, selector, value }) { await page.fill(selector, value); },
  async click({ page, selector }) { await page.click(selector); },
  async select({ page, selector, value }) { await page.selectOption(selector, value); },
  async submit({ page, selector }) {
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
    return page.url();
  },
  async text({ page, selector }) { return await page.innerText(selector); },
  async download({ page, selector, path: target }) {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
    await download.saveAs(target);
    return download.suggestedFilename();
  },
  async upload({ page, selector, path: source }) { await page.setInputFiles(selector, source); },
  async screenshot({ page, path: target }) { await page.screenshot({ path: target, fullPage: true }); },
  async console({ entry }) { return entry.console; },
  async closePage({ page, id }) { await page.close(); pages.delete(id); },
};

const lines = readline.createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ id: 0, ok: true, value: context.browser()?.version() ?? 'ready' }) + '\n');
for await (const line of lines) {
  const request = JSON.parse(line);
  if (request.op === 'quit') break;
  const entry = request.page ? pages.get(request.page) : null;
  try {
    const fn = ops[request.op];
    if (!fn) throw new Error(`unknown op ${request.op}`);
    const value = await fn({ ...request, id: request.page, page: entry?.page, entry });
    process.stdout.write(JSON.stringify({ id: request.id, ok: true, value: value ?? null }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ id: request.id, ok: false, error: String(err.message || err) }) + '\n');
  }
}
await context.close();
