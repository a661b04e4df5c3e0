/// <reference lib="dom" />
// The dashboard in a real browser: Debian's Chromium (installed by scripts/install-chromium.sh)
// driven by playwright-core, against the real api (embedded sandboxed worker, flash sale in
// direct mode) and the real aggregator, on small generated files. Skips, saying why, only when
// Chromium cannot be installed.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { startApi } from '../../src/api/server.js'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { createLogger } from '../../src/shared/logger.js'
import type { Run } from '../../src/shared/run-contract.js'
import { startAggregator, setupPipeline } from '../helpers/aggregator-fixtures.js'
import { ADMIN_TOKEN } from '../helpers/api-env.js'
import { sampleValue } from '../helpers/metrics-text.js'
import { testSchema } from '../helpers/postgres-env.js'

const CHROMIUM = '/usr/bin/chromium'
// Without the background-networking switches Chromium's own connections (updates, sync) are
// refused by a closed network and slow it down.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const METRICS_TOKEN = 'test-metrics-token-0123456789abcdef'
/** Git-ignored; the README's docs/dashboard.png is made from one of them. */
const SCREENSHOT = new URL('../../test-artifacts/dashboard.png', import.meta.url)
const SCREENSHOT_RUNNING = new URL('../../test-artifacts/dashboard-running.png', import.meta.url)

/** Installs Chromium with the project's script when it is missing; the reason to skip when it cannot. */
function chromiumMissing (): string | false {
  if (existsSync(CHROMIUM)) return false
  const install = spawnSync('bash', ['scripts/install-chromium.sh'], { encoding: 'utf8' })
  if (install.status === 0 && existsSync(CHROMIUM)) return false
  return `Chromium cannot be installed here: ${(install.stdout + install.stderr).trim().split('\n').at(-1) ?? 'no output'}`
}

async function launch (t: Test): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
  t.teardown(() => browser.close())
  return browser
}

async function signIn (page: Page, token: string): Promise<void> {
  await page.getByLabel('Admin token').fill(token)
  await page.getByRole('button', { name: 'Show the pipeline' }).click()
}

t.test('the dashboard: sign in, start a run, watch its bars reach 100 % and the new swap appear', { skip: chromiumMissing() }, async (t) => {
  const pipeline = await setupPipeline(t, 'dashboard', { INGEST_CRON: '0 3 * * *' })
  // Big enough (about 3 MB per file) for the bars to be seen moving on most machines.
  const key = await generateCoupons({ outDir: pipeline.dir, scale: 0.005, seed: 31 })
  const { databaseUrl } = await testSchema(t)
  const config = { ...pipeline.config, adminToken: ADMIN_TOKEN, metricsToken: METRICS_TOKEN, port: 0, host: '127.0.0.1', rateLimitMax: 0, eventDrivenEnabled: false, databaseUrl }
  await startAggregator(t, config)
  const server = await startApi({ config, logger: createLogger('warn', 'api') })
  t.teardown(server.close)
  const base = server.url

  // A flash-sale coupon, one unit claimed.
  const post = async (path: string, body: object): Promise<number> => (await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).status
  t.equal(await post('/api/coupons', { name: 'PROMO_SUPER', amount: 100 }), 201)
  t.equal(await post('/api/coupons/claim', { user_id: 'user_1', coupon_name: 'PROMO_SUPER' }), 200)

  const browser = await launch(t)
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } })
  const elsewhere: string[] = []
  page.on('request', (request) => { if (!request.url().startsWith(base)) elsewhere.push(request.url()) })
  const pageErrors: string[] = []
  page.on('pageerror', (err) => { pageErrors.push(err.message) })

  await t.test('a wrong token shows an error and no data', async (t) => {
    await page.goto(`${base}/dashboard`)
    t.equal(new URL(page.url()).pathname, '/dashboard/')
    await signIn(page, 'not-the-admin-token-at-all')
    const error = page.getByRole('alert').filter({ hasText: 'refused' })
    await error.waitFor()
    t.match(await error.textContent(), /admin token was refused \(401\)/)
    t.ok(await page.locator('#dashboard').isHidden(), 'the data section stays hidden')
    t.equal(await page.locator('#runs').textContent(), '', 'no run is shown')
    t.equal(await page.locator('#valid-count').textContent(), '–', 'no live set is shown')
    t.equal(await page.evaluate(() => sessionStorage.length), 0, 'the refused token is not kept')
  })

  let lastSwapBefore: string | null = null
  await t.test('the right token shows the live set (none yet), the schedule, the queue and the flash sale', async (t) => {
    await signIn(page, ADMIN_TOKEN)
    await page.locator('#dashboard').waitFor()
    t.ok(await page.locator('#sign-in-error').isHidden(), 'the earlier error is gone')
    t.equal(await page.locator('#valid-count').textContent(), 'no set published yet')
    t.equal(await page.locator('#schedule').textContent(), '0 3 * * * (UTC)')
    t.ok(Date.parse(await page.locator('#next-run').getAttribute('data-iso') ?? '') > Date.now(), 'the next daily run is in the future')
    t.equal(await page.locator('#queue dd[data-state="waiting"]').textContent(), '0')
    lastSwapBefore = await page.locator('#last-swap').getAttribute('data-iso')
    t.equal(lastSwapBefore, null)
    const coupon = page.locator('tr[data-coupon="PROMO_SUPER"]')
    await coupon.waitFor()
    t.same(await coupon.locator('td').allTextContents(), ['100', '99'], 'amount and remaining stock')
    t.same(await page.locator('#file-choices input:checked').evaluateAll((boxes) => boxes.map((box) => (box as HTMLInputElement).value)), pipeline.config.couponFiles)
    t.equal(await page.evaluate(() => sessionStorage.length), 1, 'the token is kept for this tab')
  })

  await t.test('"Start ingest" starts a run whose bars reach 100 %, then the new swap appears', async (t) => {
    const requestedAt = Date.now()
    await page.getByRole('button', { name: 'Start ingest' }).click()
    const started = page.locator('#start-result')
    await started.filter({ hasText: 'started' }).waitFor()
    const runId = await started.getAttribute('data-run-id')
    t.match(runId, /^\d{8}T\d{9}Z-[0-9a-f]{8}$/)
    const run = page.locator(`article[data-run="${runId}"]`)
    await run.waitFor()
    t.equal(await run.locator('progress').count(), 3, 'one bar per file')

    // The bars as the page shows them, sampled while the run goes on.
    await mkdir(new URL('.', SCREENSHOT), { recursive: true })
    let runningShot = false
    const seen = new Set<number>()
    const deadline = Date.now() + 120_000
    for (;;) {
      const percents = await run.locator('progress').evaluateAll((bars) => bars.map((bar) => (bar as HTMLProgressElement).value))
      for (const percent of percents) seen.add(Math.round(percent))
      if (!runningShot && percents.some((percent) => percent > 10 && percent < 90)) {
        runningShot = true
        await page.screenshot({ path: SCREENSHOT_RUNNING.pathname, fullPage: true })
      }
      const outcome = await run.locator('.outcome').textContent()
      if (percents.every((percent) => percent === 100) && /^Applied/.test(outcome ?? '')) break
      if (/^Failed/.test(outcome ?? '') || Date.now() > deadline) throw new Error(`the run did not apply: ${outcome}`)
      await page.waitForTimeout(100)
    }
    // Not asserted: how many in-between values a poll catches depends on the machine's speed.
    t.comment(`bar values seen: ${[...seen].sort((a, b) => a - b).join(', ')}`)
    const view = await (await fetch(`${base}/admin/runs/${runId}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json() as Run
    for (const file of pipeline.config.couponFiles) {
      const row = run.locator(`[data-file="${file}"]`)
      t.match(await row.locator('.state').textContent(), /^completed · 100\.0 %$/, `${file} completed at 100 %`)
      t.match(await row.locator('.figures').textContent(), /MB of .* MB · [\d,]+ codes · done/, `${file} shows bytes and codes`)
      const applied = view.files.find((entry) => entry.file === file)?.appliedSegmentId
      t.match(applied, /^\d{8}T\d{9}Z-[0-9a-f]{8}$/, `${file}: the run view names its applied segment`)
      // The same run view that showed "Applied" names the segments, so they are on the page already.
      t.equal(await row.locator('.segment').textContent(), `Applied segment ${applied}`, `${file} shows the segment the swap used`)
      t.equal(await row.locator('.attempts').count(), 0, `${file}: one attempt, so no retry is listed`)
    }
    t.match(await run.locator('.outcome').textContent(), new RegExp(`^Applied .*: ${key.valid.length} valid codes, swap \\d+ ms$`))

    // The live set's card follows within a poll.
    await page.waitForFunction((before) => {
      const iso = document.getElementById('last-swap')?.dataset.iso
      return iso !== undefined && iso !== before
    }, lastSwapBefore, { timeout: 5000 })
    const lastSwap = await page.locator('#last-swap').getAttribute('data-iso')
    t.ok(Date.parse(lastSwap ?? '') >= requestedAt, `the new swap time ${lastSwap} is after the click`)
    t.match(await page.locator('#last-swap').textContent(), /\(\d+ s ago\)$/, 'with how long ago')
    t.equal(await page.locator('#generation').textContent(), runId, 'the run is the generation')
    t.equal(await page.locator('#valid-count').textContent(), String(key.valid.length))
    t.match(await page.locator('#swap-ms').textContent(), /^\d+ ms$/)

    await page.screenshot({ path: SCREENSHOT.pathname, fullPage: true })
    t.ok((await stat(SCREENSHOT)).size > 10_000, `screenshot saved to ${SCREENSHOT.pathname}`)

    // The api's /metrics saw the same run (its registry holds the embedded worker's metrics).
    const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text()
    for (const file of pipeline.config.couponFiles) {
      t.equal(sampleValue(text, 'coupons_ingest_bytes_total', { file }), (await stat(join(pipeline.dir, file))).size, `/metrics: every byte of ${file}`)
      t.equal(sampleValue(text, 'coupons_ingest_progress_ratio', { file }), 1)
    }
    t.equal(sampleValue(text, 'coupons_valid_set_codes', { set: pipeline.keys.valid }), key.valid.length)
    t.equal(sampleValue(text, 'coupons_valid_set_last_swap_timestamp_seconds', { set: pipeline.keys.valid }), Date.parse(lastSwap ?? '') / 1000)
  })

  await t.test('at phone width nothing scrolls sideways and the button is reachable', async (t) => {
    await page.setViewportSize({ width: 375, height: 740 })
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    t.ok(overflow <= 0, `no horizontal overflow (${overflow} px)`)
    const button = page.getByRole('button', { name: 'Start ingest' })
    await button.scrollIntoViewIfNeeded()
    const box = await button.boundingBox()
    t.ok(box !== null && box.x >= 0 && box.x + box.width <= 375, 'the Start button fits the screen')
  })

  await t.test('signing out hides the data and forgets the token', async (t) => {
    await page.getByRole('button', { name: 'Sign out' }).click()
    t.ok(await page.locator('#dashboard').isHidden())
    t.equal(await page.locator('#runs').textContent(), '')
    t.equal(await page.evaluate(() => sessionStorage.length), 0)
  })

  t.same(elsewhere, [], 'every request of the page went to the api itself (no CDN)')
  t.same(pageErrors, [], 'no script error on the page')
})
