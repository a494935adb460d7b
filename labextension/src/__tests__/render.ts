/** Rendering React views into jsdom for tests, and driving them as a user would. */
import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';

export interface IRendered {
  host: HTMLElement;
  unmount: () => void;
}

export async function render(element: React.ReactElement): Promise<IRendered> {
  const host = document.createElement('div');
  document.body.appendChild(host);
  const root: Root = createRoot(host);
  await act(async () => root.render(element));
  return {
    host,
    unmount: () => {
      act(() => root.unmount());
      host.remove();
    }
  };
}

/** Let pending promises (fake API answers) settle and React re-render. */
export async function settle(): Promise<void> {
  await act(async () => {
    await new Promise(resolve => setTimeout(resolve, 0));
  });
}

/** Type into a React-controlled input: set the value the way the browser does, then fire `input`. */
export async function typeInto(input: HTMLInputElement, value: string): Promise<void> {
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value')!.set!;
  await act(async () => {
    setter.call(input, value);
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });
}

export async function click(element: Element | null | undefined): Promise<void> {
  if (!element) {
    throw new Error('nothing to click');
  }
  await act(async () => {
    (element as HTMLElement).click();
  });
}

/** The button whose text is exactly `text`. */
export function button(host: ParentNode, text: string | RegExp): HTMLButtonElement | undefined {
  return [...host.querySelectorAll('button')].find(b =>
    typeof text === 'string' ? b.textContent?.trim() === text : text.test(b.textContent ?? '')
  );
}

/** Choose an option of a React-controlled select. */
export async function select(element: HTMLSelectElement, value: string): Promise<void> {
  await act(async () => {
    element.value = value;
    element.dispatchEvent(new Event('change', { bubbles: true }));
  });
}

/** Leave a field, as tabbing away does (React's onBlur listens to focusout). */
export async function leave(element: HTMLElement): Promise<void> {
  await act(async () => {
    element.dispatchEvent(new FocusEvent('focusout', { bubbles: true }));
  });
}

/** The input, select or textarea labelled `text` (by its <label> or aria-label). */
export function field<T extends HTMLElement = HTMLInputElement>(host: ParentNode, text: string): T {
  const labelled = host.querySelector<T>(`[aria-label="${text}"]`);
  if (labelled) {
    return labelled;
  }
  const label = [...host.querySelectorAll('label')].find(l => l.querySelector('span')?.textContent === text);
  const control = label?.querySelector<T>('input, select, textarea');
  if (!control) {
    throw new Error(`no field labelled ${text}`);
  }
  return control;
}
