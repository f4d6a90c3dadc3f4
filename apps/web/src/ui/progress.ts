/**
 * The load progress: one bar per file and an overall one. Getting the files (download or cache,
 * each hashed) is the first half of the overall bar; reading the weights onto the device the second.
 */
import type { EngineProgress, LoadInfo } from '../engine/protocol.js';

interface Row {
  li: HTMLLIElement;
  bar: HTMLProgressElement;
  pct: HTMLSpanElement;
  state: HTMLSpanElement;
  fetched: number;
  size: number;
  loaded: number;
}

const WEIGHTS = /\.(safetensors|bin)$/;

export class ProgressView {
  private rows = new Map<string, Row>();
  private phase: 'fetch' | 'load' = 'fetch';

  constructor(
    private readonly root: HTMLElement,
    private readonly overall: HTMLProgressElement,
    private readonly overallText: HTMLElement,
    private readonly list: HTMLElement,
  ) {}

  start(): void {
    this.rows.clear();
    this.list.replaceChildren();
    this.phase = 'fetch';
    this.root.hidden = false;
    this.overall.value = 0;
    this.overall.removeAttribute('aria-valuetext');
    this.overallText.textContent = 'starting…';
  }

  hide(): void {
    this.root.hidden = true;
  }

  private row(file: string): Row {
    let r = this.rows.get(file);
    if (r) return r;
    const li = document.createElement('li');
    li.dataset.file = file;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = file;
    name.title = file;
    const bar = document.createElement('progress');
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute('aria-label', file);
    const pct = document.createElement('span');
    const state = document.createElement('span');
    state.className = 'muted';
    pct.append(state);
    li.append(name, bar, pct);
    this.list.append(li);
    r = { li, bar, pct, state, fetched: 0, size: 0, loaded: 0 };
    this.rows.set(file, r);
    return r;
  }

  update(e: EngineProgress): void {
    if (e.status === 'loading') {
      this.overallText.textContent = e.data;
      if (e.phase === 'load') this.phase = 'load';
      return;
    }
    if (e.phase === 'fetch') {
      if (e.status === 'progress_total' || e.status === 'integrity' || e.status === 'cache_warning') {
        if (e.status === 'integrity')
          this.row(e.file).state.textContent = e.action === 'retry' ? 'retrying' : 'refetch';
      } else {
        const r = this.row(e.file);
        if (e.status === 'progress') {
          r.fetched = e.loaded;
          r.size = e.total;
          this.set(r, e.total > 0 ? e.loaded / e.total : 0, e.total > 0 && e.loaded < e.total ? 'fetching' : '');
        } else if (e.status === 'done') {
          r.fetched = r.size = Math.max(r.size, r.fetched);
          this.set(r, 1, e.source === 'cache' ? 'cached' : e.source === 'local' ? 'local' : 'fetched');
        } else if (e.status === 'download') {
          r.state.textContent = 'fetching';
        }
      }
    } else if (e.status === 'progress') {
      const r = this.row(e.file);
      r.loaded = e.total > 0 ? e.loaded / e.total : 1;
      this.set(r, r.loaded, 'loaded');
    } else if (e.status === 'done') {
      const r = this.row(e.file);
      r.loaded = 1;
      this.set(r, 1, 'loaded');
    }
    this.refresh();
  }

  private set(r: Row, fraction: number, state: string): void {
    r.bar.value = Math.round(fraction * 1000) / 10;
    r.state.textContent = state;
    r.bar.setAttribute('aria-valuetext', `${Math.round(fraction * 100)}%${state ? ` ${state}` : ''}`);
  }

  private refresh(): void {
    let size = 0;
    let fetched = 0;
    let wsize = 0;
    let wloaded = 0;
    for (const [file, r] of this.rows) {
      size += r.size;
      fetched += Math.min(r.fetched, r.size);
      if (WEIGHTS.test(file)) {
        wsize += r.size;
        wloaded += r.loaded * r.size;
      }
    }
    const f = size > 0 ? fetched / size : 0;
    const l = wsize > 0 ? wloaded / wsize : 0;
    const v = this.phase === 'fetch' ? 50 * f : 50 + 50 * l;
    this.overall.value = Math.round(v * 10) / 10;
    const label =
      this.phase === 'fetch'
        ? `getting files ${Math.round(100 * f)}% (${(fetched / 2 ** 20).toFixed(1)} of ${(size / 2 ** 20).toFixed(1)} MiB)`
        : `loading onto the device ${Math.round(100 * l)}%`;
    this.overall.setAttribute('aria-valuetext', label);
    this.overallText.textContent = label;
  }

  finish(info: LoadInfo): void {
    this.overall.value = 100;
    const src = info.cache.fromCache.length
      ? `${info.cache.fromCache.length} of ${info.model.files} files from the cache`
      : info.cache.fromNetwork.length
        ? `${info.cache.fromNetwork.length} files downloaded`
        : `${info.model.files} local files`;
    this.overallText.textContent = `ready in ${info.load_s.toFixed(1)} s · ${src}${info.model.verified ? ' · sha256 verified' : ''}`;
    this.overall.setAttribute('aria-valuetext', this.overallText.textContent);
  }

  fail(): void {
    this.overallText.textContent = 'failed';
  }
}
