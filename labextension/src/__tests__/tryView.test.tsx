import * as React from 'react';
import { act } from 'react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { TryView } from '../tryView';
import { deployment, FakeDeploymentsAPI } from './fakeDeployments';
import { IRendered, render } from './render';

let api: FakeDeploymentsAPI;
let view: IRendered | null = null;

async function pass(ms: number): Promise<void> {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

async function sendImage(host: HTMLElement, file: File): Promise<void> {
  const input = host.querySelector<HTMLInputElement>('input[type="file"]')!;
  Object.defineProperty(input, 'files', { value: [file], configurable: true });
  await act(async () => {
    input.dispatchEvent(new Event('change', { bubbles: true }));
  });
  await pass(0);
}

/** Move a range input the way the browser does. */
async function slide(input: HTMLInputElement, value: number): Promise<void> {
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value')!.set!;
  await act(async () => {
    setter.call(input, String(value));
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });
}

const REEF = new File([new Uint8Array([1, 2, 3])], 'reef.jpg', { type: 'image/jpeg' });

function fish(confidence: number, x: number) {
  return { class_id: 0, label: 'fish', confidence, box: [x, 20, x + 50, 60] as [number, number, number, number] };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  api = new FakeDeploymentsAPI();
  api.json = {
    status: 'OK',
    predictions: {
      file: 'reef.jpg',
      width: 640,
      height: 480,
      time_ms: 12,
      conf: 0.25,
      detections: [fish(0.9, 10), fish(0.6, 100), fish(0.3, 200)]
    }
  };
  Element.prototype.scrollIntoView = vi.fn();
  URL.createObjectURL = vi.fn(() => 'blob:annotated');
  URL.revokeObjectURL = vi.fn();
});

afterEach(() => {
  view?.unmount();
  view = null;
  vi.useRealTimers();
});

describe('TryView confidence', () => {
  it("starts at the module's threshold, hides the boxes below the one chosen, then asks the module with it", async () => {
    view = await render(<TryView deployment={deployment()} api={api} />);
    const host = view.host;
    await sendImage(host, REEF);
    const slider = host.querySelector<HTMLInputElement>('input[aria-label="Confidence threshold"]')!;
    expect(slider.value).toBe('0.25');
    expect(host.querySelector('.jp-ReefLab-confidence')?.textContent).toContain('Confidence at least 25 %');
    const findings = () => host.querySelector('.jp-ReefLab-findings strong')?.textContent;
    expect(findings()).toBe('3 objects found: 3 fish.');

    await slide(slider, 0.5);
    // at once, from the answer already there
    expect(findings()).toBe('2 objects found: 2 fish.');
    expect(host.querySelectorAll('table[aria-label="Objects found"] tbody tr')).toHaveLength(2);
    expect(api.predictJSON).toHaveBeenCalledTimes(1);

    // once the slider rests: the list and the drawing again, at that threshold; what was shown stays meanwhile
    await pass(300);
    const target = expect.objectContaining({ id: '1a2b3c4d' });
    expect(api.predictJSON).toHaveBeenLastCalledWith(target, REEF, { conf: 0.5 }, expect.anything());
    expect(api.predictImage).toHaveBeenLastCalledWith(target, REEF, { conf: 0.5 }, expect.anything());
    expect(host.querySelector('input[aria-label="Confidence threshold"]')).toBe(slider);
  });

  it('offers no slider for a classifier', async () => {
    api.json = {
      status: 'OK',
      predictions: { file: 'p.png', width: 8, height: 8, time_ms: 1, classes: [] }
    };
    view = await render(<TryView deployment={deployment()} api={api} />);
    await sendImage(view.host, REEF);
    expect(view.host.querySelector('.jp-ReefLab-findings')).not.toBeNull();
    expect(view.host.querySelector('input[type="range"]')).toBeNull();
  });
});
