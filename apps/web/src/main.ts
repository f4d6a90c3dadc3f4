/**
 * The page: plain DOM over the markup in index.html. The model lives in a worker
 * (`WebWorkerOwletEngine`), so typing, scrolling and the Stop button stay responsive while tokens
 * stream. Query parameters: `?backend=webgpu|wasm|cpu|auto` picks the backend, `?autoload=0` skips
 * loading the bundled model at start, `?testHooks=1` exposes `window.__owlet` for the e2e test.
 */
import './styles.css';

import bundled from 'virtual:owlet-bundled-model';

import { EngineErrorCode } from './engine/errors.js';
import type { ChatMessage, EngineProgress, LoadInfo, ModelSource } from './engine/protocol.js';
import { WebWorkerOwletEngine } from './engine/worker-engine.js';
import { ProgressView } from './ui/progress.js';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el as T;
};

const params = new URLSearchParams(location.search);
const DEVICES = ['auto', 'webgpu', 'wasm', 'cpu'] as const;
type Device = (typeof DEVICES)[number];
const asked = params.get('backend');
const initialDevice: Device = (DEVICES as readonly string[]).includes(asked ?? '') ? (asked as Device) : 'auto';

const ui = {
  backend: $<HTMLOutputElement>('backend'),
  modelName: $('model-name'),
  bundledName: $('bundled-name'),
  modelForm: $<HTMLFormElement>('model-form'),
  modelUrl: $<HTMLInputElement>('model-url'),
  modelFolder: $<HTMLInputElement>('model-folder'),
  device: $<HTMLSelectElement>('device'),
  useCache: $<HTMLInputElement>('use-cache'),
  load: $<HTMLButtonElement>('load'),
  unload: $<HTMLButtonElement>('unload'),
  clearCache: $<HTMLButtonElement>('clear-cache'),
  alerts: $('alerts'),
  notes: $('notes'),
  empty: $('empty'),
  conversation: $<HTMLOListElement>('conversation'),
  composer: $<HTMLFormElement>('composer'),
  drop: $('drop'),
  imageInput: $<HTMLInputElement>('image-input'),
  pending: $<HTMLUListElement>('pending'),
  question: $<HTMLTextAreaElement>('question'),
  ask: $<HTMLButtonElement>('ask'),
  stop: $<HTMLButtonElement>('stop'),
  newChat: $<HTMLButtonElement>('new-chat'),
  maxTokens: $<HTMLInputElement>('max-tokens'),
};

const progress = new ProgressView($('progress'), $<HTMLProgressElement>('overall'), $('overall-text'), $('files'));

const engine = new WebWorkerOwletEngine(
  () => new Worker(new URL('./engine/worker.ts', import.meta.url), { type: 'module', name: 'owlet-model' }),
);

type State = 'starting' | 'idle' | 'loading' | 'ready' | 'generating';
let state: State = 'starting';
let loaded: LoadInfo | null = null;
/** The conversation as the model sees it, and its images in order. */
let messages: ChatMessage[] = [];
let images: Blob[] = [];
/** Images waiting for the next question. */
let pendingImages: File[] = [];
const objectUrls: string[] = [];
/** What happened when (ms since page start): for the e2e test's "UI handled while streaming" check. */
const trace: { t: number; event: string; detail?: string }[] = [];
const mark = (event: string, detail?: string) =>
  trace.push({ t: performance.now(), event, ...(detail ? { detail } : {}) });

function setState(s: State): void {
  state = s;
  document.body.dataset.state = s;
  const busy = s === 'loading' || s === 'generating';
  ui.load.disabled = busy;
  ui.unload.disabled = busy || !loaded;
  ui.clearCache.disabled = busy;
  ui.ask.disabled = s !== 'ready';
  ui.stop.disabled = s !== 'generating';
  ui.newChat.disabled = s === 'generating';
  ui.conversation.setAttribute('aria-busy', String(s === 'generating'));
}

function clearAlerts(): void {
  ui.alerts.replaceChildren();
}

function showError(e: unknown, actions: { label: string; run: () => void }[] = []): void {
  const err = e as { code?: string; message?: string; name?: string };
  const p = document.createElement('p');
  p.dataset.testid = 'error';
  p.dataset.code = err?.code ?? 'INTERNAL';
  p.textContent = describeError(err);
  for (const a of actions) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = a.label;
    b.addEventListener('click', () => {
      p.remove();
      a.run();
    });
    p.append(b);
  }
  ui.alerts.append(p);
}

function describeError(err: { code?: string; message?: string }): string {
  const m = err?.message ?? String(err);
  switch (err?.code) {
    case EngineErrorCode.INTEGRITY_MISMATCH:
      return `A model file failed its integrity check, so nothing was loaded: ${m}`;
    case EngineErrorCode.EXCEEDS_DEVICE_LIMITS:
      return m;
    default:
      return m;
  }
}

function note(text: string, testid = 'notice', code?: string): void {
  const p = document.createElement('p');
  p.dataset.testid = testid;
  if (code) p.dataset.code = code;
  p.textContent = text;
  ui.notes.append(p);
}

function showBackend(info: LoadInfo['backend'] | null, text?: string): void {
  ui.backend.value = text ?? info?.name ?? '—';
  ui.backend.textContent = ui.backend.value;
  ui.backend.title = info ? info.reason : '';
  ui.backend.dataset.backend = info?.name ?? '';
}

// ---- loading -------------------------------------------------------------------------------

function bundledSource(): ModelSource {
  return { kind: 'url', url: new URL(bundled.path, document.baseURI).href, manifest: bundled };
}

function chosenSource(): ModelSource | string {
  const kind = (ui.modelForm.elements.namedItem('source') as RadioNodeList).value;
  if (kind === 'url') {
    const u = ui.modelUrl.value.trim();
    if (!u) return 'Type the URL of a model folder (the one that holds config.json).';
    try {
      return { kind: 'url', url: new URL(u, location.href).href };
    } catch {
      return `${u} is not a URL.`;
    }
  }
  if (kind === 'folder') {
    const files = [...(ui.modelFolder.files ?? [])];
    if (files.length === 0) return 'Pick the model folder first.';
    return { kind: 'files', files, paths: files.map((f) => f.webkitRelativePath || f.name) };
  }
  return bundledSource();
}

async function load(source: ModelSource): Promise<void> {
  if (state === 'loading' || state === 'generating') return;
  clearAlerts();
  ui.notes.replaceChildren();
  setState('loading');
  progress.start();
  showBackend(null, 'loading…');
  mark('load');
  try {
    const info = await engine.load(source, {
      device: ui.device.value as Device,
      useBrowserCache: ui.useCache.checked,
      // Older bundled models left in the cache by a previous version of the app.
      prunePrefix: new URL('models/', document.baseURI).href,
      progress_callback: (e: EngineProgress) => progress.update(e),
    });
    loaded = info;
    progress.finish(info);
    resetConversation();
    showBackend(info.backend);
    ui.modelName.textContent = `— ${info.model.id}`;
    if (info.backend.fallback) note(info.backend.fallback, 'notice', 'BACKEND_FALLBACK');
    else if (info.backend.requested === 'auto' && info.backend.name !== 'webgpu')
      note(`Using ${info.backend.name}: ${info.backend.reason}.`, 'notice', 'BACKEND_CHOSEN');
    if (info.cache.refetched.length)
      note(
        `${info.cache.refetched.length} cached file(s) failed the integrity check and were downloaded again: ${info.cache.refetched.join(', ')}.`,
        'notice',
        'REFETCHED',
      );
    for (const w of info.warnings) note(w.message, 'warning', w.code);
    if (info.model.random_weights)
      note(
        `${info.model.id} has random weights: it shows the whole pipeline working offline, but its answers are noise.`,
        'notice',
        'RANDOM_WEIGHTS',
      );
    mark('ready', info.backend.name);
    setState('ready');
    // The conversation needs the room now; the panel stays one click away.
    (document.getElementById('model-panel') as HTMLDetailsElement).open = false;
    ui.question.focus();
  } catch (e) {
    loaded = null;
    progress.fail();
    showBackend(null, 'none');
    mark('load-error', (e as { code?: string }).code);
    setState('idle');
    showError(e, [{ label: 'Try again', run: () => void load(source) }]);
  }
}

// ---- images --------------------------------------------------------------------------------

function addImages(files: Iterable<File>): void {
  let skipped = 0;
  for (const f of files) {
    if (!f.type.startsWith('image/')) {
      skipped++;
      continue;
    }
    pendingImages.push(f);
  }
  if (skipped) note(`${skipped} file(s) skipped: not images.`);
  renderPending();
  mark('images', String(pendingImages.length));
}

function thumb(blob: Blob, alt: string): HTMLImageElement {
  const img = document.createElement('img');
  const url = URL.createObjectURL(blob);
  objectUrls.push(url);
  img.src = url;
  img.alt = alt;
  return img;
}

function renderPending(): void {
  ui.pending.replaceChildren(
    ...pendingImages.map((f, i) => {
      const li = document.createElement('li');
      li.append(thumb(f, f.name || `image ${i + 1}`));
      const rm = document.createElement('button');
      rm.type = 'button';
      rm.textContent = '×';
      rm.setAttribute('aria-label', `Remove ${f.name || `image ${i + 1}`}`);
      rm.addEventListener('click', () => {
        pendingImages.splice(i, 1);
        renderPending();
        mark('remove-image');
      });
      li.append(rm);
      return li;
    }),
  );
}

ui.imageInput.addEventListener('change', () => {
  addImages(ui.imageInput.files ?? []);
  ui.imageInput.value = '';
});
for (const t of ['dragenter', 'dragover'] as const) {
  document.addEventListener(t, (e) => {
    if (!e.dataTransfer?.types.includes('Files')) return;
    e.preventDefault();
    ui.drop.classList.add('over');
  });
}
document.addEventListener('dragleave', (e) => {
  if (e.relatedTarget === null) ui.drop.classList.remove('over');
});
document.addEventListener('drop', (e) => {
  if (!e.dataTransfer?.files.length) return;
  e.preventDefault();
  ui.drop.classList.remove('over');
  addImages(e.dataTransfer.files);
});
document.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
  if (files.length === 0) return;
  e.preventDefault();
  addImages(files);
});

// ---- conversation --------------------------------------------------------------------------

function resetConversation(): void {
  messages = [];
  images = [];
  ui.conversation.replaceChildren();
  ui.empty.hidden = false;
  for (const u of objectUrls.splice(0)) URL.revokeObjectURL(u);
  renderPending();
}

function addUserMessage(text: string, imgs: File[]): HTMLLIElement {
  const li = document.createElement('li');
  li.className = 'msg user';
  if (imgs.length) {
    const box = document.createElement('div');
    box.className = 'images';
    box.append(...imgs.map((f, i) => thumb(f, f.name || `image ${i + 1}`)));
    li.append(box);
  }
  const p = document.createElement('p');
  p.textContent = text;
  li.append(p);
  ui.conversation.append(li);
  ui.empty.hidden = true;
  return li;
}

function addAnswer(): { li: HTMLLIElement; answer: HTMLParagraphElement; stats: HTMLParagraphElement } {
  const li = document.createElement('li');
  li.className = 'msg assistant';
  const answer = document.createElement('p');
  answer.className = 'answer';
  answer.dataset.testid = 'answer';
  answer.setAttribute('aria-busy', 'true');
  const stats = document.createElement('p');
  stats.className = 'stats';
  stats.dataset.testid = 'stats';
  stats.textContent = 'reading the image…';
  li.append(answer, stats);
  ui.conversation.append(li);
  li.scrollIntoView({ block: 'nearest' });
  return { li, answer, stats };
}

async function ask(): Promise<void> {
  if (state !== 'ready') return;
  const text = ui.question.value.trim();
  if (!text) {
    ui.question.focus();
    return;
  }
  clearAlerts();
  const turnImages = pendingImages;
  pendingImages = [];
  renderPending();
  const userMsg: ChatMessage = {
    role: 'user',
    content: [...turnImages.map(() => ({ type: 'image' as const })), { type: 'text' as const, text }],
  };
  messages.push(userMsg);
  images.push(...turnImages);
  const userLi = addUserMessage(text, turnImages);
  const { li, answer, stats } = addAnswer();
  ui.question.value = '';
  setState('generating');
  const max = Number(ui.maxTokens.value);
  let streamed = '';
  mark('ask');
  try {
    const r = await engine.chat(
      {
        messages,
        images,
        ...(Number.isSafeInteger(max) && max > 0 ? { max_new_tokens: max } : {}),
      },
      {
        onStart: () => mark('start'),
        onUpdate: (u) => {
          streamed += u.output;
          answer.textContent = streamed;
          stats.textContent = `${u.numTokens} tokens · ${u.tps.toFixed(1)} tokens/s`;
          mark('update', String(u.numTokens));
        },
      },
    );
    answer.textContent = r.output;
    if (r.output === '' && r.finish_reason === 'abort') {
      // Stopped before a word: the model never answered this turn; leave it out of the conversation.
      messages.pop();
      images.splice(images.length - turnImages.length, turnImages.length);
    } else {
      messages.push({ role: 'assistant', content: r.output });
    }
    const ttft = r.usage.time_to_first_token_s;
    stats.textContent =
      r.numTokens > 0
        ? `first token ${ttft.toFixed(2)} s · ${r.tps.toFixed(1)} tokens/s · ${r.numTokens} tokens` +
          (r.finish_reason === 'abort' ? ' · stopped' : '')
        : 'stopped before the first token';
    if (!r.output) answer.textContent = '(stopped)';
    li.dataset.tokens = String(r.numTokens);
    li.dataset.finish = r.finish_reason;
    mark('complete', r.finish_reason);
    setState('ready');
  } catch (e) {
    // The turn did not happen: take it out of the conversation the model sees.
    messages.pop();
    images.splice(images.length - turnImages.length, turnImages.length);
    li.classList.add('failed');
    userLi.classList.add('failed');
    answer.textContent = streamed || '(no answer)';
    stats.textContent = 'failed';
    const code = (e as { code?: string }).code;
    mark('error', code);
    if (code === EngineErrorCode.DEVICE_LOST || code === EngineErrorCode.WORKER_CRASHED) {
      loaded = null;
      showBackend(null, 'none');
      setState('idle');
      showError(e, [{ label: 'Load again', run: () => void load(lastSource) }]);
    } else {
      setState('ready');
      showError(e);
    }
  } finally {
    answer.setAttribute('aria-busy', 'false');
  }
}

let lastSource: ModelSource = bundledSource();

ui.modelForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const s = chosenSource();
  if (typeof s === 'string') {
    clearAlerts();
    showError({ code: 'INVALID_MODEL_SOURCE', message: s });
    return;
  }
  lastSource = s;
  void load(s);
});
ui.modelFolder.addEventListener('change', () => {
  (ui.modelForm.querySelector('input[value="folder"]') as HTMLInputElement).checked = true;
});
ui.modelUrl.addEventListener('input', () => {
  (ui.modelForm.querySelector('input[value="url"]') as HTMLInputElement).checked = true;
});
ui.unload.addEventListener('click', async () => {
  await engine.unload();
  loaded = null;
  resetConversation();
  progress.hide();
  showBackend(null, 'none');
  ui.modelName.textContent = '';
  mark('unloaded');
  setState('idle');
});
ui.clearCache.addEventListener('click', async () => {
  ui.clearCache.disabled = true;
  try {
    await engine.clearCache();
    note('The cache is cleared: the next load downloads the model again.', 'notice', 'CACHE_CLEARED');
    mark('cache-cleared');
  } catch (e) {
    showError(e);
  } finally {
    ui.clearCache.disabled = state === 'loading' || state === 'generating';
  }
});
ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  void ask();
});
ui.question.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    void ask();
  }
});
ui.question.addEventListener('input', () => mark('input', String(ui.question.value.length)));
ui.stop.addEventListener('click', () => {
  engine.interruptGenerate();
  mark('stop');
});
ui.newChat.addEventListener('click', async () => {
  resetConversation();
  clearAlerts();
  if (loaded) await engine.resetChat();
  mark('new-chat');
  ui.question.focus();
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && state === 'generating') {
    engine.interruptGenerate();
    mark('stop');
  }
});
engine.onError = (e) => {
  // A loss while idle (or the worker crashing): the model is gone, say so and offer a reload.
  loaded = null;
  showBackend(null, 'none');
  if (state !== 'loading') setState('idle');
  mark('error', e.code);
  showError(e, [{ label: 'Load again', run: () => void load(lastSource) }]);
};

// ---- start ---------------------------------------------------------------------------------

ui.bundledName.textContent = bundled.id;
ui.device.value = initialDevice;
ui.maxTokens.placeholder = 'model default';
if (params.get('max_new_tokens')) ui.maxTokens.value = params.get('max_new_tokens') ?? '';
setState('idle');

if (params.get('testHooks') === '1') {
  (globalThis as Record<string, unknown>).__owlet = {
    engine,
    trace,
    bundled,
    state: () => state,
    loaded: () => loaded,
    loseDevice: (when?: 'now' | 'during-next-load') => engine.loseDeviceForTest(when),
    memory: () => engine.memory(),
  };
}

void (async () => {
  const gpu = await engine.checkWebGPU();
  mark('check', gpu.available ? 'webgpu' : 'no-webgpu');
  if (!gpu.available) note(`WebGPU is not available: ${gpu.reason}.`, 'notice', EngineErrorCode.WEBGPU_UNAVAILABLE);
  if (params.get('autoload') !== '0') await load(bundledSource());
})();
