// The playground page: plain browser JavaScript, no build step. Every request goes to the JSON API
// of src/bots/web/server.ts; errors arrive as { error: { code, message } } where message is the
// sentence to show.

const $ = (id) => document.getElementById(id);

async function api(path, init = {}) {
  const res = await fetch(path, init);
  const type = res.headers.get('content-type') || '';
  const body = type.includes('application/json')
    ? await res.json()
    : { error: { message: await res.text() } };
  if (!res.ok) {
    const err = new Error(body.error?.message || `HTTP ${res.status}`);
    err.code = body.error?.code;
    throw err;
  }
  return body;
}

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle('error', isError);
}

// --- info banner -------------------------------------------------------------------------------------

// Sentences the page shows on its own come from the server (render.ts), like every other sentence;
// these stand in until /api/info has answered.
let texts = {
  cancelling: 'Cancelling…',
  connectionLost: 'The server is not answering. Waiting for it to come back…',
  reconnected: 'The server is back; following the job again.',
};

api('/api/info')
  .then((info) => {
    $('random-banner').hidden = !info.randomWeights;
    texts = { ...texts, ...info.texts };
  })
  .catch(() => {});

// --- imagine -----------------------------------------------------------------------------------------

const imagine = {
  jobId: null,
  events: null,
  lastRequest: null,
  // Set between a Cancel click and the stream's final word: progress no longer overwrites it.
  cancelling: false,
  // Set while the server does not answer; the job is picked up again when it is back.
  lost: false,
  retryTimer: null,
};

function imagineRequest(seedOverride) {
  const req = { prompt: $('prompt').value, preset: $('preset').value };
  const steps = $('steps').value.trim();
  if (steps) req.steps = Number(steps);
  const size = $('size').value;
  if (size) req.width = req.height = Number(size);
  const seed = seedOverride ?? $('seed').value.trim();
  if (seed !== '' && seed !== undefined) req.seed = Number(seed);
  // DALL-E writes a fixed-size image from the prompt: steps and size are VQGAN+CLIP's.
  if ($('drawer').value === 'dalle') {
    req.drawer = 'dalle';
    delete req.steps;
    delete req.width;
    delete req.height;
    const candidates = $('candidates').value.trim();
    if (candidates) req.candidates = Number(candidates);
  }
  return req;
}

function setRunning(running) {
  $('imagine-go').disabled = running;
  $('imagine-cancel').disabled = !running;
  $('imagine-reroll').disabled = running || imagine.lastRequest === null;
}

function stopEvents() {
  if (imagine.events) imagine.events.close();
  imagine.events = null;
  clearTimeout(imagine.retryTimer);
  imagine.retryTimer = null;
}

async function startImagine(req) {
  stopEvents();
  const status = $('imagine-status');
  $('imagine-result').hidden = true;
  $('timelapse-image').hidden = true;
  $('imagine-note').hidden = true;
  $('imagine-bar').style.width = '0';
  imagine.cancelling = false;
  setStatus(status, 'Submitting…');
  setRunning(true);
  let submitted;
  try {
    submitted = await api('/api/imagine', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(req),
    });
  } catch (err) {
    setStatus(status, err.message, true);
    setRunning(false);
    return;
  }
  imagine.jobId = submitted.jobId;
  imagine.lastRequest = { ...req, seed: submitted.seed };
  // CLIP reads 77 tokens per part of a prompt: the server says when it will not read all of one.
  $('imagine-note').textContent = submitted.note || '';
  $('imagine-note').hidden = !submitted.note;
  $('seed').placeholder = `random (last: ${submitted.seed})`;
  follow(submitted.eventsUrl);
}

function follow(url) {
  const status = $('imagine-status');
  const img = $('imagine-image');
  const bar = $('imagine-bar');
  $('imagine-progress').hidden = false;
  const es = new EventSource(url);
  imagine.events = es;
  const back = () => {
    // Events again after a loss: the server is back (restarted, or the network returned).
    if (!imagine.lost) return;
    imagine.lost = false;
    $('imagine-cancel').disabled = false;
  };
  es.addEventListener('status', (e) => {
    const s = JSON.parse(e.data);
    const wasLost = imagine.lost;
    back();
    if (!imagine.cancelling) setStatus(status, wasLost ? `${texts.reconnected} ${s.text}` : s.text);
    if (typeof s.step === 'number' && s.steps) bar.style.width = `${(100 * s.step) / s.steps}%`;
    if (s.previewUrl) {
      img.src = s.previewUrl;
      img.hidden = false;
      img.dataset.kind = 'preview';
      img.dataset.step = String(s.step);
    }
  });
  es.addEventListener('done', (e) => {
    back();
    stopEvents();
    const s = JSON.parse(e.data);
    const r = s.result;
    bar.style.width = '100%';
    const totalMs = r.timings.total ?? r.timings.totalMs;
    setStatus(status, typeof totalMs === 'number' ? `Done in ${(totalMs / 1000).toFixed(1)} s.` : 'Done.');
    // A DALL-E result: its caption (candidates, CLIP's score, a cut prompt) says more than steps.
    if (r.drawer === 'dalle') setStatus(status, s.text);
    img.src = r.finalUrl;
    img.hidden = false;
    img.dataset.kind = 'final';
    img.alt = imagine.lastRequest?.prompt ?? '';
    $('result-seed').textContent = String(r.seed);
    $('result-steps').textContent = String(r.steps);
    $('result-loss').textContent = `${r.lossFirst.toFixed(3)} → ${r.lossLast.toFixed(3)}`;
    const dl = $('imagine-download');
    dl.href = r.finalUrl;
    dl.download = `vqclip-${r.seed}.png`;
    $('timelapse-wrap').hidden = !r.timelapseUrl;
    $('imagine-timelapse').dataset.url = r.timelapseUrl || '';
    $('imagine-result').hidden = false;
    setRunning(false);
  });
  es.addEventListener('failed', (e) => {
    back();
    stopEvents();
    const s = JSON.parse(e.data);
    imagine.cancelling = false;
    setStatus(status, s.text, s.code !== 'cancelled');
    setRunning(false);
  });
  es.onerror = () => {
    if (imagine.events !== es) return;
    // The stream broke: the server stopped, restarted, or the network went. Say so at once (the
    // last progress line would otherwise stay up as if all were well), and wait for it.
    imagine.lost = true;
    $('imagine-cancel').disabled = true;
    setStatus(status, texts.connectionLost, true);
    // EventSource retries by itself while CONNECTING; once CLOSED (the server answered with an
    // error while restarting) it never does, so we try again ourselves.
    if (es.readyState === EventSource.CLOSED) {
      clearTimeout(imagine.retryTimer);
      imagine.retryTimer = setTimeout(() => {
        if (imagine.events === es) follow(url);
      }, 2000);
    }
  };
}

$('imagine-form').addEventListener('submit', (e) => {
  e.preventDefault();
  startImagine(imagineRequest());
});

$('imagine-cancel').addEventListener('click', async () => {
  if (!imagine.jobId) return;
  $('imagine-cancel').disabled = true;
  // At once: the worker stops at its next step, and until the stream says Cancelled the running
  // job's progress must not look as if nothing happened.
  imagine.cancelling = true;
  setStatus($('imagine-status'), texts.cancelling);
  try {
    await api(`/api/jobs/${encodeURIComponent(imagine.jobId)}/cancel`, { method: 'POST' });
  } catch (err) {
    imagine.cancelling = false;
    setStatus($('imagine-status'), err.message, true);
  }
});

$('imagine-reroll').addEventListener('click', () => {
  if (!imagine.lastRequest) return;
  // Same prompt and options, new seed.
  const seed = Math.floor(Math.random() * 0xffffffff);
  startImagine({ ...imagine.lastRequest, seed });
});

$('imagine-timelapse').addEventListener('click', (e) => {
  e.preventDefault();
  const el = $('timelapse-image');
  el.src = e.currentTarget.dataset.url;
  el.hidden = false;
});

// --- what is this --------------------------------------------------------------------------------------

$('whatis-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const file = $('whatis-file').files[0];
  const status = $('whatis-status');
  const out = $('whatis-labels-out');
  if (!file) return;
  out.replaceChildren();
  const preview = $('whatis-preview');
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  setStatus(status, 'Looking…');
  const labels = $('whatis-labels').value.trim();
  const query = labels ? `?labels=${encodeURIComponent(labels)}` : '';
  try {
    const result = await api(`/api/whatis${query}`, {
      method: 'POST',
      headers: { 'content-type': file.type || 'application/octet-stream' },
      body: file,
    });
    // The percentages are the core's (render.ts formatPercent), as in the chat replies.
    for (const { label, prob, percent } of result.labels) {
      const li = document.createElement('li');
      li.textContent = `${label} — ${percent}`;
      const bar = document.createElement('div');
      bar.className = 'bar';
      const fill = document.createElement('span');
      fill.style.width = `${Math.max(0.5, prob * 100)}%`;
      bar.append(fill);
      li.append(bar);
      li.dataset.prob = String(prob);
      out.append(li);
    }
    setStatus(status, '');
  } catch (err) {
    setStatus(status, err.message, true);
  }
});

// --- library -------------------------------------------------------------------------------------------

// What the person typed; the server maps it to a channel (`Holiday Photos` -> holiday-photos) and
// says which, or why it cannot.
const channel = () => $('library-channel').value.trim() || 'default';

function thumb(entry, extra) {
  const li = document.createElement('li');
  const img = document.createElement('img');
  img.src = entry.url;
  img.alt = entry.name;
  img.loading = 'lazy';
  li.append(img);
  const caption = document.createElement('div');
  caption.textContent = extra ?? entry.name;
  li.append(caption);
  li.dataset.imageId = entry.imageId;
  li.dataset.name = entry.name;
  return li;
}

async function refreshLibrary() {
  const list = $('library-images');
  const empty = $('library-empty');
  // Another channel's images must never stay on screen under this one's name, even if it fails.
  list.replaceChildren();
  empty.hidden = true;
  try {
    const { channel: id, images, emptyText } = await api(`/api/library/${encodeURIComponent(channel())}`);
    $('library-channel-id').textContent = `Channel: ${id}`;
    empty.textContent = emptyText || '';
    empty.hidden = !emptyText;
    list.replaceChildren(
      ...images.map((entry) => {
        const li = thumb(entry);
        const del = document.createElement('button');
        del.type = 'button';
        del.textContent = '×';
        del.title = 'Delete';
        del.addEventListener('click', async () => {
          try {
            await api(`/api/library/${encodeURIComponent(id)}/images/${encodeURIComponent(entry.imageId)}`, {
              method: 'DELETE',
            });
            li.remove();
            for (const hit of $('library-hits').querySelectorAll(`[data-image-id="${entry.imageId}"]`))
              hit.remove();
            if (list.children.length === 0) refreshLibrary();
          } catch (err) {
            setStatus($('library-status'), err.message, true);
          }
        });
        li.append(del);
        return li;
      }),
    );
  } catch (err) {
    $('library-channel-id').textContent = '';
    setStatus($('library-status'), err.message, true);
  }
}

$('library-channel').addEventListener('change', () => {
  $('library-hits').replaceChildren();
  $('library-score-note').hidden = true;
  setStatus($('library-status'), '');
  showStale(0);
  refreshLibrary();
});

$('library-upload').addEventListener('submit', async (e) => {
  e.preventDefault();
  const files = [...$('library-files').files];
  const status = $('library-status');
  // One bad file must not stop the others: each is tried, and each problem is named.
  const problems = [];
  let added = 0;
  for (const [i, file] of files.entries()) {
    setStatus(status, `Indexing ${i + 1} of ${files.length}…`);
    try {
      await api(
        `/api/library/${encodeURIComponent(channel())}/images?name=${encodeURIComponent(file.name)}`,
        {
          method: 'POST',
          headers: { 'content-type': file.type || 'application/octet-stream' },
          body: file,
        },
      );
      added++;
    } catch (err) {
      problems.push(`${file.name}: ${err.message}`);
    }
  }
  const images = (n) => `${n} ${n === 1 ? 'image' : 'images'}`;
  const summary =
    problems.length === 0
      ? `Added ${images(added)}.`
      : `Added ${added} of ${images(files.length)}. ${problems.join(' ')}`;
  setStatus(status, summary, problems.length > 0);
  $('library-files').value = '';
  await refreshLibrary();
});

// Images embedded by another model (e.g. the random weights before `models pull`) are left out of
// searches; the library still has their files, so the worker can embed them again.
// The sentence comes from the core (render.ts renderStaleNote).
function showStale(count, text) {
  $('library-stale').hidden = count === 0;
  $('library-stale-text').textContent = text ?? '';
}

$('library-reindex').addEventListener('click', async () => {
  const status = $('library-status');
  const button = $('library-reindex');
  button.disabled = true;
  setStatus(status, 'Re-indexing this channel with the current model…');
  try {
    const r = await api(`/api/library/${encodeURIComponent(channel())}/reindex`, { method: 'POST' });
    setStatus(
      status,
      `Re-indexed ${r.reindexed} of ${r.images} ${r.images === 1 ? 'image' : 'images'}` +
        (r.failed > 0 ? `; ${r.failed} failed.` : '.'),
      r.failed > 0,
    );
    if (r.failed === 0) showStale(0);
    await refreshLibrary();
  } catch (err) {
    setStatus(status, err.message, true);
  } finally {
    button.disabled = false;
  }
});

$('library-search').addEventListener('submit', async (e) => {
  e.preventDefault();
  const q = $('library-query').value.trim();
  const status = $('library-status');
  const hits = $('library-hits');
  if (!q) return;
  setStatus(status, 'Searching…');
  try {
    const result = await api(
      `/api/library/${encodeURIComponent(channel())}/search?q=${encodeURIComponent(q)}`,
    );
    hits.replaceChildren(
      ...result.hits.map((h) => {
        const li = thumb(h, `${h.name} · ${h.score.toFixed(3)}`);
        li.title = result.scoreText;
        return li;
      }),
    );
    // Raw cosine scores mean little on their own (and are noise with random weights): say so.
    $('library-score-note').textContent = result.hits.length > 0 ? result.scoreText : '';
    $('library-score-note').hidden = result.hits.length === 0;
    showStale(result.staleImages ?? 0, result.staleText);
    setStatus(status, result.summary);
  } catch (err) {
    setStatus(status, err.message, true);
  }
});

refreshLibrary();
