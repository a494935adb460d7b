import * as React from 'react';
import { act } from 'react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ReefLabError } from '../api';
import { DeploymentsView } from '../deployments';
import type { IOpener } from '../mainArea';
import { useDeployments } from '../useDeployments';
import { deployment, FakeDeploymentsAPI } from './fakeDeployments';
import { button, click, IRendered, render } from './render';

const NOW = Date.parse('2026-11-23T10:05:00Z');
let api: FakeDeploymentsAPI;
let view: IRendered | null = null;
let setVisible: (visible: boolean) => void = () => undefined;

/** The section as the panel shows it: the live list, and the rows. */
function Live(props: { api: FakeDeploymentsAPI; focusId?: string; opener?: IOpener }): JSX.Element {
  const [visible, set] = React.useState(true);
  setVisible = set;
  const deployments = useDeployments(props.api, visible);
  return <DeploymentsView api={props.api} deployments={deployments} focusId={props.focusId} opener={props.opener} />;
}

/** Let fake time pass, with every promise it releases settled and React re-rendered. */
async function pass(ms: number): Promise<void> {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

async function show(focusId?: string, opener?: IOpener): Promise<HTMLElement> {
  view = await render(<Live api={api} focusId={focusId} opener={opener} />);
  await pass(0);
  return view.host;
}

function row(host: HTMLElement, id: string): HTMLElement {
  const found = host.querySelector<HTMLElement>(`[data-deployment-id="${id}"]`);
  if (!found) {
    throw new Error(`no row for ${id}`);
  }
  return found;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  vi.setSystemTime(NOW);
  api = new FakeDeploymentsAPI();
  Element.prototype.scrollIntoView = vi.fn();
  URL.createObjectURL = vi.fn(() => 'blob:annotated');
  URL.revokeObjectURL = vi.fn();
});

afterEach(() => {
  view?.unmount();
  view = null;
  vi.useRealTimers();
});

describe('polling', () => {
  it('asks every 2 s while a deployment starts, every 15 s once it is ready', async () => {
    api.list = [deployment({ state: 'starting' })];
    await show();
    expect(api.deployments).toHaveBeenCalledTimes(1);
    await pass(1999);
    expect(api.deployments).toHaveBeenCalledTimes(1);
    await pass(1);
    expect(api.deployments).toHaveBeenCalledTimes(2);
    api.list[0].state = 'ready';
    await pass(2000);
    expect(api.deployments).toHaveBeenCalledTimes(3);
    await pass(14999);
    expect(api.deployments).toHaveBeenCalledTimes(3);
    await pass(1);
    expect(api.deployments).toHaveBeenCalledTimes(4);
  });

  it('stops while the panel is hidden and asks at once when it is shown again', async () => {
    api.list = [deployment({ state: 'starting' })];
    await show();
    await act(async () => setVisible(false));
    await pass(60000);
    expect(api.deployments).toHaveBeenCalledTimes(1);
    await act(async () => setVisible(true));
    await pass(0);
    expect(api.deployments).toHaveBeenCalledTimes(2);
  });

  it('says when the list cannot be had, and tries again', async () => {
    api.deployments.mockRejectedValueOnce(new ReefLabError('Your Jupyter server is busy or restarting.', 503));
    const host = await show();
    expect(host.querySelector('[role="alert"]')?.textContent).toContain('Your Jupyter server is busy or restarting.');
    await click(button(host, 'Try again'));
    await pass(0);
    expect(host.querySelector('[role="alert"]')).toBeNull();
    expect(host.textContent).toContain('Nothing runs yet.');
  });
});

describe('DeploymentsView', () => {
  it('puts a drift alert on the row of a deployment whose inputs drifted; the badge opens its Metrics', async () => {
    api.list = [
      deployment({ id: 'aaaaaaaa', title: 'Drifted', drift: { enabled: true, alert: true } }),
      deployment({ id: 'bbbbbbbb', title: 'Watched', drift: { enabled: true, alert: false } }),
      deployment({ id: 'cccccccc', title: 'Unwatched', drift: null })
    ];
    const host = await show();
    const badge = button(row(host, 'aaaaaaaa'), 'Drift alert');
    expect(badge?.title).toContain('differ from the reference');
    expect(button(row(host, 'bbbbbbbb'), 'Drift alert')).toBeUndefined();
    expect(button(row(host, 'cccccccc'), 'Drift alert')).toBeUndefined();
    expect(button(row(host, 'aaaaaaaa'), 'Metrics')?.getAttribute('aria-expanded')).toBe('false');
    await click(badge!);
    expect(button(row(host, 'aaaaaaaa'), 'Metrics')?.getAttribute('aria-expanded')).toBe('true');
    // cleared at the next poll: the badge goes
    api.list[0].drift = { enabled: true, alert: false };
    await pass(15000);
    expect(button(row(host, 'aaaaaaaa'), 'Drift alert')).toBeUndefined();
  });

  it('shows state, module, hardware, age, the address, variable names and why one failed', async () => {
    api.list = [
      deployment({ id: 'aaaaaaaa', title: 'Old', created: '2026-11-23T09:00:00Z', env: ['SITE', 'TOKEN'] }),
      deployment({
        id: 'bbbbbbbb',
        title: 'Broken',
        created: '2026-11-23T10:04:00Z',
        state: 'failed',
        reason: 'Traceback (most recent call last):\n  File "x.py"\nMemoryError'
      })
    ];
    const host = await show();
    const rows = [...host.querySelectorAll('[data-deployment-id]')].map(r => r.getAttribute('aria-label'));
    expect(rows).toEqual(['Broken', 'Old']);
    const old = row(host, 'aaaaaaaa');
    expect(old.querySelector('.jp-ReefLab-state')?.textContent).toBe('ready');
    expect(old.textContent).toContain('fish-detector · 1 CPU · 2 GB on cpu-small · started 1 h ago');
    expect(old.querySelector('.jp-ReefLab-address code')?.textContent).toMatch(/\/reeflab\/deployments\/aaaaaaaa\/$/);
    expect(old.textContent).toContain('Environment: SITE, TOKEN (values hidden)');
    const broken = row(host, 'bbbbbbbb');
    expect(broken.querySelector('.jp-ReefLab-state')?.textContent).toBe('failed');
    expect(broken.querySelector('pre.jp-ReefLab-reason')?.textContent).toBe(
      'Traceback (most recent call last):\n  File "x.py"\nMemoryError'
    );
    expect(broken.querySelector('.jp-ReefLab-address')).toBeNull();
    expect(button(broken, 'Try')!.disabled).toBe(true);
  });

  it("counts a try's time down every second", async () => {
    api.list = [deployment({ kind: 'try', expires: '2026-11-23T10:10:00Z' })];
    const host = await show();
    const clock = () => host.querySelector('.jp-ReefLab-countdown')?.textContent;
    expect(clock()).toBe('5:00 left');
    await pass(1000);
    expect(clock()).toBe('4:59 left');
    await pass(299_000);
    expect(clock()).toBe('ending…');
  });

  it('deletes only after asking', async () => {
    api.list = [deployment()];
    const host = await show();
    await click(button(host, 'Delete'));
    const confirm = host.querySelector('[role="alertdialog"]')!;
    expect(confirm.getAttribute('aria-label')).toBe('Delete Fish detector?');
    await click(button(confirm, 'Keep it'));
    expect(api.deleteDeployment).not.toHaveBeenCalled();
    expect(host.querySelector('[role="alertdialog"]')).toBeNull();
    await click(button(host, 'Delete'));
    await click(button(host, 'Delete it'));
    await pass(0);
    expect(api.deleteDeployment).toHaveBeenCalledWith('1a2b3c4d');
    expect(host.querySelector('[data-deployment-id]')).toBeNull();
    expect(host.textContent).toContain('Nothing runs yet.');
  });

  it('restarts, and shows it starting at once', async () => {
    api.list = [deployment({ state: 'failed', reason: 'killed' })];
    const host = await show();
    await click(button(host, 'Restart'));
    await pass(0);
    expect(api.restartDeployment).toHaveBeenCalledWith('1a2b3c4d', undefined);
    expect(row(host, '1a2b3c4d').querySelector('.jp-ReefLab-state')?.textContent).toBe('starting');
    expect(row(host, '1a2b3c4d').querySelector('.jp-ReefLab-reason')).toBeNull();
  });

  it('opens Try and the log in tabs of their own when the lab gives them, a new try by itself', async () => {
    const opener = {
      module: vi.fn(),
      tryDeployment: vi.fn(),
      logs: vi.fn(),
      forget: vi.fn(),
      onDeployed: vi.fn(),
      onChecked: vi.fn()
    };
    api.list = [deployment({ kind: 'try', state: 'starting', ready_at: null })];
    const host = await show('1a2b3c4d', opener);
    expect(opener.tryDeployment).not.toHaveBeenCalled();
    api.list[0].state = 'ready';
    await pass(5000);
    expect(opener.tryDeployment).toHaveBeenCalledTimes(1);
    expect(opener.tryDeployment.mock.calls[0][0]).toMatchObject({ id: '1a2b3c4d', state: 'ready' });
    await click(button(host, 'Logs'));
    expect(opener.logs).toHaveBeenCalledWith(expect.objectContaining({ id: '1a2b3c4d' }));
    expect(host.querySelector('.jp-ReefLab-logs')).toBeNull();
    expect(host.querySelector('.jp-ReefLab-try')).toBeNull();
    // deleted: its tabs go with it
    await click(button(host, 'Delete'));
    await click(button(host, 'Delete it'));
    await pass(0);
    expect(opener.forget).toHaveBeenCalledWith('1a2b3c4d');
  });

  it('offers more memory when it ran out, and restarts with it', async () => {
    const reason = 'stopped: out of memory, limit 1.5 GB (it was given 1000 MB; restart it with more memory)';
    api.list = [
      deployment({
        state: 'failed',
        reason,
        hardware: { cpu: 1, memory_MB: 1000, gpu: 0 },
        suggestion: { cpu: 1, memory_MB: 2000, gpu: 0 }
      })
    ];
    const host = await show();
    const fix = host.querySelector('[aria-label="Suggested fix"]')!;
    expect(fix.textContent).toContain('It ran out of memory with 1 GB.');
    await click(button(fix, 'Restart with 2 GB'));
    await pass(0);
    expect(api.restartDeployment).toHaveBeenCalledWith('1a2b3c4d', { cpu: 1, memory_MB: 2000, gpu: 0 });
    expect(row(host, '1a2b3c4d').querySelector('.jp-ReefLab-state')?.textContent).toBe('starting');
    expect(host.querySelector('[aria-label="Suggested fix"]')).toBeNull();
    expect(row(host, '1a2b3c4d').textContent).toContain('2 GB');
  });

  it('shows why its hardware is below what the module recommends', async () => {
    const warning = 'The module recommends 1 GPU (gets 0) for inference: with less it may be slow or fail.';
    api.list = [deployment({ warnings: [warning] })];
    const host = await show();
    expect(row(host, '1a2b3c4d').querySelector('.jp-ReefLab-warning')?.textContent).toBe(warning);
  });

  it('shows an action the server refused, in its words', async () => {
    api.list = [deployment()];
    api.restartDeployment.mockRejectedValueOnce(
      new ReefLabError('This try has ended; create a new try or a deployment.', 409)
    );
    const host = await show();
    await click(button(host, 'Restart'));
    await pass(0);
    expect(host.querySelector('[role="alert"]')?.textContent).toBe(
      'This try has ended; create a new try or a deployment.'
    );
  });
});

describe('LogsViewer', () => {
  it('follows the log, drawing new lines in batches, and stops following when closed', async () => {
    api.list = [deployment()];
    const host = await show();
    await click(button(host, 'Logs'));
    expect(api.followLogs).toHaveBeenCalledTimes(1);
    const log = api.logs[0];
    const pre = () => host.querySelector('.jp-ReefLab-logs pre')?.textContent;
    await act(async () => {
      log.push('Loading the model\nRea');
      log.push('dy on port 5000\n');
    });
    expect(pre()).toBe(''); // drawn at most ten times a second
    await pass(100);
    expect(pre()).toBe('Loading the model\nReady on port 5000');
    expect(host.querySelector('.jp-ReefLab-logs [role="status"]')?.textContent).toContain('Following the log');
    await click(button(host, 'Logs'));
    expect(log.signal.aborted).toBe(true);
    expect(host.querySelector('.jp-ReefLab-logs')).toBeNull();
  });

  it('says when a stopped deployment has no more to tell, or the stream broke', async () => {
    api.list = [deployment({ state: 'stopped', reason: 'the try period of 10 minutes ended' })];
    const host = await show();
    await click(button(host, 'Logs'));
    await act(async () => {
      api.logs[0].push('last words\n');
      api.logs[0].end();
    });
    await pass(0);
    expect(host.querySelector('.jp-ReefLab-logs pre')?.textContent).toBe('last words');
    expect(host.querySelector('.jp-ReefLab-logs')?.textContent).toContain(
      'The deployment is not running: this is its whole log.'
    );
    await click(button(host, 'Reload'));
    await act(async () => api.logs[1].fail(new ReefLabError('The log stopped coming.', 0)));
    await pass(0);
    expect(host.querySelector('.jp-ReefLab-logs [role="alert"]')?.textContent).toContain('The log stopped coming.');
  });
});

describe('TryView', () => {
  async function sendImage(host: HTMLElement, file: File): Promise<void> {
    const input = host.querySelector<HTMLInputElement>('input[type="file"]')!;
    Object.defineProperty(input, 'files', { value: [file], configurable: true });
    await act(async () => {
      input.dispatchEvent(new Event('change', { bubbles: true }));
    });
    await pass(0);
  }

  const REEF = new File([new Uint8Array([1, 2, 3])], 'reef.jpg', { type: 'image/jpeg' });

  it('sends the image for JSON and for the drawing, and shows both readably', async () => {
    api.list = [deployment()];
    const host = await show();
    await click(button(host, 'Try'));
    await sendImage(host, REEF);
    const target = expect.objectContaining({ id: '1a2b3c4d' });
    expect(api.predictJSON).toHaveBeenCalledWith(target, REEF, {}, expect.anything());
    expect(api.predictImage).toHaveBeenCalledWith(target, REEF, {}, expect.anything());
    const img = host.querySelector('.jp-ReefLab-annotated img')!;
    expect(img.getAttribute('src')).toBe('blob:annotated');
    expect(img.getAttribute('alt')).toBe('reef.jpg with what the module found drawn on it');
    const findings = host.querySelector('.jp-ReefLab-findings')!;
    expect(findings.textContent).toContain('1 object found: 1 fish.');
    const cells = [...findings.querySelectorAll('tbody td')].map(td => td.textContent);
    expect(cells).toEqual(['fish', '91 %', '(10, 20) – (110, 90)']);
    expect(JSON.parse(host.querySelector('.jp-ReefLab-json pre')!.textContent!)).toEqual(api.json);
  });

  it('lists the classes of a classifier', async () => {
    api.list = [deployment()];
    api.json = {
      status: 'OK',
      predictions: {
        file: 'p.png',
        width: 64,
        height: 64,
        time_ms: 3,
        classes: [
          { class_id: 2, label: 'copepod', probability: 0.7 },
          { class_id: 0, label: 'diatom', probability: 0.2 }
        ]
      }
    };
    const host = await show();
    await click(button(host, 'Try'));
    await sendImage(host, REEF);
    expect(host.querySelector('.jp-ReefLab-findings')?.textContent).toContain('Most likely: copepod (70 %).');
    expect([...host.querySelectorAll('table[aria-label="Classes"] tbody tr')].map(r => r.textContent)).toEqual([
      'copepod70 %',
      'diatom20 %'
    ]);
  });

  it("shows once why the module refused a file, and frees the last drawing", async () => {
    api.list = [deployment()];
    const host = await show();
    await click(button(host, 'Try'));
    await sendImage(host, REEF);
    const words = "'notes.txt' is not an image this model can read; send a JPEG, PNG, TIFF or BMP";
    const refusal = new ReefLabError(words, 422);
    api.json = refusal;
    api.png = refusal;
    await sendImage(host, new File(['dive log'], 'notes.txt', { type: 'text/plain' }));
    const alerts = [...host.querySelectorAll('.jp-ReefLab-try [role="alert"]')].map(a => a.textContent);
    expect(alerts).toEqual([refusal.message]);
    expect(host.querySelector('.jp-ReefLab-annotated')).toBeNull();
    expect(URL.revokeObjectURL).toHaveBeenCalledWith('blob:annotated');
  });

  it('opens by itself for a try just started from the marketplace, once it is ready', async () => {
    api.list = [deployment({ kind: 'try', state: 'starting', expires: '2026-11-23T10:15:00Z' })];
    const host = await show('1a2b3c4d');
    expect(Element.prototype.scrollIntoView).toHaveBeenCalled();
    expect(host.querySelector('.jp-ReefLab-try')).toBeNull();
    api.list[0].state = 'ready';
    await pass(2000);
    expect(host.querySelector('.jp-ReefLab-try')).not.toBeNull();
  });
});
