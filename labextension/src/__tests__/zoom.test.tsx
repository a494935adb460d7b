import * as React from 'react';
import { act } from 'react';
import { afterEach, describe, expect, it } from 'vitest';

import { nextZoom, Zoomable } from '../zoom';
import { button, click, IRendered, render } from './render';

let view: IRendered | null = null;

afterEach(() => {
  view?.unmount();
  view = null;
});

describe('Zoomable', () => {
  it('steps between fit and 8×, never beyond', () => {
    expect(nextZoom(1, 1)).toBe(1.5);
    expect(nextZoom(1.5, -1)).toBe(1);
    expect(nextZoom(1, -1)).toBe(1);
    expect(nextZoom(8, 1)).toBe(8);
    expect(nextZoom(2.5, 1)).toBe(3);
  });

  it('zooms the picture in and out with its buttons and the wheel, and back to fit', async () => {
    view = await render(
      <Zoomable label="reef.jpg">
        <img src="blob:x" alt="reef" />
      </Zoomable>
    );
    const host = view.host;
    const content = () => host.querySelector<HTMLElement>('.jp-ReefLab-zoomContent')!;
    expect(content().style.width).toBe('100%');
    expect(host.querySelector<HTMLButtonElement>('[aria-label="Zoom out"]')!.disabled).toBe(true);
    await click(host.querySelector('[aria-label="Zoom in"]'));
    await click(host.querySelector('[aria-label="Zoom in"]'));
    expect(content().style.width).toBe('200%');
    expect(host.querySelector('.jp-ReefLab-zoomLevel')?.textContent).toBe('2×');
    const wheel = new WheelEvent('wheel', { deltaY: 100, ctrlKey: true, cancelable: true });
    await act(async () => {
      host.querySelector('.jp-ReefLab-zoomView')!.dispatchEvent(wheel);
    });
    expect(wheel.defaultPrevented).toBe(true);
    expect(content().style.width).toBe('150%');
    await click(button(host, 'Fit'));
    expect(content().style.width).toBe('100%');
  });
});
