// The operators' dashboard. It holds no secret and no data of its own: the admin token typed in
// is kept in this tab's sessionStorage and sent as a Bearer token to the documented /admin
// routes, polled every second. Everything shown is built with textContent (never innerHTML), so
// a failure reason or a coupon name is shown as text, never run as markup.
'use strict'

const TOKEN_KEY = 'coupons-admin-token'
const POLL_MS = 1000
const RUNS_SHOWN = 5
const COUPONS_SHOWN = 50

const $ = (id) => document.getElementById(id)
const numbers = new Intl.NumberFormat()

class Unauthorized extends Error {}

let timer = null
let generation = 0
/** Per file job: its last byte count, when it was seen, and the smoothed read rate (bytes/s). */
const rates = new Map()
let filesShown = ''

async function api (path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY) ?? ''
  const response = await fetch(path, {
    ...options,
    cache: 'no-store',
    headers: { ...options.headers, authorization: `Bearer ${token}` }
  })
  if (response.status === 401) throw new Unauthorized('the admin token was refused')
  const body = await response.json().catch(() => null)
  if (!response.ok) throw new Error(body?.message ?? `HTTP ${response.status}`)
  return body
}

// --- formatting ------------------------------------------------------------------------------

function megabytes (bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`
}

function duration (seconds) {
  if (!Number.isFinite(seconds)) return '–'
  if (seconds < 60) return `${Math.round(seconds)} s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`
  return `${Math.floor(seconds / 86400)} d ${Math.floor((seconds % 86400) / 3600)} h`
}

function ago (iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000)
  return `${duration(seconds)} ago`
}

function localTime (iso) {
  return new Date(iso).toLocaleString()
}

/** An element with text, and attributes. */
function el (tag, text, attributes = {}) {
  const node = document.createElement(tag)
  if (text !== undefined && text !== null) node.textContent = text
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value)
  return node
}

function setTime (node, iso, withAgo) {
  if (iso === null || iso === undefined) {
    node.textContent = '–'
    node.removeAttribute('data-iso')
    return
  }
  node.textContent = withAgo ? `${localTime(iso)} (${ago(iso)})` : localTime(iso)
  node.dataset.iso = iso
  node.title = iso
}

// --- sections --------------------------------------------------------------------------------

function showStatus (status) {
  $('valid-count').textContent = status.validCount === null ? 'no set published yet' : numbers.format(status.validCount)
  $('generation').textContent = status.generation ?? '–'
  setTime($('last-swap'), status.lastSwapAt, true)
  $('swap-ms').textContent = status.swapMs === null ? '–' : `${numbers.format(status.swapMs)} ms`
  const { pattern, tz, next } = status.schedule
  $('schedule').textContent = pattern === null ? 'off' : `${pattern} (${tz})`
  setTime($('next-run'), next, false)

  const queue = $('queue')
  queue.replaceChildren()
  for (const [state, count] of Object.entries(status.queue)) {
    queue.append(el('dt', state), el('dd', numbers.format(count), { 'data-state': state }))
  }

  // The file choices are rebuilt only when the configured files change, so a ticked box stays ticked.
  const files = status.files.join(',')
  if (files !== filesShown) {
    filesShown = files
    const choices = $('file-choices')
    choices.replaceChildren()
    for (const file of status.files) {
      const box = el('input', null, { type: 'checkbox', name: 'files', value: file })
      box.checked = true
      const label = el('label')
      label.append(box, document.createTextNode(file))
      choices.append(label)
    }
  }
}

function fileRow (run, file, now) {
  const row = el('div', null, { class: 'file', 'data-file': file.file })
  const progress = file.progress
  const percent = progress === null ? 0 : progress.percent
  const name = el('div', null, { class: 'name' })
  const labelId = `${file.jobId}-label`.replace(/[^A-Za-z0-9_-]/g, '_')
  name.append(el('span', file.file, { id: labelId }), el('span', `${file.state} · ${percent.toFixed(1)} %`, { class: 'state' }))
  const bar = el('progress', null, { max: '100', 'aria-labelledby': labelId, 'data-percent': String(percent) })
  bar.value = percent
  row.append(name, bar)

  if (progress !== null) {
    const figures = [`${megabytes(progress.bytesRead)} of ${megabytes(progress.bytesTotal)}`, `${numbers.format(progress.codes)} codes`]
    const seen = rates.get(file.jobId)
    let rate = seen?.rate ?? null
    if (seen !== undefined && progress.bytesRead > seen.bytes && now > seen.at) {
      const current = (progress.bytesRead - seen.bytes) / ((now - seen.at) / 1000)
      rate = rate === null ? current : rate * 0.5 + current * 0.5
    }
    if (seen === undefined || progress.bytesRead !== seen.bytes) rates.set(file.jobId, { bytes: progress.bytesRead, at: now, rate })
    if (file.state === 'active' && rate !== null && rate > 0) {
      figures.push(`${(rate / 1e6).toFixed(1)} MB/s`, `${duration((progress.bytesTotal - progress.bytesRead) / rate)} left`)
    } else if (file.state === 'completed') {
      figures.push('done')
    }
    row.append(el('div', figures.join(' · '), { class: 'figures' }))
  }
  if (file.appliedSegmentId !== null) row.append(el('div', `Applied segment ${file.appliedSegmentId}`, { class: 'segment' }))
  if (file.state === 'stalled') row.append(el('div', 'Stalled: its worker died; a live worker retries it at its next stalled-job check', { class: 'reason' }))
  // Earlier attempts that did not finish, so a retried file says why it was retried.
  const earlier = file.attempts.filter((attempt) => attempt.outcome === 'failed' || attempt.outcome === 'interrupted')
  if (earlier.length > 0) {
    const attempts = earlier.map((attempt) => `#${attempt.attempt} ${attempt.outcome}${attempt.error === null ? '' : `: ${attempt.error}`}`)
    row.append(el('div', `Attempts: ${file.attempts.length} (${attempts.join('; ')})`, { class: 'attempts' }))
  }
  if (file.failedReason !== null) row.append(el('div', `Failed: ${file.failedReason}`, { class: 'reason' }))
  return row
}

function outcome (run) {
  const result = run.result
  if (result === null) {
    if (run.state === 'failed') return el('p', 'Failed: a file could not be ingested (see its reason)', { class: 'outcome failed' })
    return el('p', run.state === 'completed' ? 'Ingested; waiting for the aggregator' : 'In progress', { class: 'outcome' })
  }
  if (result.state === 'applied') {
    return el('p', `Applied ${localTime(result.appliedAt)}: ${numbers.format(result.validCount)} valid codes, swap ${numbers.format(result.swapMs)} ms`, { class: 'outcome applied' })
  }
  if (result.state === 'failed') return el('p', `Failed: ${result.error}`, { class: 'outcome failed' })
  return el('p', `Superseded: ${result.error ?? 'a newer set was applied first'}`, { class: 'outcome' })
}

function showRuns (runs) {
  const now = Date.now()
  const list = $('runs')
  if (runs.length === 0) {
    list.replaceChildren(el('p', 'No runs yet.', { class: 'muted' }))
    return
  }
  list.replaceChildren(...runs.map((run) => {
    const article = el('article', null, { class: 'run', 'data-run': run.runId, 'aria-label': `Run ${run.runId}` })
    const header = el('header')
    header.append(el('h3', run.runId), el('span', `${run.source} · ${run.state} · requested ${ago(run.requestedAt)}`, { class: 'meta' }))
    article.append(header, ...run.files.map((file) => fileRow(run, file, now)), outcome(run))
    return article
  }))
}

function showCoupons (page) {
  const section = $('flash-sale')
  section.hidden = page.coupons.length === 0
  $('flash-sale-coupons').replaceChildren(...page.coupons.map((coupon) => {
    const row = el('tr', null, { 'data-coupon': coupon.name })
    row.append(el('th', coupon.name, { scope: 'row' }), el('td', numbers.format(coupon.amount), { class: 'num' }), el('td', numbers.format(coupon.remaining_amount), { class: 'num' }))
    return row
  }))
  const more = $('flash-sale-more')
  more.hidden = page.next === null
  more.textContent = `The first ${COUPONS_SHOWN} coupons in name order.`
}

// --- polling and signing in ------------------------------------------------------------------

async function refresh (mine) {
  try {
    const [status, runs] = await Promise.all([api('/admin/status'), api(`/admin/runs?limit=${RUNS_SHOWN}`)])
    // A coupon list that cannot be read (PostgreSQL down) must not hide the rest.
    const coupons = await api(`/admin/flash-sale/coupons?limit=${COUPONS_SHOWN}`).catch((err) => {
      if (err instanceof Unauthorized) throw err
      return null
    })
    if (mine !== generation) return
    showStatus(status)
    showRuns(runs.runs)
    if (coupons !== null) showCoupons(coupons)
    $('fetch-error').hidden = true
    $('dashboard').hidden = false
    $('sign-in').hidden = true
    $('sign-out').hidden = false
    $('updated-at').textContent = `Last update ${new Date().toLocaleTimeString()}.`
  } catch (err) {
    if (mine !== generation) return
    if (err instanceof Unauthorized) {
      signOut('The admin token was refused (401). Nothing is shown without a valid token.')
      return
    }
    const error = $('fetch-error')
    error.textContent = `Could not update: ${err.message}. Retrying…`
    error.hidden = false
  }
  if (mine === generation) timer = setTimeout(() => { refresh(mine) }, POLL_MS)
}

function start () {
  clearTimeout(timer)
  generation++
  refresh(generation)
}

function signOut (message) {
  clearTimeout(timer)
  generation++
  sessionStorage.removeItem(TOKEN_KEY)
  rates.clear()
  filesShown = ''
  // Whatever was shown belongs to the previous token.
  for (const id of ['runs', 'queue', 'file-choices', 'flash-sale-coupons']) $(id).replaceChildren()
  for (const id of ['valid-count', 'generation', 'last-swap', 'swap-ms', 'schedule', 'next-run']) $(id).textContent = '–'
  $('start-result').textContent = ''
  $('dashboard').hidden = true
  $('flash-sale').hidden = true
  $('sign-out').hidden = true
  $('sign-in').hidden = false
  const error = $('sign-in-error')
  error.textContent = message ?? ''
  error.hidden = message === undefined
  $('token').focus()
}

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const input = $('token')
  sessionStorage.setItem(TOKEN_KEY, input.value.trim())
  input.value = ''
  $('sign-in-error').hidden = true
  start()
})

$('sign-out').addEventListener('click', () => { signOut() })

$('start-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const boxes = [...document.querySelectorAll('#file-choices input[type="checkbox"]')]
  const chosen = boxes.filter((box) => box.checked).map((box) => box.value)
  const result = $('start-result')
  if (chosen.length === 0) {
    result.textContent = 'Choose at least one file.'
    return
  }
  const button = $('start-ingest')
  button.disabled = true
  try {
    const body = chosen.length === boxes.length ? {} : { files: chosen }
    const run = await api('/admin/ingest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    result.textContent = `Run ${run.runId} started (${run.jobs.map((job) => job.file).join(', ')}).`
    result.dataset.runId = run.runId
    start()
  } catch (err) {
    if (err instanceof Unauthorized) signOut('The admin token was refused (401). Nothing is shown without a valid token.')
    else result.textContent = `Could not start the run: ${err.message}`
  } finally {
    button.disabled = false
  }
})

if (sessionStorage.getItem(TOKEN_KEY) !== null) start()
