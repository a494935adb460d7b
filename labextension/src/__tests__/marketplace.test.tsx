import * as React from 'react';
import { act } from 'react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ReefLabError } from '../api';
import { Marketplace } from '../marketplace';
import { CATALOGUE, FakeAPI } from './fakeApi';
import { button, click, IRendered, render, typeInto } from './render';

let api: FakeAPI;
let view: IRendered;

const titles = () => [...view.host.querySelectorAll('.jp-ReefLab-cardTitle')].map(e => e.textContent);
const status = () => view.host.querySelector('.jp-ReefLab-status')?.textContent;
const searchBox = () => view.host.querySelector<HTMLInputElement>('input[type="search"]')!;
const chip = (facet: string, value: string) =>
  view.host.querySelector<HTMLButtonElement>(`.jp-ReefLab-facet[data-facet="${facet}"] [data-value="${value}"]`);

async function wait(ms: number): Promise<void> {
  await act(async () => {
    vi.advanceTimersByTime(ms);
  });
}

beforeEach(async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  api = new FakeAPI();
  view = await render(<Marketplace api={api} debounceMs={300} perPage={2} />);
  await wait(0);
});

afterEach(() => {
  view.unmount();
  vi.useRealTimers();
});

describe('Marketplace', () => {
  it('shows the first page of modules with their badges at once', () => {
    expect(api.searches).toHaveLength(1);
    expect(api.searches[0].qs).toBe('per_page=2');
    expect(titles()).toEqual(['Image classifier', 'YOLO object detector']);
    expect(status()).toBe('3 modules');
    const first = view.host.querySelector('[data-module-id="image-classifier"]')!;
    expect([...first.querySelectorAll('.jp-ReefLab-badge')].map(b => b.textContent)).toEqual([
      'Computer Vision',
      'Classification',
      'Image',
      'built-in'
    ]);
  });

  it('searches once typing pauses, not on every keystroke', async () => {
    for (const text of ['w', 'wh', 'wha', 'whal']) {
      await typeInto(searchBox(), text);
      await wait(100);
    }
    expect(api.searches).toHaveLength(1);
    expect(status()).toContain('Searching');
    await wait(300);
    expect(api.searches).toHaveLength(2);
    expect(api.searches[1].query.q).toBe('whal');
    expect(titles()).toEqual(['Whale call detector']);
    expect(status()).toBe('1 module');
    expect(view.host.querySelector('[data-module-id="whale-calls"] .jp-ReefLab-badge-invalid')?.textContent).toBe(
      'invalid metadata'
    );
  });

  it('never lets an older answer replace a newer one', async () => {
    api.hold = true;
    await typeInto(searchBox(), 'image');
    await wait(300);
    await typeInto(searchBox(), 'yolo');
    await wait(300);
    const [older, newer] = api.held;
    expect(older.signal?.aborted).toBe(true);
    await act(async () => newer.release());
    await act(async () => older.release());
    await wait(0);
    expect(titles()).toEqual(['YOLO object detector']);
  });

  it('filters by a facet value, keeps the choice visible, and removes it again', async () => {
    await click(button(view.host, 'Filters'));
    await click(chip('tasks', 'Classification'));
    await wait(0);
    expect(api.searches.at(-1)!.qs).toBe('tasks=Classification&per_page=2');
    expect(titles()).toEqual(['Image classifier', 'Whale call detector']);
    expect(chip('tasks', 'Classification')!.getAttribute('aria-pressed')).toBe('true');

    // a second value of the same facet widens, a value of another facet narrows
    await click(chip('tasks', 'Other'));
    await wait(0);
    expect(api.searches.at(-1)!.query.filters).toEqual({ tasks: ['Classification', 'Other'] });
    expect(status()).toBe('3 modules');
    await click(chip('data-type', 'Audio'));
    await wait(0);
    expect(api.searches.at(-1)!.qs).toBe('tasks=Classification&tasks=Other&data-type=Audio&per_page=2');
    expect(titles()).toEqual(['Whale call detector']);

    // folded, the filters in use stay listed, with a count on the toggle
    await click(button(view.host, /Hide filters/));
    const selected = [...view.host.querySelectorAll('.jp-ReefLab-selected .jp-ReefLab-chip')];
    expect(selected.map(c => c.getAttribute('aria-label'))).toEqual([
      'Remove the filter Task: Classification',
      'Remove the filter Task: Other',
      'Remove the filter Data type: Audio'
    ]);
    expect(button(view.host, /Filters/)!.querySelector('.jp-ReefLab-count')?.textContent).toBe('3');
    await click(selected[2]);
    await wait(0);
    expect(api.searches.at(-1)!.query.filters).toEqual({ tasks: ['Classification', 'Other'] });
    await click(button(view.host, 'Clear all'));
    await wait(0);
    expect(api.searches.at(-1)!.qs).toBe('per_page=2');
    expect(view.host.querySelector('.jp-ReefLab-selected')).toBeNull();
  });

  it('loads the next page on "Show more" and appends it', async () => {
    const more = button(view.host, /Show more/)!;
    expect(more.textContent).toBe('Show more (2 of 3 shown)');
    await click(more);
    await wait(0);
    expect(api.searches.at(-1)!.query.page).toBe(2);
    expect(titles()).toEqual(CATALOGUE.map(c => c.title));
    expect(button(view.host, /Show more/)).toBeUndefined();
  });

  it('explains a failure in words and searches again on request', async () => {
    api.failNext = new ReefLabError("'per_page' must be a whole number, not 'x'", 400);
    await typeInto(searchBox(), 'yolo');
    await wait(300);
    expect(view.host.querySelector('[role="alert"]')?.textContent).toContain(
      "'per_page' must be a whole number, not 'x'"
    );
    await click(button(view.host, 'Try again'));
    await wait(0);
    expect(view.host.querySelector('[role="alert"]')).toBeNull();
    expect(titles()).toEqual(['YOLO object detector']);
  });

  it('opens a module and comes back to the same results', async () => {
    await click(view.host.querySelector('[data-module-id="yolo-detector"]'));
    await wait(0);
    expect(api.module).toHaveBeenCalledWith('yolo-detector', expect.any(AbortSignal));
    expect(view.host.querySelector('.jp-ReefLab-detail')).not.toBeNull();
    await click(button(view.host, 'Back to results'));
    expect(view.host.querySelector('.jp-ReefLab-detail')).toBeNull();
    expect(titles()).toEqual(['Image classifier', 'YOLO object detector']);
    expect(document.activeElement?.getAttribute('data-module-id')).toBe('yolo-detector');
    expect(api.searches).toHaveLength(1);
  });

  it('opens a module in a tab of its own when the lab gives it one, keeping the results', async () => {
    view.unmount();
    const onOpen = vi.fn();
    view = await render(<Marketplace api={api} debounceMs={300} perPage={2} onOpen={onOpen} />);
    await wait(0);
    await click(view.host.querySelector('[data-module-id="yolo-detector"]'));
    await wait(0);
    expect(onOpen).toHaveBeenCalledWith('yolo-detector');
    expect(view.host.querySelector('.jp-ReefLab-detail')).toBeNull();
    expect(titles()).toEqual(['Image classifier', 'YOLO object detector']);
  });

  it('reloads the catalogue and searches again', async () => {
    await click(view.host.querySelector('[aria-label="Reload the catalogue"]'));
    await wait(0);
    await wait(0);
    expect(api.refreshCatalog).toHaveBeenCalledTimes(1);
    expect(view.host.textContent).toContain('Catalogue reloaded: 3 modules.');
    expect(api.searches).toHaveLength(2);
  });
});
